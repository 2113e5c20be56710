"""Prefect flow ``pipeline``: the whole chain on the bundled sample (what `make run` executes)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from features.ingest.store import MarketStore
from flows.features import features_flow
from flows.ingest import ingest_flow
from sextant.settings import load_settings

__all__ = ["pipeline_flow"]


@task(name="data-status", cache_policy=NO_CACHE)
def data_status(home: str | None = None) -> list[dict[str, Any]]:
    """Coverage of the market store after ingestion."""
    settings = load_settings(**({"home": Path(home)} if home else {}))
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        return [c.to_json() for c in store.coverage()]


@flow(name="pipeline")
def pipeline_flow(home: str | None = None) -> dict[str, list[dict[str, Any]]]:
    """Ingest the bundled sample, report the store, build and materialize features."""
    ingested = ingest_flow(source="sample", home=home)
    status = data_status(home)
    built = features_flow(home=home)
    return {
        "ingest": ingested,
        "status": status,
        "features build": built["build"]["views"],
        "features materialize": built["materialize"],
    }
