"""Purged, embargoed walk-forward cross-validation over decision times.

Rows are (symbol, decision time) samples whose label is only known at ``label_end_ts``
(``features.labels``: ``available_at`` and ``label_available_at``). Splits are made on distinct
decision timestamps, never on rows, so the rows of several symbols that share a timestamp always
land on the same side. All sizes (``test_size``, ``min_train_size``, ``max_train_size``) count
distinct decision timestamps (bars); with a single symbol that is the number of rows.

The last ``n_splits * test_size`` timestamps are cut into consecutive test blocks, walking forward.
For a test block starting at ``test_start`` a row is kept for training only if

* ``label_end_ts < test_start`` (purge): its label window ``[decision_ts, label_end_ts]`` ends
  before the block starts, so no training label uses a price the test period also uses; and
* ``decision_ts < test_start - embargo`` (embargo): López de Prado's embargo removes training rows
  just *after* a test block, where serially correlated features leak test information backwards.
  In walk-forward training precedes testing, so the same gap is put between the end of training
  and the start of the test block instead. With ``embargo >= horizon`` it also implies the purge
  for regular labels; the purge is still applied, row by row, for labels of any length.

Training therefore only ever uses rows whose decision time precedes the block; nothing after a
test block is used to train the fold that tests it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.errors import ConfigError, DataValidationError

__all__ = ["Fold", "purged_walk_forward"]

Window = Literal["expanding", "sliding"]


@dataclass(frozen=True, slots=True, eq=False)
class Fold:
    """One walk-forward split: positional row indices into the inputs, and the time bounds."""

    index: int
    train: npt.NDArray[np.intp]
    test: npt.NDArray[np.intp]
    train_start: pd.Timestamp  # first training decision time
    train_end: pd.Timestamp  # last training decision time
    test_start: pd.Timestamp  # first test decision time
    test_end: pd.Timestamp  # last test decision time
    n_purged: int  # rows before test_start dropped by the purge or the embargo


def purged_walk_forward(
    decision_ts: pd.Series,
    label_end_ts: pd.Series,
    *,
    n_splits: int,
    min_train_size: int,
    embargo: pd.Timedelta,
    min_embargo: pd.Timedelta,
    test_size: int | None = None,
    window: Window = "expanding",
    max_train_size: int | None = None,
) -> list[Fold]:
    """Walk-forward folds whose training rows are purged of label overlap and embargoed.

    ``min_embargo`` is the label horizon as a duration: a shorter embargo is a ConfigError.
    ``test_size=None`` gives each block ``(timestamps - first start) // n_splits`` timestamps,
    where the first start is the earliest one leaving ``min_train_size`` training timestamps.
    ``window="sliding"`` keeps only the latest ``max_train_size`` training timestamps.
    """
    _check_config(n_splits, min_train_size, embargo, min_embargo, test_size, window, max_train_size)
    decision, label_end = decision_and_label_end(decision_ts, label_end_ts)
    early = np.flatnonzero(label_end < decision)
    if early.size:
        row = int(early[0])
        raise DataValidationError(
            f"{early.size} rows have label_end_ts before decision_ts, first at row {row} "
            f"({pd.Timestamp(int(decision[row]), tz='UTC')})",
            field="label_end_ts",
        )

    times, rank = np.unique(decision, return_inverse=True)
    # A row may train a block starting at T exactly when T > ready (both rules above, strict).
    ready = np.maximum(label_end, decision + embargo.value)
    ready_by_time = np.full(len(times), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(ready_by_time, rank, ready)
    # train_times_at[s]: training timestamps available to a block starting at times[s]
    train_times_at = np.searchsorted(np.sort(ready_by_time), times, side="left")

    first_start = _first_test_start(
        train_times_at, len(times), len(decision), n_splits, min_train_size, test_size
    )
    block = test_size if test_size is not None else (len(times) - first_start) // n_splits
    first_start = len(times) - n_splits * block

    folds = []
    for k in range(n_splits):
        start = first_start + k * block
        test_start = times[start]
        test = np.flatnonzero((rank >= start) & (rank < start + block))
        trainable = ready < test_start
        if window == "sliding" and max_train_size is not None:
            kept_times = np.unique(rank[trainable])[-max_train_size:]
            trainable &= rank >= kept_times[0]
        train = np.flatnonzero(trainable)
        folds.append(
            Fold(
                index=k,
                train=train,
                test=test,
                train_start=_ts(times[rank[train].min()]),
                train_end=_ts(times[rank[train].max()]),
                test_start=_ts(test_start),
                test_end=_ts(times[start + block - 1]),
                n_purged=int(np.count_nonzero((rank < start) & (ready >= test_start))),
            )
        )
    return folds


def _first_test_start(
    train_times_at: npt.NDArray[np.intp],
    n_times: int,
    n_rows: int,
    n_splits: int,
    min_train_size: int,
    test_size: int | None,
) -> int:
    """Index of the first test timestamp, or a DataValidationError saying how much data is missing."""
    # earliest start that leaves min_train_size training timestamps (train_times_at is sorted)
    earliest = int(np.searchsorted(train_times_at, min_train_size, side="left"))
    have = f"have {n_times} distinct decision timestamps ({n_rows} rows)"
    if earliest >= n_times:
        most = int(train_times_at[-1]) if n_times else 0
        raise DataValidationError(
            f"purged walk-forward needs {min_train_size} training timestamps before the first "
            f"test block, but even a block at the last timestamp leaves only {most} after purge "
            f"and embargo; {have}",
            field="decision_ts",
        )
    needed_test = n_splits * (test_size if test_size is not None else 1)
    if n_times - earliest < needed_test:
        raise DataValidationError(
            f"purged walk-forward needs at least {earliest + needed_test} distinct decision "
            f"timestamps ({earliest} before the first test block to keep {min_train_size} "
            f"for training after purge and embargo, plus {n_splits} test blocks of "
            f"{test_size if test_size is not None else 1}); {have}",
            field="decision_ts",
        )
    return earliest


def _check_config(
    n_splits: int,
    min_train_size: int,
    embargo: pd.Timedelta,
    min_embargo: pd.Timedelta,
    test_size: int | None,
    window: Window,
    max_train_size: int | None,
) -> None:
    """Reject inconsistent split settings before touching the data."""
    if n_splits < 1:
        raise ConfigError(f"n_splits must be at least 1, got {n_splits}")
    if min_train_size < 1:
        raise ConfigError(f"min_train_size must be at least 1, got {min_train_size}")
    if test_size is not None and test_size < 1:
        raise ConfigError(f"test_size must be at least 1 timestamp, got {test_size}")
    if embargo < pd.Timedelta(0):
        raise ConfigError(f"embargo must not be negative, got {embargo}")
    if embargo < min_embargo:
        raise ConfigError(
            f"embargo {embargo} is shorter than the label horizon {min_embargo} (min_embargo): "
            "training labels would reach into the test block"
        )
    if window == "sliding":
        if max_train_size is None:
            raise ConfigError("window='sliding' needs max_train_size")
        if max_train_size < min_train_size:
            raise ConfigError(
                f"max_train_size {max_train_size} is smaller than min_train_size {min_train_size}"
            )
    elif window == "expanding":
        if max_train_size is not None:
            raise ConfigError(
                f"max_train_size={max_train_size} only applies to window='sliding', "
                "not to 'expanding'"
            )
    else:
        raise ConfigError(f"window must be 'expanding' or 'sliding', got {window!r}")


def purged_tail(
    rows: npt.NDArray[np.intp],
    decision_ns: npt.NDArray[np.int64],
    label_end_ns: npt.NDArray[np.int64],
    fraction: float,
    what: str,
) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.intp]]:
    """(fit rows, tail rows) of ``rows``: the tail is the latest ``fraction`` of their distinct
    decision times (all rows of a time on one side), the fit rows are decided before it with a
    label that ends before it (purge). Both keep ``rows``' order; ``decision_ns`` and
    ``label_end_ns`` are the rows' own UTC nanoseconds. DataValidationError names ``what`` tail
    when either side would be empty.
    """
    times = np.unique(decision_ns)
    n_tail = max(1, math.ceil(fraction * len(times)))
    if n_tail >= len(times):
        raise DataValidationError(
            f"{len(times)} distinct training timestamps cannot hold a {what} tail of "
            f"{fraction:.0%} and still leave rows to fit",
            field="train_idx",
        )
    tail_start = times[len(times) - n_tail]
    fit = rows[(decision_ns < tail_start) & (label_end_ns < tail_start)]
    tail = rows[decision_ns >= tail_start]
    if len(fit) == 0:
        raise DataValidationError(
            f"no training row's label ends before the {what} tail starting {_ts(tail_start)}",
            field="train_idx",
        )
    return fit, tail


def decision_and_label_end(
    decision_ts: pd.Series, label_end_ts: pd.Series
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Both columns as UTC nanoseconds, checked to be tz-aware, complete and of one length."""
    decision = _utc_nanoseconds(decision_ts, "decision_ts")
    label_end = _utc_nanoseconds(label_end_ts, "label_end_ts")
    if len(decision) != len(label_end):
        raise DataValidationError(
            f"decision_ts has {len(decision)} rows but label_end_ts has {len(label_end)}",
            field="label_end_ts",
        )
    return decision, label_end


def _utc_nanoseconds(values: pd.Series, name: str) -> npt.NDArray[np.int64]:
    """Tz-aware timestamps as int64 nanoseconds since the epoch (UTC)."""
    if not isinstance(values.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"{name} must hold tz-aware UTC timestamps, got dtype {values.dtype}", field=name
        )
    missing = values.isna().to_numpy()
    if missing.any():
        raise DataValidationError(
            f"{name} has {int(missing.sum())} missing timestamps, first at row "
            f"{int(np.flatnonzero(missing)[0])}",
            field=name,
        )
    naive = values.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy(dtype="datetime64[ns]")
    nanos: npt.NDArray[np.int64] = naive.view(np.int64)
    return nanos


def _ts(nanos: np.int64) -> pd.Timestamp:
    return pd.Timestamp(int(nanos), tz="UTC")
