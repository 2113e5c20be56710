"""Prefect flow ``features``: build the feature tables, then apply + materialize Feast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from features.build import build_features
from features.feast_store import materialize
from sextant.settings import Settings, load_settings

__all__ = ["build_feature_tables", "features_flow", "materialize_feast"]


def _settings(home: str | None) -> Settings:
    return load_settings(**({"home": Path(home)} if home else {}))


@task(name="build-feature-tables", cache_policy=NO_CACHE)
def build_feature_tables(
    home: str | None = None, symbols: list[str] | None = None
) -> dict[str, Any]:
    """Recompute the tables of symbols whose inputs changed."""
    return build_features(_settings(home), symbols=tuple(symbols) if symbols else None).to_json()


@task(name="materialize-feast", cache_policy=NO_CACHE)
def materialize_feast(home: str | None = None) -> list[dict[str, Any]]:
    """Apply the Feast repo and materialize what is new."""
    return [r.to_json() for r in materialize(_settings(home))]


@flow(name="features")
def features_flow(home: str | None = None, symbols: list[str] | None = None) -> dict[str, Any]:
    """Build, then materialize (runs after `ingest`)."""
    built = build_feature_tables(home, symbols)
    materialized = materialize_feast(home)
    return {"build": built, "materialize": materialized}
