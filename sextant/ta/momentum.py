"""Oscillators: RSI, stochastic, stochastic RSI, CCI, Williams %R, rate of change (TA-Lib parity)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import hlc, series, window
from sextant.ta._jit import FloatArray
from sextant.ta._kernels_oscillators import (
    cci_kernel,
    roc_kernel,
    rsi_kernel,
    stoch_kernel,
    willr_kernel,
)
from sextant.ta.results import Stoch

__all__ = ["cci", "roc", "rsi", "stoch", "stochrsi", "willr"]


def rsi(close: ArrayLike, period: int = 14) -> FloatArray:
    """Wilder's relative strength index, 0..100 (0 on a flat window). Warm-up: ``period`` bars."""
    values = series("rsi", "close", close)
    out = np.empty(len(values))
    rsi_kernel(values, window("rsi", "period", period), out)
    return out


def stoch(
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
    fastk: int = 14,
    slowk: int = 3,
    slowd: int = 3,
) -> Stoch:
    """Slow stochastic (TA-Lib STOCH, SMA smoothing): %K = SMA(fast %K, slowk), %D = SMA(%K, slowd).

    Fast %K is ``(close - lowest low) / (highest high - lowest low) * 100`` over ``fastk`` bars,
    0 on a flat window. Warm-up: ``(fastk - 1) + (slowk - 1) + (slowd - 1)`` bars, both outputs.
    """
    h, lo, c = hlc("stoch", high, low, close)
    periods = (
        window("stoch", "fastk", fastk),
        window("stoch", "slowk", slowk),
        window("stoch", "slowd", slowd),
    )
    k = np.empty(len(c))
    d = np.empty(len(c))
    stoch_kernel(h, lo, c, *periods, k, d)
    return Stoch(k, d)


def stochrsi(close: ArrayLike, period: int = 14, fastk: int = 5, fastd: int = 3) -> Stoch:
    """Stochastic RSI (TA-Lib STOCHRSI): the fast stochastic of RSI(period), %D an SMA of %K.

    Warm-up: ``period + (fastk - 1) + (fastd - 1)`` bars, both outputs.
    """
    values = series("stochrsi", "close", close)
    strength = rsi(values, window("stochrsi", "period", period))
    k_period = window("stochrsi", "fastk", fastk)
    d_period = window("stochrsi", "fastd", fastd)
    k = np.empty(len(strength))
    d = np.empty(len(strength))
    stoch_kernel(strength, strength, strength, k_period, 1, d_period, k, d)
    return Stoch(k, d)


def cci(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Commodity channel index of the typical price, 0 when it equals its mean. Warm-up: ``period - 1``."""
    h, lo, c = hlc("cci", high, low, close)
    out = np.empty(len(c))
    cci_kernel(h, lo, c, window("cci", "period", period), out)
    return out


def willr(high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 14) -> FloatArray:
    """Williams %R, -100..0 (0 on a flat window). Warm-up: ``period - 1`` bars."""
    h, lo, c = hlc("willr", high, low, close)
    out = np.empty(len(c))
    willr_kernel(h, lo, c, window("willr", "period", period), out)
    return out


def roc(x: ArrayLike, period: int = 10) -> FloatArray:
    """Rate of change in percent, ``(x / x[t - period] - 1) * 100`` (0 where the old value is 0). Warm-up: ``period``."""
    values = series("roc", "x", x)
    out = np.empty(len(values))
    roc_kernel(values, window("roc", "period", period), out)
    return out
