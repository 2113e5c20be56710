"""Prefect flow ``train``: train and register every family, then run the promotion gate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models.registry import promote
from models.tracking import Tracking
from models.training import TrainConfig, train_models
from sextant.settings import Settings, load_settings

__all__ = ["promote_models", "train_family", "train_flow"]


def _settings(home: str | None) -> Settings:
    return load_settings(**({"home": Path(home)} if home else {}))


@task(name="train-family", cache_policy=NO_CACHE)
def train_family(family: str, quick: bool, home: str | None = None) -> dict[str, Any]:
    """Walk-forward CV, final fit, ONNX parity and registration of one family."""
    settings = _settings(home)
    config = TrainConfig.quick(families=(family,)) if quick else TrainConfig(families=(family,))
    (report,) = train_models(settings, config, Tracking.from_settings(settings))
    return report.to_json()


@task(name="promote-models", cache_policy=NO_CACHE)
def promote_models(families: list[str], home: str | None = None) -> list[dict[str, Any]]:
    """The promotion gate for each family; every decision lands in the ledger."""
    settings = _settings(home)
    tracking = Tracking.from_settings(settings)
    return [d.to_json() for d in promote(tracking, settings.paths.home, tuple(families))]


@flow(name="train")
def train_flow(
    families: list[str] | None = None, quick: bool = False, home: str | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Train → register → promote (one task per family, so a failure names its family)."""
    chosen = families or ["garch", "xgb", "lstm"]
    trained = [
        train_family.with_options(task_run_name=f"train-{f}")(f, quick, home) for f in chosen
    ]
    return {"trained": trained, "promotions": promote_models(chosen, home)}
