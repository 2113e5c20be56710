"""Validation of a batch before storage: schema first, then every row gets a verdict.

A batch whose schema is wrong is unreadable as a whole (``DataValidationError``); a row that is
wrong is rejected with a reason code and goes to quarantine, the rest is stored. Exact duplicate
rows collapse to one; rows that disagree on the same key are all rejected (we cannot know which
one is true). Out-of-order rows are put back in order and counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.api.types import is_numeric_dtype

from features.ingest.batch import COLUMNS, KEYS, Batch, Dataset
from sextant.errors import DataValidationError
from sextant.timeframes import timeframe_ms

__all__ = [
    "FUNDING_RATE_ABS_MAX",
    "Gap",
    "Reason",
    "Validated",
    "epoch_ms",
    "find_gaps",
    "grid_offset_ms",
    "validate_batch",
]

# No exchange caps funding anywhere near this; a larger value is a unit error (percent vs fraction).
FUNDING_RATE_ABS_MAX = 0.1
FEAR_GREED_STEP_MS = 86_400_000
_WEEK_OFFSET_MS = 4 * 86_400_000  # weekly bars open on Monday; the epoch was a Thursday


class Reason(StrEnum):
    """Why a row was quarantined (UPPER_SNAKE, stable: stored and queried)."""

    MISSING_VALUE = "MISSING_VALUE"
    NON_FINITE = "NON_FINITE"
    NON_POSITIVE_PRICE = "NON_POSITIVE_PRICE"
    HIGH_LOW_INCONSISTENT = "HIGH_LOW_INCONSISTENT"
    NEGATIVE_VOLUME = "NEGATIVE_VOLUME"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    EMPTY_TEXT = "EMPTY_TEXT"
    OFF_GRID = "OFF_GRID"
    FUTURE_TIMESTAMP = "FUTURE_TIMESTAMP"
    CANDLE_NOT_CLOSED = "CANDLE_NOT_CLOSED"
    AVAILABLE_BEFORE_EVENT = "AVAILABLE_BEFORE_EVENT"
    WRONG_SERIES = "WRONG_SERIES"
    DUPLICATE_CONFLICT = "DUPLICATE_CONFLICT"
    CONFLICTS_STORED = "CONFLICTS_STORED"


@dataclass(frozen=True, slots=True)
class Gap:
    """Missing bars between two stored bars (``after`` and ``before`` exist, the ones between do not)."""

    after: datetime
    before: datetime
    missing_bars: int


@dataclass(frozen=True, slots=True)
class Validated:
    """Outcome of validation: rows to store, rows to quarantine, and what was repaired."""

    valid: pd.DataFrame
    rejected: pd.DataFrame  # the batch's columns + ``reason`` + ``detail``
    exact_duplicates: int
    out_of_order: int


_TEXT = {"symbol", "timeframe", "classification", "news_id", "headline", "description", "url"}
_TIME = {"event_ts", "available_at"}
_OPTIONAL = {"classification", "description", "url"}


def grid_offset_ms(timeframe: str) -> int:
    """Epoch offset of the bar grid of ``timeframe`` (non-zero only for weekly bars)."""
    return _WEEK_OFFSET_MS if timeframe.endswith("w") else 0


def validate_batch(batch: Batch) -> Validated:
    """Check a batch's schema (raises) and each row (rejects), returning what may be stored."""
    frame = _checked_schema(batch)
    now = pd.Timestamp(batch.now or datetime.now(UTC))
    reasons = np.full(len(frame), "", dtype=object)
    details = np.full(len(frame), "", dtype=object)

    for reason, mask, describe in _row_checks(batch, frame, now):
        fresh = mask & (reasons == "")
        if fresh.any():
            reasons[fresh] = reason.value
            details[fresh] = [describe(i) for i in np.flatnonzero(fresh)]

    ok = reasons == ""
    rejected = frame.loc[~ok].assign(reason=reasons[~ok], detail=details[~ok])
    survivors = frame.loc[ok]
    survivors, conflicts, exact_duplicates = _split_duplicates(batch.dataset, survivors)
    rejected = pd.concat([rejected, conflicts], ignore_index=True) if len(conflicts) else rejected

    keys = list(KEYS[batch.dataset])
    out_of_order = int((survivors["event_ts"].diff() < pd.Timedelta(0)).sum())
    valid = survivors.sort_values(keys, kind="stable").reset_index(drop=True)
    return Validated(
        valid=valid,
        rejected=rejected.reset_index(drop=True),
        exact_duplicates=exact_duplicates,
        out_of_order=out_of_order,
    )


def find_gaps(event_ts: pd.Series, step_ms: int) -> list[Gap]:
    """Intervals where consecutive timestamps of a sorted series are more than one step apart."""
    if len(event_ts) < 2:
        return []
    ms = epoch_ms(event_ts)
    steps = np.diff(ms)
    holes = np.flatnonzero(steps > step_ms)
    return [
        Gap(
            after=event_ts.iloc[i].to_pydatetime(),
            before=event_ts.iloc[i + 1].to_pydatetime(),
            missing_bars=int(steps[i] // step_ms) - 1,
        )
        for i in holes
    ]


def epoch_ms(stamps: pd.Series) -> npt.NDArray[np.int64]:
    """Epoch milliseconds of a tz-aware series, whatever its resolution (ns from pandas, us from DuckDB)."""
    as_ms: pd.Series = stamps.dt.as_unit("ms").astype("int64")
    return as_ms.to_numpy(dtype=np.int64)


def _checked_schema(batch: Batch) -> pd.DataFrame:
    expected = COLUMNS[batch.dataset]
    frame = batch.frame
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing or extra:
        raise DataValidationError(
            f"{batch.dataset} rows have the wrong columns: missing {missing}, unexpected {extra}",
            origin=batch.origin,
        )
    for column in expected:
        series = frame[column]
        if column in _TIME:
            if not isinstance(series.dtype, pd.DatetimeTZDtype) or str(series.dtype.tz) != "UTC":
                raise DataValidationError(
                    f"timestamps must be tz-aware UTC, got dtype {series.dtype}",
                    origin=batch.origin,
                    field=column,
                )
        elif column not in _TEXT and not is_numeric_dtype(series.dtype):
            raise DataValidationError(
                f"expected a numeric column, got dtype {series.dtype}",
                origin=batch.origin,
                field=column,
            )
    return frame.loc[:, list(expected)].reset_index(drop=True)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.10g}"
    return str(value)


def _row_checks(batch: Batch, frame: pd.DataFrame, now: pd.Timestamp):  # type: ignore[no-untyped-def]
    """Yield ``(reason, mask, describe(row_index))`` in priority order; the first hit wins."""

    def cell(column: str):  # type: ignore[no-untyped-def]
        values = frame[column].to_numpy()
        return lambda i: f"{column}={_fmt(values[i])}"

    required = [c for c in COLUMNS[batch.dataset] if c not in _OPTIONAL]
    for column in required:
        series = frame[column]
        if column in _TEXT:
            mask = series.isna().to_numpy() | (series.astype(str).str.strip() == "").to_numpy()
            reason = Reason.EMPTY_TEXT if column == "headline" else Reason.MISSING_VALUE
        else:
            mask = series.isna().to_numpy()
            reason = Reason.MISSING_VALUE
        yield reason, mask, cell(column)

    numeric = [c for c in required if c not in _TEXT and c not in _TIME]
    for column in numeric:
        values = frame[column].to_numpy(dtype="float64")
        yield Reason.NON_FINITE, np.isinf(values), cell(column)

    yield from _series_checks(batch, frame)
    yield from _dataset_checks(batch.dataset, frame)
    yield from _time_checks(batch, frame, now)


def _series_checks(batch: Batch, frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    """Rows must belong to the series the batch claims (its symbol and timeframe)."""
    for column, expected in (("symbol", batch.symbol), ("timeframe", batch.timeframe)):
        if column in frame.columns and expected != "*":
            values = frame[column].to_numpy()
            mask = values != expected
            yield (
                Reason.WRONG_SERIES,
                mask,
                (lambda i, v=values, c=column, e=expected: f"{c}={v[i]} in a batch for {e}"),
            )


def _dataset_checks(dataset: Dataset, frame: pd.DataFrame):  # type: ignore[no-untyped-def]
    if dataset is Dataset.CANDLES:
        o, h, lo, c, v = (
            frame[k].to_numpy(dtype="float64") for k in ("open", "high", "low", "close", "volume")
        )
        with np.errstate(invalid="ignore"):
            prices = np.column_stack([o, h, lo, c])
            non_positive = (prices <= 0).any(axis=1)
            yield (
                Reason.NON_POSITIVE_PRICE,
                non_positive,
                lambda i: (
                    f"open={_fmt(o[i])} high={_fmt(h[i])} low={_fmt(lo[i])} close={_fmt(c[i])}"
                ),
            )
            inconsistent = (h < np.maximum(o, c)) | (lo > np.minimum(o, c)) | (h < lo)
            yield (
                Reason.HIGH_LOW_INCONSISTENT,
                inconsistent,
                lambda i: (
                    f"open={_fmt(o[i])} high={_fmt(h[i])} low={_fmt(lo[i])} close={_fmt(c[i])}"
                ),
            )
            yield Reason.NEGATIVE_VOLUME, v < 0, lambda i: f"volume={_fmt(v[i])}"
    elif dataset is Dataset.FUNDING:
        rate = frame["funding_rate"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            yield (
                Reason.OUT_OF_RANGE,
                np.abs(rate) > FUNDING_RATE_ABS_MAX,
                lambda i: f"funding_rate={_fmt(rate[i])} outside ±{FUNDING_RATE_ABS_MAX}",
            )
    elif dataset is Dataset.FEAR_GREED:
        value = frame["value"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            yield (
                Reason.OUT_OF_RANGE,
                (value < 0) | (value > 100),
                lambda i: f"value={_fmt(value[i])} outside [0, 100]",
            )
    elif dataset is Dataset.NEWS:
        score = frame["sentiment"].to_numpy(dtype="float64")
        with np.errstate(invalid="ignore"):
            yield (
                Reason.OUT_OF_RANGE,
                np.abs(score) > 1,
                lambda i: f"sentiment={_fmt(score[i])} outside [-1, 1]",
            )


def _time_checks(batch: Batch, frame: pd.DataFrame, now: pd.Timestamp):  # type: ignore[no-untyped-def]
    event = frame["event_ts"]
    event_ms = epoch_ms(event)  # NaT rows were rejected already
    now_ms = int(now.value // 1_000_000)

    def at(i: int) -> str:
        return f"event_ts={event.iloc[i].isoformat()}"

    if batch.dataset is Dataset.CANDLES:
        step = timeframe_ms(batch.timeframe) if batch.timeframe != "*" else None
        if step is None:
            steps = np.array([timeframe_ms(tf) for tf in frame["timeframe"]], dtype="int64")
            offsets = np.array([grid_offset_ms(tf) for tf in frame["timeframe"]], dtype="int64")
        else:
            steps = np.full(len(frame), step, dtype="int64")
            offsets = np.full(len(frame), grid_offset_ms(batch.timeframe), dtype="int64")
        yield Reason.OFF_GRID, (event_ms - offsets) % steps != 0, at
        yield Reason.FUTURE_TIMESTAMP, event_ms > now_ms, at
        yield Reason.CANDLE_NOT_CLOSED, event_ms + steps > now_ms, at
        return
    if batch.dataset is Dataset.FEAR_GREED:
        yield Reason.OFF_GRID, event_ms % FEAR_GREED_STEP_MS != 0, at
    yield Reason.FUTURE_TIMESTAMP, event_ms > now_ms, at
    available = frame["available_at"]
    yield Reason.AVAILABLE_BEFORE_EVENT, (available < event).to_numpy(), at


def _split_duplicates(
    dataset: Dataset, frame: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    """Collapse exact duplicates; reject every row of a key whose copies disagree."""
    keys = list(KEYS[dataset])
    exact = frame.duplicated(keep="first")
    deduped = frame.loc[~exact]
    clash = deduped.duplicated(subset=keys, keep=False)
    conflicts = deduped.loc[clash]
    if len(conflicts):
        counts = conflicts.groupby(keys, sort=False)[keys[0]].transform("size").to_numpy()
        conflicts = conflicts.assign(
            reason=Reason.DUPLICATE_CONFLICT.value,
            detail=[f"{n} different rows share this key" for n in counts],
        )
    return deduped.loc[~clash], conflicts, int(exact.sum())
