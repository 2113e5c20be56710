"""Bands and channels: Bollinger (TA-Lib parity), Keltner, Donchian."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._inputs import hlc, positive_number, same_length, series, window
from sextant.ta._kernels_averages import bbands_kernel
from sextant.ta._kernels_ranges import donchian_kernel, keltner_kernel
from sextant.ta.results import Bands, Channel

__all__ = ["bbands", "donchian", "keltner"]


def bbands(close: ArrayLike, period: int = 20, nbdev: float = 2.0) -> Bands:
    """Bollinger Bands (TA-Lib BBANDS, SMA middle, population std) with %B and bandwidth.

    %B is ``(close - lower) / (upper - lower)`` (0.5 when the bands collapse) and bandwidth
    ``(upper - lower) / middle``. Warm-up: ``period - 1`` bars, all outputs.
    """
    values = series("bbands", "close", close)
    p = window("bbands", "period", period)
    k = positive_number("bbands", "nbdev", nbdev)
    out = tuple(np.empty(len(values)) for _ in range(5))
    bbands_kernel(values, p, k, *out)
    return Bands(*out)


def keltner(
    high: ArrayLike, low: ArrayLike, close: ArrayLike, period: int = 20, multiplier: float = 2.0
) -> Channel:
    """Keltner channel: middle = EMA(close, period), bounds = middle +/- multiplier * ATR(period).

    The EMA is of the close (not the typical price) and both EMA and ATR are TA-Lib's.
    Warm-up: ``period`` bars (the ATR's), all three outputs.
    """
    h, lo, c = hlc("keltner", high, low, close)
    p = window("keltner", "period", period)
    m = positive_number("keltner", "multiplier", multiplier)
    out = (np.empty(len(c)), np.empty(len(c)), np.empty(len(c)))
    keltner_kernel(h, lo, c, p, m, *out)
    return Channel(*out)


def donchian(high: ArrayLike, low: ArrayLike, period: int = 20) -> Channel:
    """Donchian channel: highest high, midpoint, lowest low of the last ``period`` bars. Warm-up: ``period - 1``."""
    h = series("donchian", "high", high)
    lo = series("donchian", "low", low)
    same_length("donchian", high=h, low=lo)
    out = (np.empty(len(h)), np.empty(len(h)), np.empty(len(h)))
    donchian_kernel(h, lo, window("donchian", "period", period), *out)
    return Channel(*out)
