"""sextant.ta against TA-Lib on 1,000,000 synthetic bars: time ratio per indicator and geomean."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from benchmarks.common import Figure, best_of
from sextant import ta

BARS = 1_000_000
REPEATS = 5
TARGET = "<= 1.25 x, floor 2 x"


def synthetic_bars(n: int = BARS, seed: int = 7) -> dict[str, np.ndarray]:
    """A fixed-seed geometric random walk with consistent OHLC and lognormal volume."""
    rng = np.random.default_rng(seed)
    close = 30_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.004, n)))
    open_ = np.empty(n)
    open_[0] = close[0]
    open_[1:] = close[:-1] * np.exp(rng.normal(0.0, 0.0005, n - 1))
    body_high = np.maximum(open_, close)
    body_low = np.minimum(open_, close)
    high = body_high * np.exp(np.abs(rng.normal(0.0, 0.002, n)))
    low = body_low * np.exp(-np.abs(rng.normal(0.0, 0.002, n)))
    volume = rng.lognormal(5.0, 1.0, n)
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


def _talib_bbands_with_ratios(close: np.ndarray) -> tuple[np.ndarray, ...]:
    """TA-Lib's bands plus %B and bandwidth: the five outputs `sextant.ta.bbands` returns."""
    import talib

    upper, middle, lower = talib.BBANDS(close, 20, 2.0, 2.0)
    width = upper - lower
    with np.errstate(divide="ignore", invalid="ignore"):
        return upper, middle, lower, (close - lower) / width, width / middle


def pairs(
    bars: dict[str, np.ndarray],
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """Each indicator TA-Lib has: (ours, TA-Lib's) with the same inputs and parameters."""
    import talib  # test/benchmark-only dependency

    h, lo, c, v = bars["high"], bars["low"], bars["close"], bars["volume"]
    return {
        "sma": (lambda: ta.sma(c, 30), lambda: talib.SMA(c, 30)),
        "ema": (lambda: ta.ema(c, 30), lambda: talib.EMA(c, 30)),
        "wma": (lambda: ta.wma(c, 30), lambda: talib.WMA(c, 30)),
        "dema": (lambda: ta.dema(c, 30), lambda: talib.DEMA(c, 30)),
        "tema": (lambda: ta.tema(c, 30), lambda: talib.TEMA(c, 30)),
        "rsi": (lambda: ta.rsi(c, 14), lambda: talib.RSI(c, 14)),
        "macd": (lambda: ta.macd(c, 12, 26, 9), lambda: talib.MACD(c, 12, 26, 9)),
        # ours also returns %B and bandwidth; TA-Lib's side derives them the usual numpy way
        "bbands": (lambda: ta.bbands(c, 20, 2.0), lambda: _talib_bbands_with_ratios(c)),
        "atr": (lambda: ta.atr(h, lo, c, 14), lambda: talib.ATR(h, lo, c, 14)),
        "natr": (lambda: ta.natr(h, lo, c, 14), lambda: talib.NATR(h, lo, c, 14)),
        # one call of ours gives ADX, +DI and -DI; TA-Lib needs three
        "adx": (
            lambda: ta.adx(h, lo, c, 14),
            lambda: (
                talib.ADX(h, lo, c, 14),
                talib.PLUS_DI(h, lo, c, 14),
                talib.MINUS_DI(h, lo, c, 14),
            ),
        ),
        "stoch": (
            lambda: ta.stoch(h, lo, c, 14, 3, 3),
            lambda: talib.STOCH(h, lo, c, fastk_period=14, slowk_period=3, slowd_period=3),
        ),
        "stochrsi": (lambda: ta.stochrsi(c, 14, 5, 3), lambda: talib.STOCHRSI(c, 14, 5, 3)),
        "cci": (lambda: ta.cci(h, lo, c, 14), lambda: talib.CCI(h, lo, c, 14)),
        "willr": (lambda: ta.willr(h, lo, c, 14), lambda: talib.WILLR(h, lo, c, 14)),
        "roc": (lambda: ta.roc(c, 10), lambda: talib.ROC(c, 10)),
        "mfi": (lambda: ta.mfi(h, lo, c, v, 14), lambda: talib.MFI(h, lo, c, v, 14)),
        "obv": (lambda: ta.obv(c, v), lambda: talib.OBV(c, v)),
    }


def run() -> list[Figure]:
    """Best-of-5 time of ours over TA-Lib's per indicator, after a warm-up call of both.

    The two are timed in alternation, one call each per round, so that both see the same load
    of a shared machine.
    """
    import talib

    bars = synthetic_bars()
    figures = [
        Figure(f"ta_ratio_{name}", _ratio(ours, theirs), "x", TARGET)
        for name, (ours, theirs) in pairs(bars).items()
    ]
    geomean = math.exp(sum(math.log(f.value) for f in figures) / len(figures))
    figures.append(Figure("ta_ratio_geomean", geomean, "x", TARGET))
    # reference: our five outputs against TA-Lib's three bands alone (no %B, no bandwidth); the
    # gap is mostly the first touch of two more 8 MB output arrays
    c = bars["close"]
    bands_only = _ratio(lambda: ta.bbands(c, 20, 2.0), lambda: talib.BBANDS(c, 20, 2.0, 2.0))
    figures.append(Figure("ta_ratio_bbands_vs_talib_bands_only", bands_only, "x", "reference"))
    return figures


def _ratio(ours: Callable[[], object], theirs: Callable[[], object]) -> float:
    ours()  # numba compiles (or loads its cache) on the first call
    theirs()
    ours_best = theirs_best = math.inf
    for _ in range(REPEATS):
        ours_best = min(ours_best, best_of(1, ours)[0])
        theirs_best = min(theirs_best, best_of(1, theirs)[0])
    return ours_best / theirs_best


if __name__ == "__main__":
    for figure in run():
        print(figure.line())
