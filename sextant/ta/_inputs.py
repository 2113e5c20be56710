"""Argument checks shared by the indicator functions; every failure is a ValueError naming the argument."""

from __future__ import annotations

import math
import numbers

import numpy as np
from numpy.typing import ArrayLike

from sextant.ta._jit import FloatArray

__all__ = ["hlc", "positive_number", "same_length", "series", "window"]


def series(indicator: str, name: str, values: ArrayLike) -> FloatArray:
    """``values`` as a contiguous, writeable 1-D float64 array (copied only when it is not one)."""
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{indicator}: {name} is not numeric: {exc}") from exc
    if array.ndim != 1:
        raise ValueError(f"{indicator}: {name} must be one-dimensional, got shape {array.shape}")
    if not (array.flags.c_contiguous and array.flags.writeable):
        # one array type per kernel argument, so numba compiles each kernel once
        array = np.array(array, dtype=np.float64, order="C")
    return array


def same_length(indicator: str, **arrays: FloatArray) -> int:
    """The common length of ``arrays``; a ValueError lists every length when they differ."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise ValueError(f"{indicator}: inputs must have the same length, got {listed}")
    return next(iter(lengths.values()))


MAX_WINDOW = 2**31 - 1


def window(indicator: str, name: str, value: object) -> int:
    """A window length: an integer >= 1 (bool is refused) that fits the kernels' int64 maths."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{indicator}: {name} must be an integer >= 1, got {value!r}")
    length = int(value)
    if length < 1:
        raise ValueError(f"{indicator}: {name} must be an integer >= 1, got {length}")
    if length > MAX_WINDOW:
        raise ValueError(f"{indicator}: {name} must be at most {MAX_WINDOW}, got {length}")
    return length


def positive_number(indicator: str, name: str, value: object) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{indicator}: {name} must be a finite number > 0, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise ValueError(f"{indicator}: {name} must be a finite number > 0, got {value!r}")
    return number


def hlc(
    indicator: str, high: ArrayLike, low: ArrayLike, close: ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """High, low and close as float64 series of one length."""
    h = series(indicator, "high", high)
    lo = series(indicator, "low", low)
    c = series(indicator, "close", close)
    same_length(indicator, high=h, low=lo, close=c)
    return h, lo, c
