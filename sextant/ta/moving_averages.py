"""Moving averages: SMA, EMA, WMA, DEMA, TEMA (TA-Lib's algorithms, bit for bit).

EMAs use ``k = 2 / (period + 1)`` and are seeded with the SMA of their first ``period`` inputs.
NaN policy (every indicator in ``sextant.ta``): leading NaNs are skipped and the warm-up counts
from the first bar where every input is a number; a NaN after that makes the output NaN from
that bar to the end.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import series, window
from sextant.ta._jit import FloatArray
from sextant.ta._kernels_averages import ema_chain_kernel, sma_kernel, wma_kernel

__all__ = ["dema", "ema", "sma", "tema", "wma"]


def sma(x: ArrayLike, period: int) -> FloatArray:
    """Simple moving average over ``period`` bars. Warm-up: ``period - 1`` bars."""
    values = series("sma", "x", x)
    out = np.empty(len(values))
    sma_kernel(values, window("sma", "period", period), out)
    return out


def ema(x: ArrayLike, period: int) -> FloatArray:
    """Exponential moving average, SMA-seeded. Warm-up: ``period - 1`` bars."""
    return _ema_chain("ema", x, period, 1)


def dema(x: ArrayLike, period: int) -> FloatArray:
    """Double EMA, ``2 * EMA - EMA(EMA)``. Warm-up: ``2 * (period - 1)`` bars."""
    return _ema_chain("dema", x, period, 2)


def tema(x: ArrayLike, period: int) -> FloatArray:
    """Triple EMA, ``3 * EMA - 3 * EMA(EMA) + EMA(EMA(EMA))``. Warm-up: ``3 * (period - 1)`` bars."""
    return _ema_chain("tema", x, period, 3)


def wma(x: ArrayLike, period: int) -> FloatArray:
    """Linearly weighted moving average (weights 1..period, newest heaviest). Warm-up: ``period - 1``."""
    values = series("wma", "x", x)
    out = np.empty(len(values))
    wma_kernel(values, window("wma", "period", period), out)
    return out


def _ema_chain(indicator: str, x: ArrayLike, period: int, depth: int) -> FloatArray:
    values = series(indicator, "x", x)
    out = np.empty(len(values))
    ema_chain_kernel(values, window(indicator, "period", period), depth, out)
    return out
