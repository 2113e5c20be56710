"""Backtest throughput: 8 years of hourly bars × 2 symbols through fusion, risk and accounting.

Candles are BTC and ETH from ../shared/data when present (their last 70,080 common hours, with
the perpetuals' funding), else a fixed-seed random walk; features come from
``features.compute``; model outputs are synthetic (fixed seed): persistent noise around 0.5 for
the two probabilities and an EWMA variance for GARCH. The same inputs also go through a plain
vectorized reference (numpy: votes, fusion, sizing, position = direction × size, no risk gate,
no stops, no path dependence) to put the engine's cost in proportion.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from benchmarks.common import SHARED_DATA, Figure, best_of
from features.compute import compute_features
from sextant.backtest import BacktestInputs, run_backtest
from sextant.decision import FEATURES_USED, DecisionConfig

BARS = 70_080  # 8 years of hours
SYMBOLS = ("BTC/USDT", "ETH/USDT")
REPEATS = 5
ROOT = SHARED_DATA / "roshan7869_algotrading" / "binance"


def _candles(symbol: str, rng: np.random.Generator) -> pd.DataFrame:
    base = symbol.split("/")[0]
    path = ROOT / f"{base}_USDT-1h.feather"
    if path.exists():
        frame = pd.read_feather(path).rename(columns={"date": "event_ts"})
        return frame.iloc[-BARS:].reset_index(drop=True)
    index = pd.date_range("2018-01-01", periods=BARS, freq="h", tz="UTC")
    close = 10_000.0 * np.exp(np.cumsum(rng.normal(0.0, 0.008, BARS)))
    open_ = np.r_[close[0], close[:-1]] * np.exp(rng.normal(0.0, 0.0005, BARS))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.003, BARS)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.003, BARS)))
    volume = rng.lognormal(5.0, 1.0, BARS)
    return pd.DataFrame(
        {
            "event_ts": index,
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volume,
        }
    )


def _funding(symbol: str, index: pd.DatetimeIndex) -> np.ndarray:
    path = ROOT / "futures" / f"{symbol.split('/')[0]}_USDT_USDT-1h-funding_rate.feather"
    if path.exists():
        rates = pd.read_feather(path).set_index("date")["open"]
        return rates.reindex(index).fillna(0.0).to_numpy()
    return np.where(index.hour % 8 == 0, 1e-4, 0.0)


def _persistent_probability(rng: np.random.Generator, n: int) -> np.ndarray:
    noise = pd.Series(rng.normal(0.0, 0.02, n)).ewm(alpha=0.2).mean().to_numpy()
    return np.clip(0.5 + noise * 3.0, 0.01, 0.99)


def benchmark_inputs(seed: int = 7) -> BacktestInputs:
    """The 8-year × 2-symbol inputs (real candles when available, synthetic model outputs)."""
    rng = np.random.default_rng(seed)
    frames = {}
    for symbol in SYMBOLS:
        candles = _candles(symbol, rng)
        candles.insert(0, "symbol", symbol)
        computed = compute_features(candles, "1h", drop_warmup=False)
        frame = candles.set_index("event_ts")[["open", "high", "low", "close", "volume"]]
        for name in FEATURES_USED:
            frame[name] = computed[name].to_numpy()
        log_return = np.log(frame["close"]).diff().fillna(0.0)
        frame["garch_variance"] = (log_return**2).ewm(alpha=0.06).mean().clip(lower=1e-7)
        frame["var_quantile"] = 2.65
        frame["p_xgb"] = _persistent_probability(rng, len(frame))
        frame["p_lstm"] = _persistent_probability(rng, len(frame))
        frame["funding_rate"] = _funding(symbol, pd.DatetimeIndex(frame.index))
        frames[symbol] = frame
    return BacktestInputs.from_frames(frames, "1h")


def vectorized_positions(inputs: BacktestInputs, config: DecisionConfig) -> np.ndarray:
    """The fused target position of every bar, by numpy, without the gate, stops or path."""
    f, fz, sz = inputs.features, config.fuser, config.sizing
    rsi, hist, percent_b, adx, ema, breakout, natr = (f[:, :, i] for i in range(f.shape[2]))
    votes = [
        np.where(adx >= fz.adx_min, np.sign(ema), 0.0),
        np.where(rsi > fz.rsi_high, 1.0, np.where(rsi < fz.rsi_low, -1.0, 0.0)),
        np.sign(hist),
        np.where(percent_b > 1.0, -1.0, np.where(percent_b < 0.0, 1.0, 0.0)),
        np.clip(breakout, -1.0, 1.0),
    ]
    ta = sum(w * np.nan_to_num(v) for w, v in zip(fz.vote_weights, votes, strict=True))
    ta = ta / sum(fz.vote_weights)
    p_up = (fz.xgb_weight * inputs.p_xgb + fz.lstm_weight * inputs.p_lstm) / (
        fz.xgb_weight + fz.lstm_weight
    )
    ml = 2.0 * p_up - 1.0
    score = (fz.ta_weight * ta + fz.ml_weight * ml) / (fz.ta_weight + fz.ml_weight)
    direction = np.where(np.abs(score) >= fz.entry_threshold, np.sign(score), 0.0)
    p = np.where(direction > 0, p_up, 1.0 - p_up)
    risk = sz.kelly_fraction * np.maximum(p - (1.0 - p) / sz.kelly_payoff_ratio, 0.0)
    kelly_cap = risk / (sz.stop_atr * natr / 100.0)  # the loss at the stop, as a notional
    vol = sz.target_annual_vol / (np.sqrt(inputs.garch_variance) * math.sqrt(sz.bars_per_year))
    size = np.minimum(np.minimum(vol, kelly_cap), sz.max_leverage)
    size[np.isnan(natr)] = 0.0
    return np.nan_to_num(direction * size)


def vectorized_equity(inputs: BacktestInputs, config: DecisionConfig) -> np.ndarray:
    """Equity of holding each bar's target from the next open to the one after, minus taker fees."""
    position = vectorized_positions(inputs, config)
    held = np.vstack([np.zeros((1, position.shape[1])), position[:-1]])
    open_return = np.nan_to_num(np.diff(inputs.open, axis=0, append=inputs.open[-1:]) / inputs.open)
    turnover = np.abs(np.diff(held, axis=0, prepend=0.0))
    per_bar = (held * open_return).sum(axis=1) - 0.0005 * turnover.sum(axis=1)
    equity: np.ndarray = 100_000.0 * np.cumprod(1.0 + per_bar)
    return equity


def run() -> list[Figure]:
    """Warm-up (compile) first; then best-of-5 full engine runs and vectorized reference runs."""
    inputs = benchmark_inputs()
    config = DecisionConfig()
    symbol_bars = inputs.close.size
    compile_s, _ = best_of(1, lambda: run_backtest(inputs, config))
    engine_best = reference_best = math.inf
    for _ in range(REPEATS):  # alternate so both see the same load of a shared machine
        engine_best = min(engine_best, best_of(1, lambda: run_backtest(inputs, config))[0])
        reference_best = min(
            reference_best, best_of(1, lambda: vectorized_equity(inputs, config))[0]
        )
    result = run_backtest(inputs, config)
    return [
        Figure("backtest_bars_per_s", symbol_bars / engine_best, "symbol-bars/s", "> 1.5M"),
        Figure(
            "backtest_vectorized_bars_per_s",
            symbol_bars / reference_best,
            "symbol-bars/s",
            "reference",
        ),
        Figure(
            "backtest_vs_vectorized_ratio",
            engine_best / reference_best,
            "x",
            "report (engine time / vectorized time)",
        ),
        Figure("backtest_first_call_s", compile_s, "s", "compile or cache load, excluded above"),
        Figure(
            "backtest_trades",
            float(len(result.trades)),
            "trades",
            f"{symbol_bars} symbol-bars, fused defaults",
        ),
    ]


if __name__ == "__main__":
    for figure in run():
        print(figure.line())
