"""Data-quality detectors: quarantine spikes, holes in stored series, ingests that stored nothing.

They read the market store's bookkeeping (``ingest_log``, ``quarantine``) and stored timestamps
as frames, so they are pure functions like the market detectors; `read_ingest_log`,
`read_quarantine_reasons` and `read_series_timestamps` are the thin readers the monitor uses
(``agents`` may not import ``features``, so they take anything with MarketStore's ``query``).
A run is one ``run_id`` for one series (dataset, source, symbol, timeframe); the store logs one
row per batch, so a paged ccxt run's rows are summed first. Findings of a run are dated at the
run's time (its latest ``logged_at``); ``symbol`` is the stored symbol, None for ``*`` series.

Statistics and thresholds (docs/monitoring.md "Data-quality detectors"):

- ``quarantine_spike``: rows_quarantined / rows_in of a run vs max(``min_rate``,
  ``ratio`` * the pooled rate of the series' trailing ``window`` runs).
- ``series_gap``: a hole in a stored series' grid (candles at their timeframe, funding at its
  settlement interval, Fear & Greed daily), per source.
- ``empty_ingest``: a run of a live source that added no row although bars were due by its time.
"""

from __future__ import annotations

import contextvars
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Protocol

import numpy as np
import pandas as pd

from agents.monitoring.findings import Category, Finding, Severity
from agents.monitoring.market import EVIDENCE_CAP, grid_holes
from sextant.config import (
    Names,
    PositiveInt,
    SextantConfig,
    Timeframe,
    int_range,
    interval,
)
from sextant.errors import DataValidationError
from sextant.timeframes import timeframe_ms

__all__ = [
    "GRIDDED_DATASETS",
    "INGEST_LOG_COLUMNS",
    "NO_SYMBOL",
    "EmptyIngestConfig",
    "QuarantineConfig",
    "SeriesGapConfig",
    "StoreReader",
    "empty_ingest",
    "ingest_runs",
    "narrow_series_timestamps",
    "quarantine_spike",
    "read_ingest_log",
    "read_quarantine_reasons",
    "read_series_timestamps",
    "runs_shared",
    "series_gap",
]

NO_SYMBOL = "*"  # features.ingest.batch.NO_SYMBOL: the symbol/timeframe of unkeyed series
INGEST_LOG_COLUMNS = (
    "run_id",
    "logged_at",
    "dataset",
    "source",
    "symbol",
    "timeframe",
    "rows_in",
    "rows_added",
    "rows_quarantined",
    "last_event_ts",
)
GRIDDED_DATASETS = ("candles", "funding", "fear_greed")
_DAY_MS = 86_400_000
_SERIES = ["dataset", "source", "symbol", "timeframe"]

Rate = Annotated[float, interval(0.0, 1.0, lo_open=True)]
Ratio = Annotated[float, interval(1.0)]


class QuarantineConfig(SextantConfig):
    """``quarantine_spike``: a run's quarantine rate is flagged at max(``min_rate``, ``ratio`` *
    trailing rate), the trailing rate pooled over the series' previous ``window`` runs (0 for a
    first run, so the floor alone applies); critical at ``critical_multiple`` times that line
    (capped at a rate of 1: a run that quarantined everything is always critical)."""

    window: Annotated[int, int_range(1)] = 20
    min_rate: Rate = 0.01
    ratio: Ratio = 5.0
    critical_multiple: Ratio = 2.0


class SeriesGapConfig(SextantConfig):
    """``series_gap``: grid steps (candles use their own timeframe) and the critical hole length."""

    funding_interval: Timeframe = "8h"  # Binance perpetuals settle every 8 hours
    critical_bars: PositiveInt = 3


class EmptyIngestConfig(SextantConfig):
    """``empty_ingest``: ``grace_minutes`` after a bar becomes available before it counts as due
    (exchanges publish a closed candle within seconds, a funding settlement within minutes);
    critical from ``critical_bars`` due bars. ``file_sources`` replay fixed files, so a
    re-import that adds nothing is expected and never reported (a label ``file:close`` counts
    as ``file``)."""

    grace_minutes: Annotated[float, interval(0.0)] = 15.0
    funding_interval: Timeframe = "8h"
    critical_bars: PositiveInt = 12
    file_sources: Names = ("sample", "file")


class StoreReader(Protocol):
    """What the readers need of the market store (``features.ingest.store.MarketStore``)."""

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame: ...


# -- readers ---------------------------------------------------------------------------------


def read_ingest_log(
    store: StoreReader, *, since: datetime | None = None, after: datetime | None = None
) -> pd.DataFrame:
    """The ingest log, oldest first, from ``since`` (pass a span covering the trailing runs);
    with ``after``, only the entries logged after it (what a holder of the log lacks)."""
    clauses: list[str] = []
    params: list[Any] = []
    if since:
        clauses.append("logged_at >= ?")
        params.append(_utc(since, "since"))
    if after:
        clauses.append("logged_at > ?")
        params.append(_utc(after, "after"))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    return store.query(f"SELECT * FROM ingest_log {where} ORDER BY logged_at", params)


def read_quarantine_reasons(store: StoreReader, *, since: datetime | None = None) -> pd.DataFrame:
    """Quarantined rows counted per (run_id, dataset, source, symbol, reason), for evidence."""
    where, params = ("WHERE quarantined_at >= ?", [_utc(since, "since")]) if since else ("", [])
    return store.query(
        "SELECT run_id, dataset, source, symbol, reason, count(*) AS n FROM quarantine "
        f"{where} GROUP BY ALL ORDER BY run_id, n DESC",
        params,
    )


def read_series_timestamps(
    store: StoreReader,
    dataset: str,
    *,
    start: datetime | None = None,
    closing_from: datetime | None = None,
    series: Collection[tuple[str, str, str]] | None = None,
    every_series: bool = False,
) -> pd.DataFrame:
    """``source, symbol, timeframe, event_ts`` of a gridded dataset's stored rows from ``start``
    (of the (source, symbol, timeframe) ``series`` only, when given).

    With ``closing_from`` only the rows `series_gap` judges with ``since=closing_from`` come
    back: those at or after it and each one's predecessor in its series (the database finds
    them, so a run over one new bar reads a few rows per series, not its whole history). With
    ``every_series`` too, every series' newest row before ``closing_from`` comes back, also of
    a series with none after it (what a holder needs to follow the series as rows arrive:
    `narrow_series_timestamps` gives what ``every_series=False`` returns)."""
    tables = {"candles": "candles", "funding": "funding_rates", "fear_greed": "fear_greed"}
    if dataset not in tables:
        raise DataValidationError(
            f"no grid for dataset {dataset!r}: expected one of {', '.join(tables)}",
            field="dataset",
        )
    symbol = "symbol" if dataset != "fear_greed" else f"'{NO_SYMBOL}'"
    timeframe = "timeframe" if dataset == "candles" else f"'{NO_SYMBOL}'"
    conditions: list[str] = []
    bounds: list[Any] = []
    if start:
        conditions.append("event_ts >= ?")
        bounds.append(_utc(start, "start"))
    if series is not None:
        chosen = sorted(series)
        one = f"(source = ? AND {symbol} = ? AND {timeframe} = ?)"
        conditions.append(f"({' OR '.join([one] * len(chosen)) or 'FALSE'})")
        bounds.extend(part for key in chosen for part in key)
    columns = f"source, {symbol} AS symbol, {timeframe} AS timeframe, event_ts"
    order = "ORDER BY source, symbol, timeframe, event_ts"
    if closing_from is None:
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        return store.query(f"SELECT {columns} FROM {tables[dataset]} {where} {order}", bounds)
    # the rows at or after `closing_from`, and in each series holding one (every series), the
    # newest row before it (its predecessor): no window over the whole history
    cutoff = _utc(closing_from, "closing_from")
    low = "".join(f" AND {c}" for c in conditions)
    keys = f"source, {symbol}, {timeframe}"
    holding = (
        ""
        if every_series
        else f" AND ({keys}) IN (SELECT DISTINCT source, symbol, timeframe FROM recent)"
    )
    return store.query(
        f"WITH recent AS (SELECT {columns} FROM {tables[dataset]} WHERE event_ts >= ?"
        f"{low}) SELECT * FROM recent UNION ALL SELECT {keys}, max(event_ts) "
        f"FROM {tables[dataset]} WHERE event_ts < ?{low}{holding} GROUP BY ALL {order}",
        [cutoff, *bounds, cutoff, *bounds],
    )


def narrow_series_timestamps(
    held: pd.DataFrame,
    *,
    start: datetime | None,
    closing_from: datetime,
    every_series: bool = False,
) -> pd.DataFrame:
    """What `read_series_timestamps` returns for ``start``, ``closing_from`` and
    ``every_series``, derived from what it returned (``held``) for an earlier or equal start
    and closing_from on the same stored rows, with ``every_series`` there (or as here): the
    rows at or after ``closing_from`` and, in each series holding one (every series), the newest
    row before it from ``start`` (a row before the earlier cutoff is the held predecessor, the
    newest there is)."""
    if held.empty:
        return held
    # the times as UTC datetime64 of their unit: comparisons without pandas' per-call cost
    unit = held["event_ts"].dt.unit
    times = held["event_ts"].to_numpy(dtype=f"datetime64[{unit}]")

    def bound(moment: datetime, what: str) -> np.datetime64:
        return pd.Timestamp(_utc(moment, what)).as_unit(unit).tz_convert(None).asm8

    cutoff = bound(closing_from, "closing_from")
    in_span = times >= bound(start, "start") if start is not None else np.ones(len(held), bool)
    recent = (times >= cutoff) & in_span
    earlier = (times < cutoff) & in_span
    # the held rows are ordered by series then time: a series starts where a key changes
    starts = np.zeros(len(held), dtype=bool)
    starts[0] = True
    for column in ("source", "symbol", "timeframe"):
        values = held[column].to_numpy()
        starts[1:] |= values[1:] != values[:-1]
    codes = np.cumsum(starts) - 1
    if every_series:
        wanted = earlier
    else:
        has_recent = np.zeros(int(codes[-1]) + 1, dtype=bool)
        has_recent[codes[recent]] = True
        wanted = earlier & has_recent[codes]
    # a series' last earlier row is its newest
    candidates = np.flatnonzero(wanted)
    last_of_series = (
        candidates[np.r_[codes[candidates][1:] != codes[candidates][:-1], True]]
        if len(candidates)
        else candidates
    )
    keep = recent.copy()
    keep[last_of_series] = True
    if keep.all():
        return held
    return held.take(np.flatnonzero(keep)).reset_index(drop=True)


# -- runs ------------------------------------------------------------------------------------


_RUNS: contextvars.ContextVar[dict[int, tuple[pd.DataFrame, pd.DataFrame]] | None] = (
    contextvars.ContextVar("sextant_ingest_runs", default=None)
)


@contextmanager
def runs_shared() -> Iterator[None]:
    """Within the block, `ingest_runs` of one log frame is computed once for every detector
    handed that frame (the caller must not change it in between)."""
    token = _RUNS.set({})
    try:
        yield
    finally:
        _RUNS.reset(token)


def ingest_runs(ingest_log: pd.DataFrame) -> pd.DataFrame:
    """One row per (run_id, series): rows summed over the run's batches, its latest time and
    the series' newest stored bar after it; oldest run first."""
    memo = _RUNS.get()
    if memo is not None:
        seen = memo.get(id(ingest_log))
        if seen is not None and seen[0] is ingest_log:
            return seen[1].copy()
    runs = _ingest_runs(ingest_log)
    if memo is not None:
        memo[id(ingest_log)] = (ingest_log, runs.copy())
    return runs


def _ingest_runs(ingest_log: pd.DataFrame) -> pd.DataFrame:
    frame = _checked_log(ingest_log)
    keys = ["run_id", *_SERIES]
    # one grouping pass, the sums and maxima in numpy (a pandas agg costs ~20 ms a call)
    codes = frame.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
    groups = int(codes.max()) + 1 if len(codes) else 0
    firsts = np.unique(codes, return_index=True)[1] if len(codes) else np.array([], dtype=int)
    runs = frame[keys].iloc[firsts].reset_index(drop=True)
    for name, how in (
        ("logged_at", "max"),
        ("rows_in", "sum"),
        ("rows_added", "sum"),
        ("rows_quarantined", "sum"),
        ("last_event_ts", "max"),
    ):
        column = frame[name]
        if how == "sum":
            totals = np.zeros(groups, dtype=np.int64)
            np.add.at(totals, codes, column.to_numpy(dtype=np.int64))
            runs[name] = totals
            continue
        stamps = (
            pd.DatetimeIndex(column).tz_convert("UTC")  # tz-aware: no parsing pass
            if isinstance(column.dtype, pd.DatetimeTZDtype)
            else pd.DatetimeIndex(pd.to_datetime(column, utc=True))
        )
        values = np.full(groups, np.iinfo(np.int64).min, dtype=np.int64)  # NaT: skipped
        np.maximum.at(values, codes, stamps.tz_convert(None).to_numpy().view(np.int64))
        runs[name] = pd.DatetimeIndex(values.view(f"M8[{stamps.unit}]")).tz_localize("UTC")
    return runs.sort_values(["logged_at", "run_id", *_SERIES], kind="stable").reset_index(drop=True)


# -- detectors -------------------------------------------------------------------------------


def quarantine_spike(
    ingest_log: pd.DataFrame,
    *,
    quarantine_reasons: pd.DataFrame | None = None,
    config: QuarantineConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Runs whose quarantine rate crossed max(min_rate, ratio * the series' trailing rate).

    ``quarantine_reasons`` (`read_quarantine_reasons`) adds the reasons' counts to the evidence.
    """
    cfg = config or QuarantineConfig()
    runs = ingest_runs(ingest_log)
    cutoff = None if since is None else pd.Timestamp(_utc(since, "since"))
    # every series at once: runs grouped by series (oldest first within each), then the pooled
    # rate of each run's previous `window` runs from prefix sums clipped at its series' start
    codes = runs.groupby(_SERIES, sort=False, dropna=False).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    runs = runs.iloc[order].reset_index(drop=True)
    codes = codes[order]
    rows_in = runs["rows_in"].to_numpy(dtype=np.float64)
    quarantined = runs["rows_quarantined"].to_numpy(dtype=np.float64)
    position = np.arange(len(runs))
    first = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]]) if len(runs) else position
    series_start = first[np.searchsorted(first, position, side="right") - 1]
    window_start = np.maximum(series_start, position - cfg.window)
    sum_in, sum_q = np.r_[0.0, np.cumsum(rows_in)], np.r_[0.0, np.cumsum(quarantined)]
    trail_in = sum_in[position] - sum_in[window_start]
    trail_q = sum_q[position] - sum_q[window_start]
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = np.where(trail_in > 0, trail_q / np.where(trail_in > 0, trail_in, 1.0), 0.0)
        rate = np.where(rows_in > 0, quarantined / np.where(rows_in > 0, rows_in, 1.0), np.nan)
    line = np.maximum(cfg.min_rate, cfg.ratio * reference)
    hit = (rows_in > 0) & (quarantined > 0) & (rate >= line)
    if cutoff is not None:
        hit &= (runs["logged_at"] >= cutoff).to_numpy()
    findings = []
    for k in np.flatnonzero(hit):
        row = runs.iloc[int(k)]
        dataset, source, symbol, timeframe = (str(row[part]) for part in _SERIES)
        previous = runs.iloc[int(window_start[k]) : int(k)]
        critical = min(1.0, cfg.critical_multiple * float(line[k]))
        at = _ts(row["logged_at"])
        findings.append(
            Finding(
                kind="quarantine_spike",
                category=Category.DATA,
                symbol=None if symbol == NO_SYMBOL else symbol,
                bar_ts=at,
                severity=Severity.CRITICAL if rate[k] >= critical else Severity.WARNING,
                statistic="quarantine_rate",
                value=float(rate[k]),
                threshold=float(line[k]),
                detail=(
                    f"ingest {row['run_id']} of {dataset} {source} {symbol} quarantined "
                    f"{int(quarantined[k])} of {int(rows_in[k])} rows ({rate[k]:.1%}); the "
                    f"line is {line[k]:.1%} (trailing rate {reference[k]:.2%} over "
                    f"{len(previous)} run(s))"
                ),
                evidence={
                    "run_id": str(row["run_id"]),
                    "dataset": dataset,
                    "source": source,
                    "timeframe": timeframe,
                    "rows_in": int(rows_in[k]),
                    "rows_quarantined": int(quarantined[k]),
                    "trailing_rate": float(reference[k]),
                    "trailing_runs": len(previous),
                    "min_rate": cfg.min_rate,
                    "ratio": cfg.ratio,
                    "critical_threshold": critical,
                    "trailing_rates": [
                        round(q / n, 6) if n > 0 else None
                        for q, n in zip(
                            previous["rows_quarantined"].tolist()[-EVIDENCE_CAP:],
                            previous["rows_in"].tolist()[-EVIDENCE_CAP:],
                            strict=True,
                        )
                    ],
                    "reasons": _reasons(quarantine_reasons, row),
                },
            )
        )
    return sorted(findings, key=lambda f: (f.bar_ts, f.evidence["dataset"], f.symbol or ""))


def series_gap(
    stored: pd.DataFrame,
    *,
    dataset: str,
    config: SeriesGapConfig | None = None,
    since: datetime | None = None,
    watched: Collection[tuple[str, str]] = (),
) -> list[Finding]:
    """Holes in stored series of a gridded dataset, one finding per hole at its first missing bar.

    ``stored`` is `read_series_timestamps`' frame (``source, symbol, timeframe, event_ts``).
    Each (source, symbol, timeframe) series is checked on its own grid. ``watched`` lists the
    (source, symbol) candle series whose holes ``market.missing_bar`` already reports (the
    series the models read): they are skipped, so a hole is reported once. As in
    ``missing_bar``, ``since`` selects holes by the stored row that closes them.
    """
    cfg = config or SeriesGapConfig()
    if dataset not in GRIDDED_DATASETS:
        raise DataValidationError(
            f"no grid for dataset {dataset!r}: expected one of {', '.join(GRIDDED_DATASETS)}",
            field="dataset",
        )
    frame = _checked_columns(stored, ("source", "symbol", "timeframe", "event_ts"), "stored")
    findings: list[Finding] = []
    if frame.empty:  # no rows, no holes (a warm bar's read often has none: skip the grouping)
        return findings
    for (source, symbol, timeframe), group in frame.groupby(
        ["source", "symbol", "timeframe"], sort=True
    ):
        source, symbol, timeframe = str(source), str(symbol), str(timeframe)
        if dataset == "candles" and (source, symbol) in watched:
            continue
        ts = group["event_ts"].reset_index(drop=True)
        ms = ts.dt.as_unit("ms").astype("int64").to_numpy(dtype=np.int64)
        where = f"{dataset} {source} {symbol}"
        if (np.diff(ms) <= 0).any():
            raise DataValidationError(
                f"{where}: event_ts must be strictly increasing within a series", field="event_ts"
            )
        step = _grid_ms(dataset, timeframe, cfg.funding_interval)
        start = 0 if since is None else int(ts.searchsorted(pd.Timestamp(_utc(since, "since"))))
        for i, missing in grid_holes(ms, step, start=start):
            first_missing = _ts(ts.iloc[i - 1] + pd.Timedelta(milliseconds=step))
            findings.append(
                Finding(
                    kind="series_gap",
                    category=Category.DATA,
                    symbol=None if symbol == NO_SYMBOL else symbol,
                    bar_ts=first_missing,
                    severity=Severity.CRITICAL
                    if missing >= cfg.critical_bars
                    else Severity.WARNING,
                    statistic="missing_rows",
                    value=float(missing),
                    threshold=1.0,
                    detail=(
                        f"stored {where} misses {missing} row(s) on its "
                        f"{timedelta(milliseconds=step)} grid from {first_missing.isoformat()} "
                        f"(between {ts.iloc[i - 1].isoformat()} and {ts.iloc[i].isoformat()})"
                    ),
                    evidence={
                        "dataset": dataset,
                        "source": source,
                        "timeframe": timeframe,
                        "step_ms": step,
                        "previous_row": _ts(ts.iloc[i - 1]).isoformat(),
                        "next_row": _ts(ts.iloc[i]).isoformat(),
                        "missing_rows": missing,
                        "critical_bars": cfg.critical_bars,
                    },
                )
            )
    return sorted(findings, key=lambda f: (f.bar_ts, f.symbol or ""))


def empty_ingest(
    ingest_log: pd.DataFrame,
    *,
    config: EmptyIngestConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Runs of a live source that added nothing although the series had bars due.

    For a run at time T whose series' newest stored bar is L, the next rows L + k * step
    (k >= 1) are due once available + grace <= T; available is one bar after the open for
    candles and Fear & Greed (a bar is known when it closes) and at settlement for funding.
    A series with nothing stored yet, news (no grid) and file sources are not judged. A source
    that returns nothing at all logs no row (ccxt yields no batch then): ``missing_bar``'s stale
    check catches that case from the market side.
    """
    cfg = config or EmptyIngestConfig()
    runs = ingest_runs(ingest_log)
    cutoff = None if since is None else pd.Timestamp(_utc(since, "since"))
    grace = pd.Timedelta(minutes=cfg.grace_minutes)
    findings = []
    candidates = runs[
        (runs["rows_added"] == 0)
        & runs["dataset"].isin(GRIDDED_DATASETS)
        & runs["last_event_ts"].notna()
        & ((runs["logged_at"] >= cutoff) if cutoff is not None else True)
    ]
    for row in candidates.to_dict("records"):
        dataset, source = str(row["dataset"]), str(row["source"])
        if (
            int(row["rows_added"]) != 0
            or dataset not in GRIDDED_DATASETS
            or pd.isna(row["last_event_ts"])
            or _is_file_source(source, cfg.file_sources)
            or (cutoff is not None and row["logged_at"] < cutoff)
        ):
            continue
        step = _grid_ms(dataset, str(row["timeframe"]), cfg.funding_interval)
        lag = 0 if dataset == "funding" else step
        last = pd.Timestamp(row["last_event_ts"])
        waited_ms = (pd.Timestamp(row["logged_at"]) - grace - last).value // 1_000_000 - lag
        due = int(waited_ms // step) if waited_ms >= step else 0
        if due < 1:
            continue
        symbol = str(row["symbol"])
        at = _ts(row["logged_at"])
        first_due = _ts(last + pd.Timedelta(milliseconds=step))
        findings.append(
            Finding(
                kind="empty_ingest",
                category=Category.DATA,
                symbol=None if symbol == NO_SYMBOL else symbol,
                bar_ts=at,
                severity=Severity.CRITICAL if due >= cfg.critical_bars else Severity.WARNING,
                statistic="bars_due_not_added",
                value=float(due),
                threshold=1.0,
                detail=(
                    f"ingest {row['run_id']} of {dataset} {source} {symbol} at {at.isoformat()} "
                    f"added no row although {due} row(s) were due since the stored "
                    f"{_ts(last).isoformat()} (read {int(row['rows_in'])}, quarantined "
                    f"{int(row['rows_quarantined'])})"
                ),
                evidence={
                    "run_id": str(row["run_id"]),
                    "dataset": dataset,
                    "source": source,
                    "timeframe": str(row["timeframe"]),
                    "stored_last": _ts(last).isoformat(),
                    "first_due": first_due.isoformat(),
                    "bars_due": due,
                    "rows_in": int(row["rows_in"]),
                    "rows_quarantined": int(row["rows_quarantined"]),
                    "grace_minutes": cfg.grace_minutes,
                    "critical_bars": cfg.critical_bars,
                },
            )
        )
    return findings


# -- helpers ---------------------------------------------------------------------------------


def _grid_ms(dataset: str, timeframe: str, funding_interval: str) -> int:
    if dataset == "candles":
        try:
            return timeframe_ms(timeframe)
        except Exception as exc:  # ConfigError: a stored timeframe we cannot read is bad data
            raise DataValidationError(
                f"candles series has an unknown timeframe {timeframe!r}", field="timeframe"
            ) from exc
    if dataset == "funding":
        return timeframe_ms(funding_interval)
    return _DAY_MS


def _is_file_source(source: str, file_sources: Collection[str]) -> bool:
    return source in file_sources or source.split(":", 1)[0] in file_sources


def _reasons(reasons: pd.DataFrame | None, row: Any) -> dict[str, int]:
    if reasons is None or reasons.empty:
        return {}
    mine = reasons[
        (reasons["run_id"] == row["run_id"])
        & (reasons["dataset"] == row["dataset"])
        & (reasons["source"] == row["source"])
        & (reasons["symbol"] == row["symbol"])
    ]
    counts: Mapping[Any, Any] = mine.groupby("reason")["n"].sum().to_dict()
    return {str(k): int(v) for k, v in counts.items()}


def _checked_columns(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> pd.DataFrame:
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{what} must be a DataFrame", field=what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{what} frame lacks column(s) {', '.join(missing)}", field=missing[0]
        )
    for name in columns:
        if name.endswith("_ts") or name.endswith("_at"):
            column = frame[name]
            if not isinstance(column.dtype, pd.DatetimeTZDtype):
                raise DataValidationError(
                    f"{what} {name} must be tz-aware UTC datetimes, got dtype {column.dtype}",
                    field=name,
                )
    return frame


def _checked_log(frame: pd.DataFrame) -> pd.DataFrame:
    checked = _checked_columns(frame, INGEST_LOG_COLUMNS, "ingest_log")
    if checked["logged_at"].isna().any():
        raise DataValidationError("ingest_log logged_at has missing values", field="logged_at")
    for name in ("rows_in", "rows_added", "rows_quarantined"):
        values = pd.to_numeric(checked[name], errors="coerce")
        if values.isna().any() or (values < 0).any():
            raise DataValidationError(f"ingest_log {name} must be non-negative counts", field=name)
    return checked


def _ts(value: Any) -> datetime:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is None:
        raise DataValidationError(f"timestamp {value!r} has no time zone", field="event_ts")
    result: datetime = stamp.tz_convert(UTC).to_pydatetime()
    return result


def _utc(value: datetime | None, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DataValidationError(
            f"{what} must be a tz-aware UTC datetime, got {value!r}", field=what
        )
    return value.astimezone(UTC)
