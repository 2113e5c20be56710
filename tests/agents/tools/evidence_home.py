"""A home with recorded evidence for the tools' and the offline explainer's tests (session fixture).

A copy of the served home (tests/served_home.py: sample data, features, trained champions), so
that nothing here changes the home other tests share. In the copy: the decision engine decides
the last four bars (the online store put back to each bar with `OnlineReplay`, as the service
would have seen it) for both symbols in account ``explain``; one bar is decided again with no
XGBoost champion (account ``no-xgb``: a MODEL_UNAVAILABLE-style record without an xgb version);
the promotion gate runs once (the challengers are the champions: ``ALREADY_CHAMPION`` entries in
the ledger); and one anomaly record is stored the way the monitor stores it, two bars before the
last decision of BTC.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from sextant.settings import Settings
from tests.served_home import ServedHome

__all__ = ["ACCOUNT", "NO_XGB_ACCOUNT", "EvidenceHome", "copy_home", "evidence_home"]

ACCOUNT = "explain"
NO_XGB_ACCOUNT = "no-xgb"
BARS = 4


@dataclass(frozen=True)
class EvidenceHome:
    """The copied home, its decisions by (symbol, bar close), the planted anomaly's id."""

    settings: Settings
    last_close: datetime
    decisions: dict[tuple[str, datetime], str]
    no_xgb_decision: str
    anomaly_id: str
    anomaly_bar: datetime


def copy_home(source: Path, target: Path) -> Settings:
    """A copy of a home (stores, features, registry; MLflow artifacts stay where they were)."""
    from sextant.settings import load_settings

    shutil.copytree(source, target)
    return load_settings(home=target)


@pytest.fixture(scope="session")
def evidence_home(
    served_home: ServedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EvidenceHome]:
    from agents.monitoring.findings import Category, Finding, Severity
    from features.feast_store import FeastStore
    from models.registry import PromotionPolicy, promote
    from models.tracking import Tracking
    from serving.decisions_store import DecisionsStore
    from serving.engine import DecisionEngine
    from serving.online_replay import OnlineReplay
    from sextant.contracts import CHAMPION, REGISTERED_MODELS

    settings = copy_home(served_home.settings.paths.home, tmp_path_factory.mktemp("evidence") / "h")
    last = served_home.last_close
    bar = timedelta(hours=1)
    first = last - (BARS - 1) * bar
    replay = OnlineReplay(FeastStore(settings), settings.symbols, first, last)
    engine = DecisionEngine.from_settings(settings, account=ACCOUNT)
    decisions: dict[tuple[str, datetime], str] = {}
    try:
        for close in [first + i * bar for i in range(BARS)]:
            replay.load(close)
            batch = engine.decide(now=close + timedelta(minutes=5))
            for record in batch.records:
                decisions[(str(record["symbol"]), close)] = str(record["id"])
    finally:
        engine.close()

    tracking = Tracking.from_settings(settings)
    promote(tracking, settings.paths.home, ("xgb", "lstm", "garch"), PromotionPolicy(n_boot=100))
    tracking.client.delete_registered_model_alias(REGISTERED_MODELS["xgb"], CHAMPION)
    engine = DecisionEngine.from_settings(settings, account=NO_XGB_ACCOUNT)
    try:
        no_xgb = str(engine.decide(["BTC/USDT"], now=last + timedelta(minutes=5)).records[0]["id"])
    finally:
        engine.close()

    anomaly_bar = last - 2 * bar
    finding = Finding(
        kind="volume_spike",
        category=Category.MARKET,
        symbol="BTC/USDT",
        bar_ts=anomaly_bar,
        severity=Severity.WARNING,
        statistic="volume_over_median",
        value=12.5,
        threshold=8.0,
        detail="planted for the explainer's tests",
        evidence={"volume": 1250.0, "median_volume": 100.0, "volumes_before": [90.0, 110.0]},
    )
    with DecisionsStore.open(settings.paths.decisions_db) as store:
        store.record_anomalies([{**finding.as_record(), "detected_at": last.isoformat()}])
    yield EvidenceHome(settings, last, decisions, no_xgb, finding.id, anomaly_bar)
