"""The market store: one DuckDB file with raw data, quarantine and the ingest log.

Writes are idempotent upserts on each table's key: a row already stored is never changed, a new
row with the same key and different values is quarantined (``CONFLICTS_STORED``) instead of
overwriting it. Each batch is written in one transaction together with its quarantine rows and
its ingest-log row, so the store never holds half a batch.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import pandas as pd
import pyarrow as pa

from features.ingest.batch import COLUMNS, KEYS, NO_SYMBOL, Batch, Dataset
from features.ingest.validate import FEAR_GREED_STEP_MS, Gap, Reason, Validated, find_gaps
from sextant.errors import DataValidationError
from sextant.timeframes import timeframe_ms

__all__ = ["Coverage", "MarketStore", "WriteOutcome"]

TABLES: dict[Dataset, str] = {
    Dataset.CANDLES: "candles",
    Dataset.FUNDING: "funding_rates",
    Dataset.FEAR_GREED: "fear_greed",
    Dataset.NEWS: "news",
}

_SQL_TYPES = {
    "symbol": "VARCHAR NOT NULL",
    "timeframe": "VARCHAR NOT NULL",
    "event_ts": "TIMESTAMPTZ NOT NULL",
    "available_at": "TIMESTAMPTZ NOT NULL",
    "news_id": "VARCHAR NOT NULL",
    "headline": "VARCHAR NOT NULL",
    "description": "VARCHAR",
    "url": "VARCHAR",
    "classification": "VARCHAR",
}

_AUX_DDL = """
CREATE TABLE IF NOT EXISTS quarantine (
    record_hash VARCHAR PRIMARY KEY,
    dataset VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    event_ts TIMESTAMPTZ,
    reason VARCHAR NOT NULL,
    detail VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    record JSON NOT NULL,
    run_id VARCHAR NOT NULL,
    quarantined_at TIMESTAMPTZ NOT NULL
);
CREATE TABLE IF NOT EXISTS ingest_log (
    run_id VARCHAR NOT NULL,
    logged_at TIMESTAMPTZ NOT NULL,
    dataset VARCHAR NOT NULL,
    source VARCHAR NOT NULL,
    symbol VARCHAR NOT NULL,
    timeframe VARCHAR NOT NULL,
    origin VARCHAR NOT NULL,
    rows_in BIGINT NOT NULL,
    rows_added BIGINT NOT NULL,
    rows_quarantined BIGINT NOT NULL,
    exact_duplicates BIGINT NOT NULL,
    first_ts TIMESTAMPTZ,
    last_ts TIMESTAMPTZ,
    last_event_ts TIMESTAMPTZ
);
"""


def _table_ddl(dataset: Dataset) -> str:
    columns = ["source VARCHAR NOT NULL"]
    for name in COLUMNS[dataset]:
        columns.append(f"{name} {_SQL_TYPES.get(name, 'DOUBLE NOT NULL')}")
    columns.append("ingested_at TIMESTAMPTZ NOT NULL")
    key = ", ".join(("source", *KEYS[dataset]))
    return (
        f"CREATE TABLE IF NOT EXISTS {TABLES[dataset]} ({', '.join(columns)}, PRIMARY KEY ({key}))"
    )


@dataclass(frozen=True, slots=True)
class WriteOutcome:
    """What one batch changed in the store."""

    rows_added: int
    rows_quarantined: int


@dataclass(frozen=True, slots=True)
class Coverage:
    """What the store holds for one series."""

    dataset: str
    source: str
    symbol: str
    timeframe: str
    first_ts: datetime | None
    last_ts: datetime | None
    rows: int
    gaps: int
    missing_bars: int
    quarantined: int

    def to_json(self) -> dict[str, Any]:
        """The `sextant data status --json` record."""
        return {
            "dataset": self.dataset,
            "source": self.source,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "first_ts": self.first_ts.isoformat() if self.first_ts else None,
            "last_ts": self.last_ts.isoformat() if self.last_ts else None,
            "rows": self.rows,
            "gaps": self.gaps,
            "missing_bars": self.missing_bars,
            "quarantined": self.quarantined,
        }


class MarketStore:
    """DuckDB-backed market store; safe to share between threads of one process."""

    def __init__(self, path: Path, *, read_only: bool = False) -> None:
        self.path = path
        if not read_only:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise DataValidationError(
                "market store does not exist yet: run `sextant ingest` first", origin=str(path)
            )
        self._con = duckdb.connect(str(path), read_only=read_only)
        self._con.execute("SET TimeZone = 'UTC'")
        self._lock = threading.RLock()
        if not read_only:
            with self._lock:
                for dataset in Dataset:
                    self._con.execute(_table_ddl(dataset))
                self._con.execute(_AUX_DDL)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        with self._lock:
            self._con.close()

    def __enter__(self) -> MarketStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            con = self._con
            con.execute("BEGIN TRANSACTION")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a read query and return a frame (timestamps tz-aware UTC)."""
        with self._lock:
            return self._con.execute(sql, params or []).df()

    # -- writes --------------------------------------------------------------------------------
    def write_batch(self, batch: Batch, validated: Validated, *, run_id: str) -> WriteOutcome:
        """Store the valid rows, quarantine the rejected ones and log the batch, atomically."""
        table = TABLES[batch.dataset]
        columns = COLUMNS[batch.dataset]
        keys = ("source", *KEYS[batch.dataset])
        values = [c for c in columns if c not in keys]
        now = datetime.now(UTC)
        incoming = validated.valid.loc[:, list(columns)].assign(
            source=batch.source, ingested_at=now
        )
        arrow = pa.Table.from_pandas(incoming, preserve_index=False)
        join = " AND ".join(f"t.{k} = i.{k}" for k in keys)
        differs = " OR ".join(f"t.{v} IS DISTINCT FROM i.{v}" for v in values)
        with self._transaction() as con:
            con.register("incoming", arrow)
            try:
                clashing = con.execute(
                    f"SELECT i.* FROM incoming i JOIN {table} t ON {join} WHERE {differs}"
                ).df()
                added = con.execute(
                    f"INSERT INTO {table} SELECT source, {', '.join(columns)}, ingested_at "
                    f"FROM incoming i WHERE NOT EXISTS (SELECT 1 FROM {table} t WHERE {join})"
                ).fetchone()
            finally:
                con.unregister("incoming")
            rows_added = int(added[0]) if added else 0
            rejected = validated.rejected
            if len(clashing):
                clashing = clashing.drop(columns=["source", "ingested_at"]).assign(
                    reason=Reason.CONFLICTS_STORED.value,
                    detail="differs from the row already stored with this key; the stored row is kept",
                )
                rejected = pd.concat([rejected, clashing], ignore_index=True)
            self._quarantine(con, batch, rejected, run_id=run_id, now=now)
            self._log(con, batch, validated, rows_added, len(rejected), run_id=run_id, now=now)
        return WriteOutcome(rows_added=rows_added, rows_quarantined=len(rejected))

    def _quarantine(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: Batch,
        rejected: pd.DataFrame,
        *,
        run_id: str,
        now: datetime,
    ) -> None:
        if rejected.empty:
            return
        record_cols = [c for c in rejected.columns if c not in ("reason", "detail")]
        records = (
            rejected[record_cols]
            .to_json(orient="records", date_format="iso", lines=True)
            .splitlines()
        )
        rows = pd.DataFrame(
            {
                "record_hash": [
                    hashlib.sha1(
                        f"{batch.dataset}|{batch.source}|{reason}|{record}".encode()
                    ).hexdigest()
                    for reason, record in zip(rejected["reason"], records, strict=True)
                ],
                "dataset": batch.dataset.value,
                "source": batch.source,
                "symbol": rejected["symbol"].astype(str) if "symbol" in rejected else batch.symbol,
                "timeframe": rejected["timeframe"].astype(str)
                if "timeframe" in rejected
                else batch.timeframe,
                "event_ts": rejected["event_ts"],
                "reason": rejected["reason"].astype(str),
                "detail": rejected["detail"].astype(str),
                "origin": batch.origin,
                "record": records,
                "run_id": run_id,
                "quarantined_at": now,
            }
        ).drop_duplicates("record_hash")
        con.register("rejected_rows", pa.Table.from_pandas(rows, preserve_index=False))
        try:
            con.execute("INSERT INTO quarantine SELECT * FROM rejected_rows ON CONFLICT DO NOTHING")
        finally:
            con.unregister("rejected_rows")

    def _log(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: Batch,
        validated: Validated,
        rows_added: int,
        rows_quarantined: int,
        *,
        run_id: str,
        now: datetime,
    ) -> None:
        valid = validated.valid
        first = valid["event_ts"].min() if len(valid) else None
        last = valid["event_ts"].max() if len(valid) else None
        last_stored = self._last_event_ts(
            con, batch.dataset, batch.source, batch.symbol, batch.timeframe
        )
        con.execute(
            "INSERT INTO ingest_log VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                run_id,
                now,
                batch.dataset.value,
                batch.source,
                batch.symbol,
                batch.timeframe,
                batch.origin,
                len(valid) + len(validated.rejected) + validated.exact_duplicates,
                rows_added,
                rows_quarantined,
                validated.exact_duplicates,
                None if first is None else first.to_pydatetime(),
                None if last is None else last.to_pydatetime(),
                last_stored,
            ],
        )

    # -- reads ---------------------------------------------------------------------------------
    def last_event_ts(
        self,
        dataset: Dataset,
        source: str,
        symbol: str = NO_SYMBOL,
        timeframe: str = NO_SYMBOL,
        *,
        before: datetime | None = None,
    ) -> datetime | None:
        """Newest stored ``event_ts`` of one series (the resume point of incremental sources)."""
        with self._lock:
            return self._last_event_ts(self._con, dataset, source, symbol, timeframe, before=before)

    @staticmethod
    def _last_event_ts(
        con: duckdb.DuckDBPyConnection,
        dataset: Dataset,
        source: str,
        symbol: str,
        timeframe: str,
        *,
        before: datetime | None = None,
    ) -> datetime | None:
        where, params = _series_filter(dataset, source, symbol, timeframe, before=before)
        row = con.execute(
            f"SELECT max(event_ts) FROM {TABLES[dataset]} WHERE {where}", params
        ).fetchone()
        value = row[0] if row else None
        return None if value is None else value.astimezone(UTC)

    def series_event_ts(
        self,
        dataset: Dataset,
        source: str,
        symbol: str = NO_SYMBOL,
        timeframe: str = NO_SYMBOL,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.Series:
        """Sorted stored timestamps of one series within [start, end]."""
        where, params = _series_filter(dataset, source, symbol, timeframe, start=start, end=end)
        frame = self.query(
            f"SELECT event_ts FROM {TABLES[dataset]} WHERE {where} ORDER BY event_ts", params
        )
        return frame["event_ts"]

    def gaps(
        self,
        dataset: Dataset,
        source: str,
        symbol: str = NO_SYMBOL,
        timeframe: str = NO_SYMBOL,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[Gap]:
        """Missing bars of a gridded series (candles, Fear & Greed) within [start, end]."""
        step = _step_ms(dataset, timeframe)
        if step is None:
            return []
        return find_gaps(
            self.series_event_ts(dataset, source, symbol, timeframe, start=start, end=end), step
        )

    def candles(
        self,
        symbol: str,
        timeframe: str,
        *,
        source: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> pd.DataFrame:
        """Stored candles of one series, ordered by source and time; ``source`` None: every source."""
        where, params = _series_filter(
            Dataset.CANDLES, source, symbol, timeframe, start=start, end=end
        )
        return self.query(f"SELECT * FROM candles WHERE {where} ORDER BY source, event_ts", params)

    def coverage(self) -> list[Coverage]:
        """First/last timestamp, rows, gaps and quarantined rows of every stored series."""
        parts = []
        for dataset, table in TABLES.items():
            symbol = "symbol" if "symbol" in COLUMNS[dataset] else f"'{NO_SYMBOL}'"
            timeframe = "timeframe" if "timeframe" in COLUMNS[dataset] else f"'{NO_SYMBOL}'"
            parts.append(
                f"SELECT '{dataset.value}' AS dataset, source, {symbol} AS symbol, {timeframe} AS timeframe, "
                f"min(event_ts) AS first_ts, max(event_ts) AS last_ts, count(*) AS rows "
                f"FROM {table} GROUP BY ALL"
            )
        with self._lock:
            stored = self._con.execute(
                " UNION ALL ".join(parts) + " ORDER BY dataset, source, symbol, timeframe"
            ).fetchall()
            quarantined = self._con.execute(
                "SELECT dataset, source, symbol, timeframe, count(*) FROM quarantine GROUP BY ALL"
            ).fetchall()
        q_index: dict[tuple[str, str, str, str], int] = {
            (str(d), str(s), str(sy), str(tf)): int(n) for d, s, sy, tf, n in quarantined
        }
        out: list[Coverage] = []
        seen = set()
        for dataset_name, source, symbol_name, timeframe_name, first, last, rows in stored:
            key = (str(dataset_name), str(source), str(symbol_name), str(timeframe_name))
            seen.add(key)
            found = self.gaps(Dataset(key[0]), key[1], key[2], key[3])
            out.append(
                Coverage(
                    *key,
                    first_ts=first.astimezone(UTC),
                    last_ts=last.astimezone(UTC),
                    rows=int(rows),
                    gaps=len(found),
                    missing_bars=sum(g.missing_bars for g in found),
                    quarantined=q_index.get(key, 0),
                )
            )
        for key, n in sorted(q_index.items()):
            if key not in seen:  # everything of this series was rejected
                out.append(
                    Coverage(
                        *key,
                        first_ts=None,
                        last_ts=None,
                        rows=0,
                        gaps=0,
                        missing_bars=0,
                        quarantined=n,
                    )
                )
        return out

    def table_snapshot(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every data and quarantine row, sorted, without ingest-time columns (for idempotency checks)."""
        snapshot: dict[str, list[tuple[Any, ...]]] = {}
        for dataset, table in TABLES.items():
            cols = ", ".join(("source", *COLUMNS[dataset]))
            snapshot[table] = self._rows(f"SELECT {cols} FROM {table} ORDER BY ALL")
        snapshot["quarantine"] = self._rows(
            "SELECT record_hash, dataset, source, symbol, timeframe, event_ts, reason, detail, origin, record "
            "FROM quarantine ORDER BY record_hash"
        )
        return snapshot

    def _rows(self, sql: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [
                tuple(json.dumps(v, default=str) if isinstance(v, dict) else v for v in r)
                for r in self._con.execute(sql).fetchall()
            ]


def _series_filter(
    dataset: Dataset,
    source: str | None,
    symbol: str,
    timeframe: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    before: datetime | None = None,
) -> tuple[str, list[Any]]:
    """WHERE clause of one series (any source when None) within [start, end] and before ``before``."""
    conditions = [
        ("source = ?", source),
        ("symbol = ?", symbol if "symbol" in COLUMNS[dataset] else None),
        ("timeframe = ?", timeframe if "timeframe" in COLUMNS[dataset] else None),
        ("event_ts >= ?", start),
        ("event_ts <= ?", end),
        ("event_ts < ?", before),
    ]
    used = [(sql, value) for sql, value in conditions if value is not None]
    return " AND ".join(sql for sql, _ in used) or "TRUE", [value for _, value in used]


def _step_ms(dataset: Dataset, timeframe: str) -> int | None:
    if dataset is Dataset.CANDLES:
        return timeframe_ms(timeframe)
    if dataset is Dataset.FEAR_GREED:
        return FEAR_GREED_STEP_MS
    return None
