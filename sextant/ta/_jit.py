"""The numba decorator and the small helpers every kernel shares.

Kernels follow one NaN policy: the series starts at the first bar where every input is a
number (leading NaNs are skipped, as the ``talib`` wrapper does), and a NaN in any input after
that start makes the output NaN from that bar to the end. Recursive kernels get the second
half for free (a NaN stays in their running state, helped by adding ``x - x`` where an input
would not reach it); the others count NaNs per block of bars and locate the first with
``first_nan``. Infinities get no special treatment (IEEE arithmetic).

Kernels are compiled on first call and cached next to the modules (``__pycache__/*.nbi,nbc``).
numba's cache only notices edits to a kernel's own file: after editing a helper that kernels
in other files call (this module, ``true_range``, ``rolling_range``), delete those cache files.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar, cast

import numba
import numpy as np
import numpy.typing as npt
from llvmlite import ir  # type: ignore[import-untyped]
from numba.core import types
from numba.extending import intrinsic

__all__ = [
    "BLOCK",
    "FloatArray",
    "count_nan",
    "first_nan",
    "first_valid",
    "fma",
    "ix",
    "kernel",
    "nan_head",
    "poison",
]

BLOCK = 512

# Hot loops index with ``x[ix(i)]``: numba supports negative indices, and unless LLVM can prove
# an index non-negative it adds a wrap-around select to every access, which also blocks
# vectorization (measured 2-4x slower). An unsigned index has no such path. Every index passed
# to ``ix`` must be non-negative.
ix = np.uint64

FloatArray = npt.NDArray[np.float64]
_F = TypeVar("_F", bound=Callable[..., Any])


def kernel(fn: _F) -> _F:
    """Compile ``fn`` lazily with numba; C float semantics (no fastmath, no ZeroDivisionError)."""
    return cast(_F, numba.njit(cache=True, error_model="numpy", nogil=True)(fn))


def _fma_typer(typingctx: object, a: object, b: object, c: object) -> tuple[object, object]:
    signature = types.float64(types.float64, types.float64, types.float64)

    def codegen(context: object, builder: Any, sig: object, args: list[Any]) -> Any:
        double = ir.DoubleType()
        function = builder.module.declare_intrinsic(
            "llvm.fma", [double], ir.FunctionType(double, [double, double, double])
        )
        return builder.call(function, args)

    return signature, codegen


# ``fma(a, b, c)`` is ``a * b + c`` rounded once, as TA-Lib 0.8 computes its EMAs and Wilder
# averages (C ``fma()``); LLVM emits the FMA instruction, or the libm call on CPUs without one.
fma = cast(Callable[[float, float, float], float], intrinsic(_fma_typer))


@kernel
def first_valid(arrays: tuple[FloatArray, ...]) -> int:
    """Index of the first bar where no input is NaN (``len`` when there is none)."""
    n = len(arrays[0])
    for i in range(n):
        ok = True
        for a in arrays:
            if math.isnan(a[i]):
                ok = False
                break
        if ok:
            return i
    return n


@kernel
def count_nan(x: FloatArray, lo: int, hi: int) -> int:
    """How many of ``x[lo:hi]`` are NaN (a loop that vectorizes, for block checks)."""
    count = 0
    for i in range(lo, hi):
        v = x[ix(i)]
        count += v != v
    return count


@kernel
def first_nan(arrays: tuple[FloatArray, ...], lo: int, hi: int) -> int:
    """Index of the first bar in ``[lo, hi)`` where some input is NaN (``hi`` when none is)."""
    for i in range(lo, hi):
        for a in arrays:
            if math.isnan(a[i]):
                return i
    return hi


@kernel
def poison(out: FloatArray, start: int) -> None:
    """Set ``out[start:]`` to NaN (a NaN input ends the valid part of the series)."""
    for i in range(max(start, 0), len(out)):
        out[i] = np.nan


@kernel
def nan_head(out: FloatArray, stop: int) -> None:
    """Set ``out[:stop]`` to NaN (the warm-up)."""
    for i in range(min(stop, len(out))):
        out[i] = np.nan
