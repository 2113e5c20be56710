"""Checks and splits shared by the direction families: which rows a model may fit, in time order.

A ``DirectionDataset`` is sorted by (symbol, decision time), so the last rows by position are the
last symbol's, not the latest in time. Validation tails for early stopping are therefore cut on
distinct decision timestamps (all symbols of a timestamp on the same side), and training rows
whose label window reaches into the tail are purged, as in ``models.cv``.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.definitions import service_features
from models.cv import purged_tail
from models.protocol import DirectionDataset, IndexArray
from sextant.errors import DataValidationError

__all__ = [
    "check_features",
    "check_index",
    "check_training_rows",
    "symbol_starts",
    "validation_tail",
]


def check_features(family: str, data: DirectionDataset, feature_service: str) -> None:
    """DataValidationError unless ``data`` carries exactly the service's features, in order."""
    expected = service_features(feature_service)
    if data.feature_service == feature_service and data.features == expected:
        return
    missing = [f for f in expected if f not in data.features]
    unexpected = [f for f in data.features if f not in expected]
    if missing or unexpected:
        detail = f"missing {missing}, unexpected {unexpected}"
    elif len(data.features) != len(expected):
        detail = f"{len(data.features)} columns for {len(expected)} features (duplicates)"
    else:
        detail = "same features in a different order"
    raise DataValidationError(
        f"{family}: dataset built for feature service {data.feature_service!r} with "
        f"{len(data.features)} features does not match {feature_service!r} "
        f"({len(expected)} features): {detail}",
        field="features",
    )


def check_index(family: str, data: DirectionDataset, idx: npt.ArrayLike) -> IndexArray:
    """``idx`` as a 1-D intp array of valid row positions, or a DataValidationError."""
    rows = np.asarray(idx)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise DataValidationError(
            f"{family}: row index must be a 1-D integer array, got dtype {rows.dtype} "
            f"and shape {rows.shape}",
            field="idx",
        )
    out: IndexArray = rows.astype(np.intp)
    if out.size and (out.min() < 0 or out.max() >= len(data.y)):
        raise DataValidationError(
            f"{family}: row index out of range [0, {len(data.y)}): min {out.min()}, max {out.max()}",
            field="idx",
        )
    return out


def check_training_rows(
    family: str, data: DirectionDataset, train_idx: IndexArray, *, min_rows: int
) -> None:
    """DataValidationError for too few training rows or labels of a single class."""
    if len(train_idx) < min_rows:
        raise DataValidationError(
            f"{family}: {len(train_idx)} training rows, at least {min_rows} needed",
            field="train_idx",
        )
    _check_both_classes(family, data.y[train_idx], "training rows")


def validation_tail(
    family: str, data: DirectionDataset, train_idx: IndexArray, fraction: float
) -> tuple[IndexArray, IndexArray]:
    """(fit rows, validation rows): the validation rows are the latest ``fraction`` of timestamps.

    Fit rows are the training rows decided before the tail whose label window also ends before
    it (purge); both keep ``train_idx``'s order. Raises DataValidationError when either side is
    empty or the fit rows hold a single class.
    """
    decision = _nanoseconds(data.decision_ts)[train_idx]
    label_end = _nanoseconds(data.label_end_ts)[train_idx]
    try:
        fit_idx, val_idx = purged_tail(train_idx, decision, label_end, fraction, "validation")
    except DataValidationError as exc:
        raise DataValidationError(f"{family}: {exc.args[0]}", field="train_idx") from exc
    _check_both_classes(
        family, data.y[fit_idx], "fit rows (training rows before the validation tail)"
    )
    return fit_idx, val_idx


def symbol_starts(family: str, data: DirectionDataset) -> IndexArray:
    """For every row, the position of its symbol's first row; checks the (symbol, time) order."""
    symbols = data.symbols
    n = len(symbols)
    if n == 0:
        return np.zeros(0, dtype=np.intp)
    decision = _nanoseconds(data.decision_ts)
    new_block = np.ones(n, dtype=bool)
    new_block[1:] = symbols[1:] != symbols[:-1]
    block_symbols = symbols[new_block]
    if len(set(block_symbols.tolist())) != len(block_symbols):
        raise DataValidationError(
            f"{family}: rows are not grouped by symbol (a symbol's rows appear in several blocks)",
            field="symbol",
        )
    unordered = np.flatnonzero(~new_block[1:] & (decision[1:] <= decision[:-1]))
    if unordered.size:
        row = int(unordered[0]) + 1
        raise DataValidationError(
            f"{family}: decision_ts of {symbols[row]} not strictly increasing at row {row} "
            f"({pd.Timestamp(int(decision[row]), tz='UTC')})",
            field="decision_ts",
        )
    block_start = np.flatnonzero(new_block)
    starts: IndexArray = block_start[np.cumsum(new_block) - 1].astype(np.intp)
    return starts


def _check_both_classes(family: str, labels: npt.NDArray[np.int64], what: str) -> None:
    classes = np.unique(labels)
    if len(classes) < 2:
        only = int(classes[0]) if len(classes) else "none"
        raise DataValidationError(
            f"{family}: label_up has a single class ({only}) over {len(labels)} {what}; "
            "a direction model needs both up and down examples",
            field="label_up",
        )


def _nanoseconds(values: pd.Series) -> npt.NDArray[np.int64]:
    """UTC nanoseconds since the epoch of a tz-aware timestamp column."""
    name = str(values.name)
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"{name} must hold tz-aware UTC timestamps, got {values.dtype}", field=name
        )
    if values.isna().any():
        raise DataValidationError(
            f"{name} has {int(values.isna().sum())} missing timestamps", field=name
        )
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    out: npt.NDArray[np.int64] = naive.view(np.int64)
    return out
