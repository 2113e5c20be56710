"""The monitor's model-drift step on the served home (trained champions with drift references)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

import pytest

from agents.monitoring.monitor import DRIFT_ALARMS_KEY, DRIFT_EVENT, run_monitor
from serving.decisions_store import DecisionsStore
from serving.metrics import DRIFT_FIGURES_KEY
from tests.served_home import ServedHome

pytestmark = pytest.mark.slow


def test_drift_is_judged_against_the_champions_references_and_emitted_once(
    served_home: ServedHome,
) -> None:
    settings = served_home.settings
    since = served_home.last_close - timedelta(hours=48)
    now = served_home.last_close + timedelta(minutes=5)
    sent: list[tuple[str, Mapping[str, Any]]] = []

    first = run_monitor(settings, since=since, now=now, emit=lambda e, p: sent.append((e, p)))
    again = run_monitor(settings, since=since, now=now, emit=lambda e, p: sent.append((e, p)))

    assert first.drift_families == ("xgb", "lstm")  # both champions carry a reference
    drift = [f for f in first.findings if f.category.value == "model"]
    kinds = {f.kind for f in drift}
    assert kinds <= {
        f"{k}_{fam}"
        for k in ("feature_drift", "prediction_drift", "calibration_decay")
        for fam in ("xgb", "lstm")
    } | {"decision_mix_drift"}
    for finding in drift:  # each names its family and carries its figures
        assert finding.value >= finding.threshold and finding.evidence
    rising = {e["alarm"] for _, e in sent}
    # one event per alarm that rose in the first run; the re-run over the same bars sends none
    assert len(sent) == len(first.events) == len(rising) and again.events == ()
    assert all(name == DRIFT_EVENT for name, _ in sent)
    assert rising <= {f.kind for f in drift}
    with DecisionsStore.open(settings.paths.decisions_db, readonly=True) as store:
        alarms = store.monitor_state(DRIFT_ALARMS_KEY)
        figures = store.monitor_state(DRIFT_FIGURES_KEY)
    assert set(rising) <= {alarm for alarm, up in alarms.items() if up} | set(alarms)
    assert set(figures) <= {"xgb", "lstm"}
