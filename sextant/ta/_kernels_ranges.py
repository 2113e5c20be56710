"""Numba kernels built on bar ranges: ATR/NATR, ADX/DI, Keltner, Donchian, range volatility, VWAP.

ATR, NATR and ADX/DI replay TA-Lib 0.8's loops bit for bit; the others have no TA-Lib
counterpart (Keltner reuses TA-Lib's EMA and ATR). See ``_jit`` for the NaN policy: the
Wilder averages are recursive, and ``nan_carrier`` gets a NaN close into them.
"""

from __future__ import annotations

import math

import numpy as np

from sextant.ta._jit import FloatArray, first_valid, fma, ix, kernel, nan_head, poison
from sextant.ta._kernels_oscillators import rolling_range

__all__ = [
    "adx_kernel",
    "atr_kernel",
    "donchian_kernel",
    "garman_klass_kernel",
    "keltner_kernel",
    "parkinson_kernel",
    "true_range",
    "vwap_kernel",
]

_PARKINSON_SCALE = 1.0 / (4.0 * math.log(2.0))
_GK_CLOSE_WEIGHT = 2.0 * math.log(2.0) - 1.0


@kernel
def true_range(high: float, low: float, prev_close: float, close: float) -> float:
    """Wilder's true range; NaN when the bar's high, low or close is NaN.

    ``close - close`` (0, or NaN) is added so that a NaN close reaches the average on its own
    bar; a NaN high or low already makes ``high - low`` NaN, which the comparisons keep.
    """
    greatest = high - low
    up = abs(prev_close - high)
    greatest = up if up > greatest else greatest
    down = abs(low - prev_close)
    greatest = down if down > greatest else greatest
    return greatest + (close - close)


@kernel
def atr_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    period: int,
    normalize: bool,
    out: FloatArray,
) -> None:
    """Wilder's ATR seeded with the mean of the first ``period`` true ranges; NATR when asked.

    TA-Lib 0.8 steps as ``fma(atr, a, tr * (1 - a))`` with ``a = (period - 1) / period``.
    NATR is ``ATR / close * 100`` and 0 where the close is 0.
    """
    n = len(close)
    start = first_valid((high, low, close))
    begin = start + period
    nan_head(out, begin)
    if begin >= n:
        return
    keep = float(period - 1) / float(period)
    take = 1.0 - keep
    total = 0.0
    for i in range(start + 1, begin + 1):
        total += true_range(high[i], low[i], close[i - 1], close[i])
    atr = total / period
    prev = close[begin]
    out[begin] = atr if not normalize else (0.0 if prev == 0.0 else (atr / prev) * 100.0)
    if normalize:
        for i in range(begin + 1, n):
            t = ix(i)
            c = close[t]
            atr = fma(atr, keep, true_range(high[t], low[t], prev, c) * take)
            out[t] = 0.0 if c == 0.0 else (atr / c) * 100.0
            prev = c
    else:
        for i in range(begin + 1, n):
            t = ix(i)
            c = close[t]
            atr = fma(atr, keep, true_range(high[t], low[t], prev, c) * take)
            out[t] = atr
            prev = c


@kernel
def adx_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    period: int,
    out_adx: FloatArray,
    out_plus: FloatArray,
    out_minus: FloatArray,
) -> None:
    """ADX, +DI and -DI with Wilder smoothing as TA-Lib does it (DI from ``period``, ADX from 2p-1).

    A DI is 0 while the smoothed true range is not positive; a bar whose DI sum is within
    1e-14 of 0 leaves the ADX unchanged.
    """
    n = len(close)
    start = first_valid((high, low, close))
    di_begin = start + period
    adx_begin = start + 2 * period - 1
    nan_head(out_adx, adx_begin)
    nan_head(out_plus, di_begin)
    nan_head(out_minus, di_begin)
    if di_begin >= n:
        return
    prev_high = high[start]
    prev_low = low[start]
    prev_close = close[start]
    plus_dm = 0.0
    minus_dm = 0.0
    tr_sum = 0.0
    sum_dx = 0.0
    adx = 0.0
    lag = float(period - 1)
    for i in range(start + 1, n):
        t = ix(i)
        h = high[t]
        diff_p = h - prev_high
        prev_high = h
        lo = low[t]
        diff_m = prev_low - lo
        prev_low = lo
        if i >= di_begin:
            minus_dm -= minus_dm / period
            plus_dm -= plus_dm / period
        if diff_m > 0 and diff_p < diff_m:
            minus_dm += diff_m
        elif diff_p > 0 and diff_p > diff_m:
            plus_dm += diff_p
        c = close[t]
        tr = true_range(h, lo, prev_close, c)
        prev_close = c
        if i < di_begin:
            tr_sum += tr
            continue
        tr_sum = tr_sum - (tr_sum / period) + tr
        has_dx = False
        dx = 0.0
        if tr_sum <= 0.0:
            out_plus[t] = 0.0
            out_minus[t] = 0.0
        else:
            minus_di = (minus_dm / tr_sum) * 100.0
            plus_di = (plus_dm / tr_sum) * 100.0
            out_plus[t] = plus_di
            out_minus[t] = minus_di
            di_sum = minus_di + plus_di
            if not -1e-14 < di_sum < 1e-14:
                dx = (abs(minus_di - plus_di) / di_sum) * 100.0
                has_dx = True
        if i < adx_begin:
            if has_dx:
                sum_dx += dx
            continue
        if i == adx_begin:
            if has_dx:
                sum_dx += dx
            adx = sum_dx / period
        elif has_dx:
            adx = ((adx * lag) + dx) / period
        out_adx[t] = adx


@kernel
def keltner_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    period: int,
    multiplier: float,
    upper: FloatArray,
    middle: FloatArray,
    lower: FloatArray,
) -> None:
    """Keltner channel: EMA(close, period) +/- multiplier * ATR(period), both as TA-Lib seeds them."""
    n = len(close)
    start = first_valid((high, low, close))
    begin = start + period
    for out in (upper, middle, lower):
        nan_head(out, begin)
    if begin >= n:
        return
    k = 2.0 / (period + 1)
    keep = float(period - 1) / float(period)
    take = 1.0 - keep
    ema_sum = 0.0
    for i in range(start, begin):
        ema_sum += close[i]
    ema = ema_sum / period
    tr_sum = 0.0
    for i in range(start + 1, begin + 1):
        tr_sum += true_range(high[i], low[i], close[i - 1], close[i])
    atr = tr_sum / period
    prev = close[begin - 1]
    for i in range(begin, n):
        t = ix(i)
        c = close[t]
        if i > begin:
            atr = fma(atr, keep, true_range(high[t], low[t], prev, c) * take)
        prev = c
        ema = fma(k, c - ema, ema)
        width = multiplier * atr
        upper[t] = ema + width
        middle[t] = ema + (width - width)  # NaN once a high or low was NaN, like the bounds
        lower[t] = ema - width


@kernel
def donchian_kernel(
    high: FloatArray,
    low: FloatArray,
    period: int,
    upper: FloatArray,
    middle: FloatArray,
    lower: FloatArray,
) -> None:
    """Donchian channel: highest high, lowest low and their midpoint over ``period`` bars."""
    n = len(high)
    start = first_valid((high, low))
    begin = start + period - 1
    if begin >= n:
        for out in (upper, middle, lower):
            nan_head(out, n)
        return
    stop = rolling_range(high, low, start, period, upper, lower)
    for i in range(begin, stop):
        middle[ix(i)] = (upper[ix(i)] + lower[ix(i)]) / 2.0
    for out in (upper, middle, lower):
        nan_head(out, begin)
        poison(out, max(stop, begin))


@kernel
def _rolling_sqrt_mean(variance: FloatArray, start: int, period: int, out: FloatArray) -> None:
    """``sqrt(mean(variance[t-period+1 : t+1]))`` from ``start`` on; negative drift clipped to 0."""
    n = len(variance)
    begin = start + period - 1
    nan_head(out, begin)
    if begin >= n:
        return
    total = 0.0
    for i in range(start, begin):
        total += variance[i]
    for i in range(begin, n):
        total += variance[ix(i)]
        mean = total / period
        total -= variance[ix(i - period + 1)]
        out[ix(i)] = 0.0 if mean < 0.0 else math.sqrt(mean)


@kernel
def parkinson_kernel(high: FloatArray, low: FloatArray, period: int, out: FloatArray) -> None:
    """Parkinson volatility per bar: ``sqrt(mean(ln(high/low)^2) / (4 ln 2))``."""
    start = first_valid((high, low))
    variance = np.empty(len(high))
    for i in range(len(high)):
        hl = math.log(high[i] / low[i])
        variance[i] = hl * hl * _PARKINSON_SCALE
    _rolling_sqrt_mean(variance, start, period, out)


@kernel
def garman_klass_kernel(
    open_: FloatArray,
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    period: int,
    out: FloatArray,
) -> None:
    """Garman-Klass volatility per bar: ``sqrt(mean(0.5 ln(h/l)^2 - (2 ln 2 - 1) ln(c/o)^2))``."""
    start = first_valid((open_, high, low, close))
    variance = np.empty(len(high))
    for i in range(len(high)):
        hl = math.log(high[i] / low[i])
        co = math.log(close[i] / open_[i])
        variance[i] = 0.5 * hl * hl - _GK_CLOSE_WEIGHT * co * co
    _rolling_sqrt_mean(variance, start, period, out)


@kernel
def vwap_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    period: int,
    out: FloatArray,
) -> None:
    """Rolling VWAP ``sum(typical * volume) / sum(volume)``; NaN while the window's volume is all 0."""
    n = len(close)
    start = first_valid((high, low, close, volume))
    begin = start + period - 1
    nan_head(out, begin)
    weighted = 0.0
    total = 0.0
    traded = 0
    for i in range(start, n):
        v = volume[i]
        weighted += (high[i] + low[i] + close[i]) / 3.0 * v
        total += v
        if v != 0.0:
            traded += 1
        if i < begin:
            continue
        out[i] = weighted / total if traded > 0 else math.nan
        j = i - period + 1
        old = volume[j]
        weighted -= (high[j] + low[j] + close[j]) / 3.0 * old
        total -= old
        if old != 0.0:
            traded -= 1
