"""Epoch numbers of unknown unit read as UTC timestamps, the unit told by the largest magnitude."""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = ["from_epoch"]

_EpochUnit = Literal["s", "ms", "us", "ns"]
# Below 1e11 seconds (year 5138), below 1e14 milliseconds, below 1e17 microseconds, else ns.
_EPOCH_UNITS: tuple[tuple[float, _EpochUnit], ...] = ((1e11, "s"), (1e14, "ms"), (1e17, "us"))


def from_epoch(numbers: pd.Series) -> pd.Series:
    """UTC timestamps of epoch s/ms/us/ns by magnitude; NaN or non-finite values become NaT."""
    values = numbers.to_numpy(dtype="float64", na_value=np.nan)
    finite = np.abs(values[np.isfinite(values)])
    magnitude = float(finite.max()) if finite.size else 0.0
    unit: _EpochUnit = next((u for limit, u in _EPOCH_UNITS if magnitude < limit), "ns")
    if finite.size == len(values) and numbers.dtype.kind in "iu":
        exact: pd.Series = pd.to_datetime(numbers, unit=unit, utc=True)  # integers: no rounding
        return exact
    floats = pd.Series(values, index=numbers.index)
    parsed: pd.Series = pd.to_datetime(floats, unit=unit, utc=True, errors="coerce")
    return parsed
