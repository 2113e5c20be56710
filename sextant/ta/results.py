"""Named results of the indicators that return several series (all float64, input length)."""

from __future__ import annotations

from typing import NamedTuple

from sextant.ta._jit import FloatArray

__all__ = ["Adx", "Bands", "Channel", "Macd", "Stoch"]


class Macd(NamedTuple):
    """MACD line (fast EMA - slow EMA), its signal EMA, and the histogram (line - signal)."""

    macd: FloatArray
    signal: FloatArray
    hist: FloatArray


class Bands(NamedTuple):
    """Bollinger Bands with %B ((close - lower) / (upper - lower)) and bandwidth ((upper - lower) / middle)."""

    upper: FloatArray
    middle: FloatArray
    lower: FloatArray
    percent_b: FloatArray
    bandwidth: FloatArray


class Adx(NamedTuple):
    """Average directional index and the two directional indicators, in percent."""

    adx: FloatArray
    plus_di: FloatArray
    minus_di: FloatArray


class Stoch(NamedTuple):
    """Stochastic %K and %D, in percent."""

    k: FloatArray
    d: FloatArray


class Channel(NamedTuple):
    """A price channel: upper bound, middle line, lower bound."""

    upper: FloatArray
    middle: FloatArray
    lower: FloatArray
