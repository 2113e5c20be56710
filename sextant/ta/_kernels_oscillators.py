"""Numba kernels for the oscillators: RSI, stochastics, Williams %R, CCI, ROC, MFI, OBV.

Each kernel replays the loop of TA-Lib 0.8 (tolerances, clamps and order of floating point
operations included), so results match TA-Lib bit for bit on clean data. Rolling highs and
lows use the van Herk / Gil-Werman scheme (three comparisons per bar whatever the window);
the extremes are exact, so the choice of algorithm does not show in the values.
See ``_jit`` for the NaN policy.
"""

from __future__ import annotations

import math

import numpy as np

from sextant.ta._jit import (
    BLOCK,
    FloatArray,
    count_nan,
    first_nan,
    first_valid,
    ix,
    kernel,
    nan_head,
    poison,
)

__all__ = [
    "cci_kernel",
    "mfi_kernel",
    "obv_kernel",
    "roc_kernel",
    "rolling_range",
    "rsi_kernel",
    "stoch_kernel",
    "willr_kernel",
]

# TA-Lib 0.8 treats a difference as zero when it is within 1e-14 of the operands' magnitude.
_RELATIVE_ZERO = 1e-14


@kernel
def _load_suffix(
    high: FloatArray,
    low: FloatArray,
    block: int,
    period: int,
    suffix_high: FloatArray,
    suffix_low: FloatArray,
) -> None:
    """``suffix_high[j] = max(high[block + j : block + period])`` (and the min of ``low``)."""
    run_high = -np.inf
    run_low = np.inf
    for j in range(period - 1, -1, -1):
        k = ix(block + j)
        run_high = max(run_high, high[k])
        run_low = min(run_low, low[k])
        suffix_high[ix(j)] = run_high
        suffix_low[ix(j)] = run_low


@kernel
def rolling_range(
    high: FloatArray,
    low: FloatArray,
    start: int,
    period: int,
    highest: FloatArray,
    lowest: FloatArray,
) -> int:
    """Rolling max of ``high`` and min of ``low`` over ``period`` bars, from ``start + period - 1``.

    Returns the first bar (>= ``start``) where ``high`` or ``low`` is NaN, or ``len(high)``;
    values from that bar on are undefined. Windows are split into blocks of ``period`` bars
    (van Herk / Gil-Werman): a window is a suffix of one block plus a prefix of the next, and
    ``suffix_*[period]`` holds the identity so the last bar of a block needs no special case.
    """
    n = len(high)
    suffix_high = np.empty(period + 1)
    suffix_low = np.empty(period + 1)
    suffix_high[period] = -np.inf
    suffix_low[period] = np.inf
    for block in range(start, n, period):
        end = min(block + period, n)
        prefix_high = -np.inf
        prefix_low = np.inf
        found = 0
        for i in range(block, end):
            k = ix(i)
            h = high[k]
            lo = low[k]
            found += (h != h) | (lo != lo)
            prefix_high = max(prefix_high, h)
            prefix_low = min(prefix_low, lo)
            offset = ix(i - block + 1)
            highest[k] = max(suffix_high[offset], prefix_high)
            lowest[k] = min(suffix_low[offset], prefix_low)
        if found > 0:
            return first_nan((high, low), block, end)
        if end - block == period:
            _load_suffix(high, low, block, period, suffix_high, suffix_low)
    return n


@kernel
def rsi_kernel(x: FloatArray, period: int, out: FloatArray) -> None:
    """Wilder's RSI, seeded with the plain means of the first ``period`` gains and losses.

    TA-Lib 0.8 multiplies by ``1 / period`` instead of dividing, and returns 0 on a flat window.
    A NaN input makes the loss sum NaN for good.
    """
    n = len(x)
    start = first_valid((x,))
    begin = start + period
    nan_head(out, begin)
    if begin >= n:
        return
    inv = 1.0 / period
    lag = float(period - 1)
    prev = x[start]
    gain = 0.0
    loss = 0.0
    for i in range(start + 1, begin + 1):
        v = x[i]
        change = v - prev
        prev = v
        up = change if change > 0.0 else 0.0
        gain += up
        loss += up - change
    gain *= inv
    loss *= inv
    total = loss + gain
    out[begin] = 0.0 if total <= 0.0 else (gain / total) * 100.0
    for i in range(begin + 1, n):
        v = x[ix(i)]
        change = v - prev
        prev = v
        up = change if change > 0.0 else 0.0
        gain = (gain * lag + up) * inv
        loss = ((up - change) + loss * lag) * inv
        total = loss + gain
        out[ix(i)] = 0.0 if total <= 0.0 else (gain / total) * 100.0


@kernel
def stoch_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    fastk: int,
    slowk: int,
    slowd: int,
    out_k: FloatArray,
    out_d: FloatArray,
) -> None:
    """TA-Lib STOCH with SMA smoothing: %K = SMA(fast %K, slowk), %D = SMA(%K, slowd).

    Fast %K is 0 when the window's range is within 1e-14 of its prices. With ``slowk == 1``
    this is TA-Lib STOCHF (an SMA over one value is the value itself).
    """
    n = len(close)
    start = first_valid((high, low, close))
    begin = start + (fastk - 1) + (slowk - 1) + (slowd - 1)
    if begin >= n:
        nan_head(out_k, n)
        nan_head(out_d, n)
        return
    # out_k and out_d hold the rolling high and low until they are overwritten
    stop = rolling_range(high, low, start, fastk, out_k, out_d)
    if count_nan(close, start, stop) > 0:
        stop = first_nan((close,), start, stop)
    k_ring = np.empty(slowk)
    d_ring = np.empty(slowd)
    k_slot = 0
    d_slot = 0
    k_total = 0.0
    d_total = 0.0
    first_k = start + fastk - 1 + slowk - 1
    for today in range(start + fastk - 1, stop):
        t = ix(today)
        highest = out_k[t]
        lowest = out_d[t]
        spread = highest - lowest
        if (abs(highest) + abs(lowest)) * _RELATIVE_ZERO < abs(spread):
            fast = ((close[t] - lowest) / spread) * 100.0
        else:
            fast = 0.0
        k_ring[ix(k_slot)] = fast
        k_total += fast
        k_slot += 1
        if k_slot == slowk:
            k_slot = 0
        if today < first_k:
            continue
        k = k_total / slowk
        k_total -= k_ring[ix(k_slot)]
        d_ring[ix(d_slot)] = k
        d_total += k
        d_slot += 1
        if d_slot == slowd:
            d_slot = 0
        if today < begin:
            continue
        d = d_total / slowd
        d_total -= d_ring[ix(d_slot)]
        out_k[t] = k
        out_d[t] = d
    nan_head(out_k, begin)
    nan_head(out_d, begin)
    poison(out_k, max(stop, begin))
    poison(out_d, max(stop, begin))


@kernel
def willr_kernel(
    high: FloatArray, low: FloatArray, close: FloatArray, period: int, out: FloatArray
) -> None:
    """Williams %R, ``(highest - close) / (highest - lowest) * -100`` in [-100, 0]; 0 on a flat window.

    The rolling range is ``rolling_range``'s, fused with the formula to save a pass.
    """
    n = len(close)
    start = first_valid((high, low, close))
    begin = start + period - 1
    if begin >= n:
        nan_head(out, n)
        return
    suffix_high = np.empty(period + 1)
    suffix_low = np.empty(period + 1)
    suffix_high[period] = -np.inf
    suffix_low[period] = np.inf
    for block in range(start, n, period):
        end = min(block + period, n)
        prefix_high = -np.inf
        prefix_low = np.inf
        found = 0
        for i in range(block, end):
            k = ix(i)
            h = high[k]
            lo = low[k]
            c = close[k]
            found += (h != h) | (lo != lo) | (c != c)
            prefix_high = max(prefix_high, h)
            prefix_low = min(prefix_low, lo)
            offset = ix(i - block + 1)
            hi = max(suffix_high[offset], prefix_high)
            lo = min(suffix_low[offset], prefix_low)
            spread = hi - lo
            if (abs(hi) + abs(lo)) * _RELATIVE_ZERO >= abs(spread):
                out[k] = 0.0
            else:
                value = ((hi - c) / spread) * -100.0
                out[k] = 0.0 if value > 0.0 else max(-100.0, value)
        if found > 0:
            poison(out, first_nan((high, low, close), block, end))
            break
        if end - block == period:
            _load_suffix(high, low, block, period, suffix_high, suffix_low)
    nan_head(out, begin)


@kernel
def cci_kernel(
    high: FloatArray, low: FloatArray, close: FloatArray, period: int, out: FloatArray
) -> None:
    """CCI over a circular buffer of typical prices, summed in buffer order as TA-Lib does.

    It is 0 when the distance to the mean or the mean deviation is within 1e-14 of the mean.
    """
    n = len(close)
    start = first_valid((high, low, close))
    begin = start + period - 1
    nan_head(out, begin)
    ring = np.zeros(period)
    slot = 0
    for i in range(start, n):
        t = ix(i)
        h = high[t]
        lo = low[t]
        c = close[t]
        if math.isnan(h) or math.isnan(lo) or math.isnan(c):
            poison(out, i)
            return
        last = (h + lo + c) / 3.0
        ring[ix(slot)] = last
        slot += 1
        if slot == period:
            slot = 0
        if i < begin:
            continue
        average = 0.0
        for j in range(period):
            average += ring[ix(j)]
        average /= period
        deviation = 0.0
        for j in range(period):
            deviation += abs(ring[ix(j)] - average)
        distance = last - average
        tolerance = abs(average) * _RELATIVE_ZERO
        mean_deviation = deviation / period
        if tolerance >= abs(distance) or tolerance >= abs(mean_deviation):
            out[t] = 0.0
            continue
        scale = mean_deviation * 0.015
        out[t] = distance / scale if scale != 0.0 else 0.0


@kernel
def roc_kernel(x: FloatArray, period: int, out: FloatArray) -> None:
    """Rate of change in percent, ``(x / x[-period] - 1) * 100``; 0 where the old value is 0."""
    n = len(x)
    start = first_valid((x,))
    begin = start + period
    nan_head(out, begin)
    if begin >= n:
        return
    if count_nan(x, start, begin) > 0:
        poison(out, first_nan((x,), start, begin))
        return
    for block in range(begin, n, BLOCK):
        end = min(block + BLOCK, n)
        for i in range(block, end):
            old = x[ix(i - period)]
            out[ix(i)] = ((x[ix(i)] / old) - 1.0) * 100.0 if old != 0.0 else 0.0
        if count_nan(x, block, end) > 0:
            poison(out, first_nan((x,), block, end))
            return


@kernel
def mfi_kernel(
    high: FloatArray,
    low: FloatArray,
    close: FloatArray,
    volume: FloatArray,
    period: int,
    out: FloatArray,
) -> None:
    """Money flow index with TA-Lib 0.8's circular buffers of positive and negative money flow.

    A typical price within 1e-14 (relative) of the previous one is no change; after ``period``
    bars in a row without money flow the sums restart from exactly 0; the index is 0 while the
    total flow is not positive.
    """
    n = len(close)
    start = first_valid((high, low, close, volume))
    begin = start + period
    nan_head(out, begin)
    if begin >= n:
        return
    positive = np.zeros(period)
    negative = np.zeros(period)
    slot = 0
    idle = 0
    pos_sum = 0.0
    neg_sum = 0.0
    typical = (high[start] + low[start] + close[start]) / 3.0
    for block in range(start + 1, n, BLOCK):
        end = min(block + BLOCK, n)
        for i in range(block, end):
            t = ix(i)
            prev = typical
            typical = (high[t] + low[t] + close[t]) / 3.0
            if i > begin:
                pos_sum -= positive[ix(slot)]
                neg_sum -= negative[ix(slot)]
            change = typical - prev
            moved = (abs(typical) + abs(prev)) * _RELATIVE_ZERO < abs(change)
            flow = volume[t] * typical if moved else 0.0
            down = flow if change < 0.0 else 0.0
            up = 0.0 if change < 0.0 else flow
            positive[ix(slot)] = up
            negative[ix(slot)] = down
            pos_sum += up
            neg_sum += down
            if flow == 0.0:
                idle += 1
                if idle >= period:
                    idle = period
                    pos_sum = 0.0
                    neg_sum = 0.0
            else:
                idle = 0
            slot += 1
            if slot == period:
                slot = 0
            if i < begin:
                continue
            total = pos_sum + neg_sum
            if total <= 0.0:
                out[t] = 0.0
            else:
                share = 0.0 if pos_sum < 0.0 else min(total, pos_sum)
                out[t] = (share / total) * 100.0
        found = count_nan(high, block, end) + count_nan(low, block, end)
        found += count_nan(close, block, end) + count_nan(volume, block, end)
        if found > 0:
            poison(out, first_nan((high, low, close, volume), block, end))
            return


@kernel
def obv_kernel(close: FloatArray, volume: FloatArray, out: FloatArray) -> None:
    """On-balance volume, starting from the first bar's volume as TA-Lib does.

    ``(c - c) + (v - v)`` is 0 for numbers and NaN otherwise: adding it carries a NaN input
    into the running total without a branch.
    """
    n = len(close)
    start = first_valid((close, volume))
    nan_head(out, start)
    if start >= n:
        return
    total = volume[start]
    prev = close[start]
    for i in range(start, n):
        t = ix(i)
        c = close[t]
        v = volume[t]
        # v * (+1, -1 or 0) is exactly v, -v or 0 (a signed zero adds nothing), without branches
        step = v * float(int(c > prev) - int(c < prev))
        total += step + ((c - c) + (v - v))
        out[t] = total
        prev = c
