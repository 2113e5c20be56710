"""Technical-analysis indicators: pure functions over 1-D float64 arrays, TA-Lib parity.

Every indicator takes array-likes (converted to float64), returns float64 arrays of the input
length (a NamedTuple of them for several outputs), is causal (output ``t`` uses inputs up to
``t`` only) and is NaN during its warm-up, ``warmup(name, **params)`` bars. Where TA-Lib has the
indicator, the kernel replays TA-Lib 0.8's arithmetic (fused multiply-adds, tolerances and
periodic re-summing included), so values match it bit for bit on clean data; the contract the
callers may rely on is 1e-9 relative. Kernels are numba-compiled on first use and cached.

NaN inputs: leading NaNs are skipped (the warm-up counts from the first bar where every input
is a number, as the ``talib`` wrapper does); a NaN after that makes the output NaN from that bar
to the end. Bad parameters and mismatched lengths raise ``ValueError``.
"""

from __future__ import annotations

from sextant.ta.channels import bbands, donchian, keltner
from sextant.ta.momentum import cci, roc, rsi, stoch, stochrsi, willr
from sextant.ta.moving_averages import dema, ema, sma, tema, wma
from sextant.ta.results import Adx, Bands, Channel, Macd, Stoch
from sextant.ta.trend import adx, macd
from sextant.ta.volatility import atr, garman_klass_vol, natr, parkinson_vol
from sextant.ta.volume import mfi, obv, rolling_vwap
from sextant.ta.warmup import INDICATORS, warmup

__all__ = [
    "INDICATORS",
    "Adx",
    "Bands",
    "Channel",
    "Macd",
    "Stoch",
    "adx",
    "atr",
    "bbands",
    "cci",
    "dema",
    "donchian",
    "ema",
    "garman_klass_vol",
    "keltner",
    "macd",
    "mfi",
    "natr",
    "obv",
    "parkinson_vol",
    "roc",
    "rolling_vwap",
    "rsi",
    "sma",
    "stoch",
    "stochrsi",
    "tema",
    "warmup",
    "willr",
    "wma",
]
