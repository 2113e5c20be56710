"""Volume indicators: MFI and OBV (TA-Lib parity) and the rolling VWAP."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import hlc, same_length, series, window
from sextant.ta._jit import FloatArray
from sextant.ta._kernels_oscillators import mfi_kernel, obv_kernel
from sextant.ta._kernels_ranges import vwap_kernel

__all__ = ["mfi", "obv", "rolling_vwap"]


def mfi(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int = 14
) -> FloatArray:
    """Money flow index, 0..100 (0 when the window's money flow is below 1, as TA-Lib). Warm-up: ``period``."""
    h, lo, c = hlc("mfi", high, low, close)
    v = series("mfi", "volume", volume)
    same_length("mfi", close=c, volume=v)
    out = np.empty(len(c))
    mfi_kernel(h, lo, c, v, window("mfi", "period", period), out)
    return out


def obv(close: ArrayLike, volume: ArrayLike) -> FloatArray:
    """On-balance volume, starting at the first bar's volume (TA-Lib). Warm-up: 0 bars."""
    c = series("obv", "close", close)
    v = series("obv", "volume", volume)
    same_length("obv", close=c, volume=v)
    out = np.empty(len(c))
    obv_kernel(c, v, out)
    return out


def rolling_vwap(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, volume: ArrayLike, period: int = 24
) -> FloatArray:
    """Rolling VWAP, ``sum(typical * volume) / sum(volume)`` over ``period`` bars. Warm-up: ``period - 1``.

    ``typical = (high + low + close) / 3``; NaN where every bar in the window has zero volume.
    """
    h, lo, c = hlc("rolling_vwap", high, low, close)
    v = series("rolling_vwap", "volume", volume)
    same_length("rolling_vwap", close=c, volume=v)
    out = np.empty(len(c))
    vwap_kernel(h, lo, c, v, window("rolling_vwap", "period", period), out)
    return out
