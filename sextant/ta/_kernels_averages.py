"""Numba kernels for the moving averages, MACD and Bollinger Bands.

Each kernel replays the loop of TA-Lib 0.8 (the C library the ``ta-lib`` 0.8 wheel bundles):
same seeding, running sums, periodic re-summing and order of floating point operations,
including its fused multiply-adds, so results match TA-Lib bit for bit on clean data.
All of them are recursive, so a NaN input stays in their state and poisons the rest of the
output without a per-bar check (see ``_jit``).
"""

from __future__ import annotations

import math

from sextant.ta._jit import BLOCK, FloatArray, first_valid, fma, ix, kernel, nan_head, poison

__all__ = ["bbands_kernel", "ema_chain_kernel", "macd_kernel", "sma_kernel", "wma_kernel"]


@kernel
def sma_kernel(x: FloatArray, period: int, out: FloatArray) -> None:
    """Simple moving average with TA-Lib's running sum (add the new value, emit, drop the old)."""
    n = len(x)
    start = first_valid((x,))
    begin = start + period - 1
    nan_head(out, begin)
    if begin >= n:
        return
    total = 0.0
    for i in range(start, begin):
        total += x[i]
    for i in range(begin, n):
        total += x[ix(i)]
        out[ix(i)] = total / period
        total -= x[ix(i - period + 1)]


@kernel
def wma_kernel(x: FloatArray, period: int, out: FloatArray) -> None:
    """Linearly weighted moving average with TA-Lib's two running sums.

    Like TA-Lib, the sums are rebuilt from the window every ``8 * period`` outputs, which
    bounds their drift (a rebuild would also wash a NaN out, so it checks for one first).
    The loop runs in segments between rebuilds to keep the countdown out of the hot path.
    """
    n = len(x)
    start = first_valid((x,))
    begin = start + period - 1
    nan_head(out, begin)
    if begin >= n:
        return
    divider = float(period) * float(period + 1) * 0.5
    period_sub = 0.0
    period_sum = 0.0
    for i in range(start, begin):
        v = x[i]
        period_sub += v
        period_sum += v * (i - start + 1)
    trailing_value = 0.0
    i = begin
    rebuild = begin + 8 * period - 1  # TA-Lib re-sums at every 8 * period-th output
    while i < n:
        stop = min(rebuild, n)
        for t in range(i, stop):
            v = x[ix(t)]
            period_sub += v
            period_sub -= trailing_value
            total = v * period + period_sum
            period_sum = total - period_sub
            out[ix(t)] = total / divider
            trailing_value = x[ix(t - period + 1)]
        if stop == n:
            return
        if math.isnan(period_sum) or math.isnan(x[stop]):
            poison(out, stop)
            return
        period_sub = 0.0
        period_sum = 0.0
        for j in range(period):
            w = x[ix(stop - period + 1 + j)]
            period_sub += w
            period_sum += w * (j + 1)
        total = period_sum
        period_sum = total - period_sub
        out[stop] = total / divider
        trailing_value = x[stop - period + 1]
        i = stop + 1
        rebuild = stop + 8 * period


@kernel
def ema_chain_kernel(x: FloatArray, period: int, depth: int, out: FloatArray) -> None:
    """EMA (depth 1), DEMA (2) or TEMA (3) in one pass.

    Every EMA stage is seeded with the SMA of its first ``period`` inputs and steps as
    ``fma(k, x - e, e)``, as TA-Lib does; the stages combine as ``2*e1 - e2`` and
    ``(3*e1 - 3*e2) + e3``.
    """
    n = len(x)
    start = first_valid((x,))
    k = 2.0 / (period + 1)
    lag = period - 1
    nan_head(out, start + depth * lag)
    if start + depth * lag >= n:
        return
    seed = start + lag
    total = 0.0
    for i in range(start, seed + 1):
        total += x[i]
    e1 = total / period
    if depth == 1:
        out[seed] = e1
        for i in range(seed + 1, n):
            e1 = fma(k, x[ix(i)] - e1, e1)
            out[ix(i)] = e1
        return
    total = e1
    for i in range(seed + 1, seed + lag + 1):
        e1 = fma(k, x[i] - e1, e1)
        total += e1
    seed += lag
    e2 = total / period
    if depth == 2:
        out[seed] = (2.0 * e1) - e2
        for i in range(seed + 1, n):
            e1 = fma(k, x[ix(i)] - e1, e1)
            e2 = fma(k, e1 - e2, e2)
            out[ix(i)] = (2.0 * e1) - e2
        return
    total = e2
    for i in range(seed + 1, seed + lag + 1):
        e1 = fma(k, x[i] - e1, e1)
        e2 = fma(k, e1 - e2, e2)
        total += e2
    seed += lag
    e3 = total / period
    out[seed] = ((3.0 * e1) - (3.0 * e2)) + e3
    for i in range(seed + 1, n):
        e1 = fma(k, x[ix(i)] - e1, e1)
        e2 = fma(k, e1 - e2, e2)
        e3 = fma(k, e2 - e3, e3)
        out[ix(i)] = ((3.0 * e1) - (3.0 * e2)) + e3


@kernel
def macd_kernel(
    x: FloatArray,
    fast: int,
    slow: int,
    signal: int,
    out_macd: FloatArray,
    out_signal: FloatArray,
    out_hist: FloatArray,
) -> None:
    """MACD as TA-Lib computes it: the fast EMA's seed window ends where the slow one's does."""
    n = len(x)
    start = first_valid((x,))
    first = start + slow - 1
    begin = first + signal - 1
    nan_head(out_macd, begin)
    nan_head(out_signal, begin)
    nan_head(out_hist, begin)
    if begin >= n:
        return
    k_fast = 2.0 / (fast + 1)
    k_slow = 2.0 / (slow + 1)
    k_signal = 2.0 / (signal + 1)
    sum_slow = 0.0
    sum_fast = 0.0
    for i in range(start, first - fast + 1):
        sum_slow += x[i]
    for i in range(first - fast + 1, first + 1):
        sum_slow += x[i]
        sum_fast += x[i]
    ema_slow = sum_slow / slow
    ema_fast = sum_fast / fast
    line = ema_fast - ema_slow
    sum_signal = line
    for i in range(first + 1, begin + 1):
        ema_slow = fma(k_slow, x[i] - ema_slow, ema_slow)
        ema_fast = fma(k_fast, x[i] - ema_fast, ema_fast)
        line = ema_fast - ema_slow
        sum_signal += line
    sig = sum_signal / signal
    out_macd[begin] = line
    out_signal[begin] = sig
    out_hist[begin] = line - sig
    for i in range(begin + 1, n):
        v = x[ix(i)]
        ema_slow = fma(k_slow, v - ema_slow, ema_slow)
        ema_fast = fma(k_fast, v - ema_fast, ema_fast)
        line = ema_fast - ema_slow
        sig = fma(k_signal, line - sig, sig)
        out_macd[ix(i)] = line
        out_signal[ix(i)] = sig
        out_hist[ix(i)] = line - sig


@kernel
def bbands_kernel(
    x: FloatArray,
    period: int,
    nbdev: float,
    upper: FloatArray,
    middle: FloatArray,
    lower: FloatArray,
    percent_b: FloatArray,
    bandwidth: FloatArray,
) -> None:
    """Bollinger Bands as TA-Lib 0.8 computes them: SMA middle, population standard deviation.

    The variance comes from running sums of ``x - K`` and ``(x - K)^2`` with a shift ``K``
    (first the first value, later the window mean); the sums are rebuilt from the window every
    ``32 * period`` bars or when cancellation threatens, and a rebuilt variance below 1e-12 of
    the mean square is 0. %B is 0.5 when the bands collapse; bandwidth is NaN when the middle
    band is 0. The SMA's running sum is never rebuilt, so a NaN poisons every output.
    """
    n = len(x)
    start = first_valid((x,))
    begin = start + period - 1
    for out in (upper, middle, lower, percent_b, bandwidth):
        nan_head(out, begin)
    if begin >= n:
        return
    inv = 1.0 / period
    shift = x[start]
    total = 0.0
    s1 = 0.0
    s2 = 0.0
    for i in range(start, begin):
        v = x[i]
        total = v + total
        d = v - shift
        s1 = d + s1
        s2 = d * d + s2
    countdown = 32 * period
    for block in range(begin, n, BLOCK):
        end = min(block + BLOCK, n)
        for i in range(block, end):
            v = x[ix(i)]
            total = v + total
            d = v - shift
            s1 = d + s1
            s2 = d * d + s2
            m1 = inv * s1
            variance = inv * s2 - m1 * m1
            mean = total / period
            oldest = i - period + 1
            old = x[ix(oldest)]
            total = total - old
            d_old = old - shift
            d_old_sq = d_old * d_old
            s2 = s2 - d_old_sq
            rebuild = (inv * s2) * 1e-6 > variance or d_old_sq > s2 * 1e6
            if not rebuild:
                countdown -= 1
                rebuild = countdown == 0
            if rebuild:
                countdown = 32 * period
                window_sum = 0.0
                for j in range(oldest, i + 1):
                    window_sum += x[ix(j)]
                shift = inv * window_sum
                s1 = 0.0
                s2 = 0.0
                for j in range(oldest, i + 1):
                    d = x[ix(j)] - shift
                    s1 += d
                    s2 += d * d
                m1 = inv * s1
                mean_sq = inv * s2
                variance = mean_sq - m1 * m1
                if mean_sq * 1e-12 > variance:
                    variance = 0.0
                d_old = old - shift
                s2 -= d_old * d_old
            s1 -= d_old
            deviation = (0.0 if variance == 0.0 else math.sqrt(variance)) * nbdev
            upper[ix(i)] = mean + deviation
            middle[ix(i)] = mean
            lower[ix(i)] = mean - deviation
        # the two ratios in a second, vectorizable pass over the block (still in L1)
        for i in range(block, end):
            k = ix(i)
            low = lower[k]
            mean = middle[k]
            width = upper[k] - low
            percent_b[k] = (x[k] - low) / width if width != 0.0 else 0.5
            bandwidth[k] = width / mean if mean != 0.0 else math.nan
