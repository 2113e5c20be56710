"""Prefect flow ``ingest``: one task per source × symbol; only transient failures are retried."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.objects import State, TaskRun
from prefect.tasks import Task, exponential_backoff

from features.ingest.batch import Dataset
from features.ingest.plan import IngestRequest, plan_ingest
from features.ingest.service import ingest_source
from features.ingest.store import MarketStore
from sextant.errors import SourceUnavailableError
from sextant.settings import load_settings

__all__ = ["ingest_flow", "ingest_series", "retry_if_transient"]


def retry_if_transient(task: Task[Any, Any], task_run: TaskRun, state: State[Any]) -> bool:
    """Retry only what may succeed later (SourceUnavailableError); bad input or config fails at once."""
    return isinstance(state.result(raise_on_failure=False), SourceUnavailableError)


@task(
    name="ingest-series",
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_if_transient,
    cache_policy=NO_CACHE,  # ingestion must always look at the source again
)
def ingest_series(request: IngestRequest, home: str | None = None) -> list[dict[str, Any]]:
    """Ingest one source × symbol into the market store; resumes after what is already stored."""
    settings = load_settings(**({"home": Path(home)} if home else {}))
    results: list[dict[str, Any]] = []
    with MarketStore(settings.paths.market_db) as store:
        for unit in plan_ingest(request, settings):
            results.extend(r.to_json() for r in ingest_source(unit.source, store))
    return results


@flow(name="ingest", log_prints=True)
def ingest_flow(
    source: str = "sample",
    symbols: list[str] | None = None,
    exchange: str | None = None,
    api_url: str | None = None,
    timeframe: str | None = None,
    since: datetime | None = None,
    path: str | None = None,
    dataset: str | None = None,
    feeds: list[str] | None = None,
    home: str | None = None,
) -> list[dict[str, Any]]:
    """Ingest a source for each symbol (sequentially: the market store has one writer)."""
    request = IngestRequest(
        source=source,
        exchange=exchange,
        api_url=api_url,
        symbols=tuple(symbols or ()),
        timeframe=timeframe,
        since=since,
        path=Path(path) if path else None,
        dataset=Dataset(dataset) if dataset else None,
        feeds=tuple(feeds or ()),
    )
    per_symbol = (
        [replace(request, symbols=(s,)) for s in request.symbols]
        if source == "ccxt" and request.symbols
        else [request]
    )
    settings = load_settings(**({"home": Path(home)} if home else {}))
    results: list[dict[str, Any]] = []
    for part in per_symbol:
        label = f"ingest-{source}-{part.symbols[0] if part.symbols else 'all'}"
        configured = ingest_series.with_options(
            task_run_name=label,
            retries=settings.task_retries,
            retry_delay_seconds=exponential_backoff(backoff_factor=settings.task_retry_delay_s),
        )
        results.extend(configured(part, home))
    return results
