"""Prefect flow ``backtest``: replay the decision engine over out-of-fold predictions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from models.backtest import run_backtest_study
from models.tracking import Tracking
from sextant.settings import load_settings

__all__ = ["backtest_flow", "run_study"]


@task(name="backtest-study", cache_policy=NO_CACHE)
def run_study(home: str | None = None, fuser_mode: str | None = None) -> dict[str, Any]:
    """Selection on the earlier half, every strategy reported on the later half, logged to MLflow."""
    settings = load_settings(**({"home": Path(home)} if home else {}))
    return run_backtest_study(
        settings, Tracking.from_settings(settings), fuser_mode=fuser_mode
    ).to_json()


@flow(name="backtest")
def backtest_flow(home: str | None = None, fuser_mode: str | None = None) -> dict[str, Any]:
    """One backtest study (after `train`)."""
    return run_study(home, fuser_mode)
