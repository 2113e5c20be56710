"""Volatility: ATR and NATR (TA-Lib parity), Parkinson and Garman-Klass range estimators.

The range estimators are per-bar volatilities (not annualized): the square root of the
rolling mean, over ``period`` bars, of a per-bar variance estimator. Non-positive prices give
non-finite values.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import hlc, same_length, series, window
from sextant.ta._jit import FloatArray
from sextant.ta._kernels_ranges import atr_kernel, garman_klass_kernel, parkinson_kernel

__all__ = ["atr", "garman_klass_vol", "natr", "parkinson_vol"]


def atr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's average true range, seeded with the mean of the first ``period`` true ranges. Warm-up: ``period``."""
    h, lo, c = hlc("atr", high, low, close)
    out = np.empty(len(c))
    atr_kernel(h, lo, c, window("atr", "period", period), False, out)
    return out


def natr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """ATR as a percent of the close (0 where the close is 0). Warm-up: ``period`` bars.

    For ``period == 1`` TA-Lib's NATR returns the raw true range; this one stays a percent.
    """
    h, lo, c = hlc("natr", high, low, close)
    out = np.empty(len(c))
    atr_kernel(h, lo, c, window("natr", "period", period), True, out)
    return out


def parkinson_vol(high: ArrayLike, low: ArrayLike, period: int = 24) -> FloatArray:
    """Parkinson volatility per bar, ``sqrt(mean(ln(high / low)^2) / (4 ln 2))``. Warm-up: ``period - 1``."""
    h = series("parkinson_vol", "high", high)
    lo = series("parkinson_vol", "low", low)
    same_length("parkinson_vol", high=h, low=lo)
    out = np.empty(len(h))
    parkinson_kernel(h, lo, window("parkinson_vol", "period", period), out)
    return out


def garman_klass_vol(
    open_: ArrayLike, high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 24
) -> FloatArray:
    """Garman-Klass volatility per bar. Warm-up: ``period - 1`` bars.

    ``sqrt(mean(0.5 * ln(high / low)^2 - (2 ln 2 - 1) * ln(close / open)^2))`` over ``period``
    bars; a mean below 0 (only possible with inconsistent bars) gives 0.
    """
    o = series("garman_klass_vol", "open_", open_)
    h, lo, c = hlc("garman_klass_vol", high, low, close)
    same_length("garman_klass_vol", open_=o, close=c)
    out = np.empty(len(c))
    garman_klass_kernel(o, h, lo, c, window("garman_klass_vol", "period", period), out)
    return out
