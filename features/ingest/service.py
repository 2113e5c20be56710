"""Ingestion: pull batches from a source, validate each, store it, and summarize per series."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from features.ingest.batch import Batch, Dataset, Source
from features.ingest.store import MarketStore, WriteOutcome
from features.ingest.validate import Validated, validate_batch

__all__ = ["IngestResult", "ingest_source"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class IngestResult:
    """What one ingest run did to one series (source × dataset × symbol × timeframe)."""

    dataset: str
    source: str
    symbol: str
    timeframe: str
    rows_added: int = 0
    rows_quarantined: int = 0
    exact_duplicates: int = 0
    out_of_order: int = 0
    gaps: int = 0
    missing_bars: int = 0
    first_ts: datetime | None = None
    last_ts: datetime | None = None
    origins: list[str] = field(default_factory=list)

    def add(self, batch: Batch, validated: Validated, outcome: WriteOutcome) -> None:
        """Fold one stored batch into the summary."""
        self.rows_added += outcome.rows_added
        self.rows_quarantined += outcome.rows_quarantined
        self.exact_duplicates += validated.exact_duplicates
        self.out_of_order += validated.out_of_order
        if batch.origin not in self.origins:
            self.origins.append(batch.origin)
        if len(validated.valid):
            # valid rows are sorted by key, which is not time for news (keyed by headline id)
            first = validated.valid["event_ts"].min().to_pydatetime()
            last = validated.valid["event_ts"].max().to_pydatetime()
            self.first_ts = first if self.first_ts is None else min(self.first_ts, first)
            self.last_ts = last if self.last_ts is None else max(self.last_ts, last)

    def to_json(self) -> dict[str, Any]:
        """The `sextant ingest --json` record."""
        return {
            "source": self.source,
            "dataset": self.dataset,
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "rows_added": self.rows_added,
            "rows_quarantined": self.rows_quarantined,
            "exact_duplicates": self.exact_duplicates,
            "out_of_order": self.out_of_order,
            "gaps": self.gaps,
            "missing_bars": self.missing_bars,
            "first_ts": None if self.first_ts is None else self.first_ts.isoformat(),
            "last_ts": None if self.last_ts is None else self.last_ts.isoformat(),
        }


def ingest_source(
    source: Source, store: MarketStore, *, run_id: str | None = None
) -> list[IngestResult]:
    """Run one source to completion; each batch is committed as it arrives.

    If the source fails midway, the batches already stored stay stored (the next run resumes after
    them) and the error propagates.
    """
    run_id = run_id or uuid.uuid4().hex
    results: dict[tuple[str, str, str, str], IngestResult] = {}
    for batch in source.batches(store):
        validated = validate_batch(batch)
        outcome = store.write_batch(batch, validated, run_id=run_id)
        key = (batch.dataset.value, batch.source, batch.symbol, batch.timeframe)
        result = results.setdefault(key, IngestResult(*key))
        result.add(batch, validated, outcome)
        log.info(
            "stored %s %s %s %s: +%d rows, %d quarantined (%s)",
            batch.dataset,
            batch.source,
            batch.symbol,
            batch.timeframe,
            outcome.rows_added,
            outcome.rows_quarantined,
            batch.origin,
        )
    for result in results.values():
        _report_gaps(store, result)
    return list(results.values())


def _report_gaps(store: MarketStore, result: IngestResult) -> None:
    """Gaps in the stored series across the span this run touched, including its joint with older rows."""
    if result.first_ts is None or result.last_ts is None:
        return
    dataset = Dataset(result.dataset)
    previous = store.last_event_ts(
        dataset, result.source, result.symbol, result.timeframe, before=result.first_ts
    )
    start = previous or result.first_ts
    found = store.gaps(
        dataset, result.source, result.symbol, result.timeframe, start=start, end=result.last_ts
    )
    result.gaps = len(found)
    result.missing_bars = sum(g.missing_bars for g in found)
    if found:
        log.warning(
            "%d gaps (%d missing bars) in %s %s %s %s; `sextant data gaps` lists them",
            len(found),
            result.missing_bars,
            result.dataset,
            result.source,
            result.symbol,
            result.timeframe,
        )
    for gap in found:
        log.info(
            "gap in %s %s %s: %d missing bars between %s and %s",
            result.source,
            result.symbol,
            result.timeframe,
            gap.missing_bars,
            gap.after.isoformat(),
            gap.before.isoformat(),
        )
