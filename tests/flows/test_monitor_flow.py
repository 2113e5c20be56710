"""The Prefect `monitor` flow on a home with the sample ingested: it stores what it finds, once."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from flows.monitor import monitor_flow
from serving.decisions_store import DecisionsStore
from tests.agents.monitoring.test_monitor import sample_home

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]

NOW = datetime(2024, 1, 11, 0, 30, tzinfo=UTC)


def test_the_flow_stores_the_findings_once(tmp_path: Path) -> None:
    settings = sample_home(tmp_path / "home")
    home = str(settings.paths.home)

    first = monitor_flow(home=home, now=NOW)
    again = monitor_flow(home=home, now=NOW)

    assert first["stored"] == first["found"] > 0 and first["by_kind"]["missing_bar"] == 2
    assert again["stored"] == 0 and again["since"] > first["since"]
    with DecisionsStore.open(settings.paths.decisions_db, readonly=True) as store:
        assert len(store.anomalies(10_000)) == first["stored"]
