"""The monitor over a real home: the sample ingested into DuckDB, anomalies planted in the store,
findings stored once, later runs evaluating only the bars after the last one."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from agents.monitoring.findings import Category, Finding, Severity
from agents.monitoring.monitor import LAST_BAR_KEY, run_monitor
from serving.decisions_store import DecisionsStore
from sextant.settings import Settings, load_settings

BTC, ETH = "BTC/USDT", "ETH/USDT"
VOLUME_BAR = datetime(2023, 10, 5, 14, tzinfo=UTC)
RETURN_BAR = datetime(2023, 9, 12, 10, tzinfo=UTC)
REAL_HOLE = datetime(2023, 3, 24, 13, tzinfo=UTC)  # the sample's own missing bar
NOW = datetime(2024, 1, 11, 0, 30, tzinfo=UTC)  # half an hour after the sample's last bar closed


def sample_home(path: Path) -> Settings:
    from features.ingest.service import ingest_source
    from features.ingest.sources.sample import SampleSource
    from features.ingest.store import MarketStore

    settings = load_settings(home=path)
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(SampleSource(), store)
    return settings


def plant(settings: Settings) -> None:
    """A 50x volume bar in ETH and a close 12 % above the previous one in BTC, in the store."""
    with duckdb.connect(str(settings.paths.market_db)) as con:
        con.execute(
            "UPDATE candles SET volume = volume * 50 WHERE symbol = ? AND event_ts = ?",
            [ETH, VOLUME_BAR],
        )
        con.execute(
            "UPDATE candles SET close = close * 1.12, high = greatest(high, close * 1.12) "
            "WHERE symbol = ? AND event_ts = ?",
            [BTC, RETURN_BAR],
        )


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = sample_home(tmp_path_factory.mktemp("monitor-home"))
    plant(settings)
    return settings


def stored(settings: Settings, **filters: object) -> list[dict[str, object]]:
    with DecisionsStore.open(settings.paths.decisions_db, readonly=True) as store:
        return store.anomalies(10_000, **filters)  # type: ignore[arg-type]


def test_a_first_run_finds_the_planted_anomalies_and_the_real_hole_and_stores_them(
    home: Settings,
) -> None:
    report = run_monitor(home, now=NOW)

    found = {(f.kind, f.symbol, f.bar_ts) for f in report.findings}
    assert ("volume_spike", ETH, VOLUME_BAR) in found
    assert ("garch_residual", BTC, RETURN_BAR) in found
    assert {("missing_bar", s, REAL_HOLE) for s in (BTC, ETH)} <= found
    assert report.stored == len(report.findings) == len(stored(home))
    (spike,) = stored(
        home, kind="volume_spike", symbol=ETH, start=VOLUME_BAR, end=VOLUME_BAR + timedelta(hours=1)
    )
    assert spike["value"] > spike["threshold"] and spike["detected_at"] == NOW.isoformat()
    evidence = spike["evidence"]
    assert isinstance(evidence, dict) and 0 < len(evidence["volumes_before"]) <= 50
    assert evidence["volume"] > 10 * evidence["median_volume"]  # 50x an ordinary bar
    # a first run evaluates after the warm-up, on which the GARCH reference was fitted: the
    # parameters never saw the returns they judge
    assert report.since is not None and report.since < REAL_HOLE < RETURN_BAR
    for fit in report.garch.values():
        assert datetime.fromisoformat(str(fit["fitted_through"])) < min(
            f.bar_ts for f in report.findings if f.kind == "garch_residual"
        )


def test_a_rerun_over_the_same_bars_stores_nothing_new(home: Settings) -> None:
    before = stored(home)
    first_run_since = min(datetime.fromisoformat(str(a["bar_ts"])) for a in before)

    again = run_monitor(home, since=max(first_run_since, RETURN_BAR - timedelta(days=30)), now=NOW)

    assert again.stored == 0 and again.findings
    assert stored(home) == before


def test_a_later_run_evaluates_only_the_bars_after_the_last_one(home: Settings) -> None:
    with DecisionsStore.open(home.paths.decisions_db, readonly=True) as store:
        last = datetime.fromisoformat(store.monitor_state(LAST_BAR_KEY))

    later = run_monitor(home, now=NOW)

    assert later.since == last + timedelta(hours=1) and later.stored == 0
    assert all(f.bar_ts >= later.since for f in later.findings if f.kind != "missing_bar")


def drift_finding(kind: str, at: datetime, symbol: str = BTC) -> Finding:
    return Finding(
        kind=f"{kind}_xgb",
        category=Category.MODEL,
        symbol=symbol,
        bar_ts=at,
        severity=Severity.WARNING,
        statistic="psi",
        value=0.4,
        threshold=0.25,
        detail="planted",
        evidence={"family": "xgb"},
    )


def test_a_drift_alarm_is_one_event_per_crossing_across_runs(tmp_path: Path) -> None:
    from agents.monitoring.monitor import DRIFT_ALARMS_KEY, _drift_edges
    from serving.market import MarketHistory

    settings = load_settings(home=tmp_path)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    opens = pd.date_range(start, periods=12, freq="h", tz="UTC")
    history = MarketHistory(BTC, "s", pd.DataFrame({"event_ts": opens}), pd.DataFrame())
    close = [t.to_pydatetime() + timedelta(hours=1) for t in opens]
    # above the line at bars 2-4 and 7-8 (two crossings), the other kind never
    above = [drift_finding("prediction_drift", close[i]) for i in (2, 3, 4, 7, 8)]

    with DecisionsStore.open(settings.paths.decisions_db) as store:
        first_half = [f for f in above if f.bar_ts <= close[5]]
        alarms, events = _drift_edges(
            store,
            first_half,
            {BTC: MarketHistory(BTC, "s", history.candles.iloc[:6], pd.DataFrame())},
            close[0],
            settings,
        )
        store.record_anomalies([], state={DRIFT_ALARMS_KEY: alarms})
        later, more = _drift_edges(
            store,
            [f for f in above if f.bar_ts > close[5]],
            {BTC: MarketHistory(BTC, "s", history.candles.iloc[6:], pd.DataFrame())},
            close[6],
            settings,
        )

    assert [e["bar"] for e in events] == [close[2].isoformat()]  # once, though above 3 bars
    assert alarms == {"prediction_drift_xgb": False}  # back below at bar 5
    assert [e["bar"] for e in more] == [close[7].isoformat()]  # the second crossing
    assert later == {"prediction_drift_xgb": False}
    assert events[0]["value"] == 0.4 and events[0]["anomaly_ids"] == [above[0].id]
