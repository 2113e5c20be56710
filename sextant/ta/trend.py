"""Trend indicators: MACD and ADX with +DI/-DI (TA-Lib parity)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import hlc, series, window
from sextant.ta._kernels_averages import macd_kernel
from sextant.ta._kernels_ranges import adx_kernel
from sextant.ta.results import Adx, Macd

__all__ = ["adx", "macd"]


def macd(close: ArrayLike, fast: int = 12, slow: int = 26, signal: int = 9) -> Macd:
    """MACD (TA-Lib): EMA(fast) - EMA(slow), its EMA(signal), and the histogram.

    As in TA-Lib the fast EMA's SMA seed covers the ``fast`` bars ending where the slow seed
    ends. Warm-up: ``(slow - 1) + (signal - 1)`` bars, all three outputs.
    """
    values = series("macd", "close", close)
    periods = macd_periods(fast, slow, signal)
    line = np.empty(len(values))
    sig = np.empty(len(values))
    hist = np.empty(len(values))
    macd_kernel(values, *periods, line, sig, hist)
    return Macd(line, sig, hist)


def adx(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> Adx:
    """Wilder's ADX with +DI and -DI (TA-Lib ADX, PLUS_DI, MINUS_DI), in percent.

    Warm-up: ``2 * period - 1`` bars for ADX; +DI and -DI start earlier, after ``period`` bars
    (``warmup("adx", output="plus_di")``). A DI is 0 while the smoothed true range is 0. For
    ``period == 1`` TA-Lib's PLUS_DI/MINUS_DI return a fraction instead of a percent; these don't.
    """
    h, lo, c = hlc("adx", high, low, close)
    out = (np.empty(len(c)), np.empty(len(c)), np.empty(len(c)))
    adx_kernel(h, lo, c, window("adx", "period", period), *out)
    return Adx(*out)


def macd_periods(fast: object, slow: object, signal: object) -> tuple[int, int, int]:
    """Checked MACD periods: each >= 1 and ``fast < slow`` (TA-Lib would swap them silently)."""
    periods = (
        window("macd", "fast", fast),
        window("macd", "slow", slow),
        window("macd", "signal", signal),
    )
    if periods[0] >= periods[1]:
        raise ValueError(f"macd: fast must be < slow, got fast={fast}, slow={slow}")
    return periods
