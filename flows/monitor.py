"""Prefect flow ``monitor``: run the detectors over the new bars and store what they find.

Runs after each bar (after ``trade``). The detectors and the storage are
`agents.monitoring.monitor.run_monitor`; this flow only wires it to Prefect: a drift alarm that
rises is emitted as the Prefect event ``sextant.drift.detected`` (resource ``sextant.model.<family>``,
the figures in the payload), which a deployment trigger can match to retrain.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from agents.monitoring.monitor import run_monitor
from sextant.settings import Settings, load_settings

__all__ = ["emit_prefect_event", "monitor_bars", "monitor_flow"]


def _settings(home: str | None) -> Settings:
    return load_settings(**({"home": Path(home)} if home else {}))


def emit_prefect_event(event: str, payload: Mapping[str, Any]) -> None:
    """Emit ``event`` to Prefect's event stream, about the model family in the payload."""
    from prefect.events import emit_event

    family = str(payload.get("family", "unknown"))
    emit_event(
        event=event,
        resource={"prefect.resource.id": f"sextant.model.{family}", "sextant.family": family},
        payload=dict(payload),
    )


@task(name="monitor-bars", cache_policy=NO_CACHE)
def monitor_bars(
    home: str | None = None,
    symbols: list[str] | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Detect anomalies and drift over the bars since the last run; store them."""
    report = run_monitor(
        _settings(home),
        symbols=tuple(symbols) if symbols else None,
        since=since,
        now=now,
        emit=emit_prefect_event,
    )
    return report.to_json()


@flow(name="monitor")
def monitor_flow(
    home: str | None = None,
    symbols: list[str] | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Run the monitor once (after `trade`); returns what it found and stored."""
    return monitor_bars(home, symbols, since, now)
