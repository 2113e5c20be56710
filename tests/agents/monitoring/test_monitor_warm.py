"""The long-lived monitor: a warm `Monitor` fed one new bar at a time finds and stores exactly
what a fresh `run_monitor` finds on the same store, late candles included; it never holds the
market store between runs; ``follow_monitor`` runs after each bar close."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from agents.monitoring.monitor import (
    DRIFT_ALARMS_KEY,
    GARCH_FITS_KEY,
    LAST_BAR_KEY,
    Monitor,
    MonitorReport,
    follow_monitor,
    next_run_at,
    run_monitor,
)
from serving.decisions_store import DecisionsStore
from sextant.contracts import CHAMPION, REGISTERED_MODELS
from sextant.settings import Settings, load_settings
from tests.agents.monitoring.planting import Batches
from tests.served_home import ServedHome

BTC, ETH = "BTC/USDT", "ETH/USDT"
HELD_BACK = 6  # the sample's last bars, fed to the store one at a time by the tests
FUNDING = {BTC: "BTC/USDT:USDT", ETH: "ETH/USDT:USDT"}


class Rows:
    """An ingest source of given candle and funding rows (source label ``sample``)."""

    name = "sample"

    def __init__(self, candles: pd.DataFrame, funding: pd.DataFrame) -> None:
        self.candles = candles
        self.funding = funding

    def batches(self, cursor: object) -> Iterator[Any]:
        from features.ingest.batch import Batch, Dataset

        for symbol, rows in self.candles.groupby("symbol"):
            frame = rows.assign(timeframe="1h").reset_index(drop=True)
            yield Batch(Dataset.CANDLES, "sample", "test bar", frame, str(symbol), "1h")
        for perp, rows in self.funding.groupby("symbol"):
            yield Batch(
                Dataset.FUNDING, "sample", "test bar", rows.reset_index(drop=True), str(perp)
            )


@dataclass
class Pair:
    """Two homes on the same market data: ``warm`` for a kept Monitor, ``cold`` for run_monitor
    (each its own decisions store); ``held`` the sample's last bars, not stored yet."""

    warm: Settings
    cold: Settings
    candles: pd.DataFrame
    funding: pd.DataFrame

    def ingest(self, candles: pd.DataFrame, funding: pd.DataFrame | None = None) -> None:
        from features.ingest.service import ingest_source
        from features.ingest.store import MarketStore

        rates = self.funding.iloc[0:0] if funding is None else funding
        with MarketStore(self.warm.paths.market_db) as store:
            ingest_source(Rows(candles, rates), store)
        shutil.copyfile(self.warm.paths.market_db, self.cold.paths.market_db)

    def bar(self, opened: pd.Timestamp, symbols: tuple[str, ...] = (BTC, ETH)) -> None:
        """Store the held-back bar opening at ``opened`` (and funding settling at it)."""
        candles = self.candles[
            (self.candles["event_ts"] == opened) & self.candles["symbol"].isin(symbols)
        ]
        perps = [FUNDING[s] for s in symbols]
        funding = self.funding[
            (self.funding["event_ts"] == opened) & self.funding["symbol"].isin(perps)
        ]
        self.ingest(candles, funding)


def _home(path: Path) -> Settings:
    return load_settings(home=path, symbols=(BTC, ETH))


@pytest.fixture
def pair(tmp_path: Path) -> Pair:
    """The sample in one store with its last ``HELD_BACK`` bars (and their funding) removed."""
    from features.ingest.service import ingest_source
    from features.ingest.sources.sample import SampleSource
    from features.ingest.store import MarketStore

    warm, cold = _home(tmp_path / "warm"), _home(tmp_path / "cold")
    with MarketStore(warm.paths.market_db) as store:
        ingest_source(SampleSource(), store)
    with duckdb.connect(str(warm.paths.market_db)) as con:
        con.execute("SET TimeZone = 'UTC'")
        (last,) = con.execute("SELECT max(event_ts) FROM candles").fetchone() or (None,)
        cut = pd.Timestamp(last) - pd.Timedelta(hours=HELD_BACK - 1)
        candles = con.execute(
            "SELECT symbol, event_ts, open, high, low, close, volume FROM candles "
            "WHERE event_ts >= ? ORDER BY event_ts, symbol",
            [cut.to_pydatetime()],
        ).df()
        funding = con.execute(
            "SELECT symbol, event_ts, available_at, funding_rate FROM funding_rates "
            "WHERE event_ts >= ? ORDER BY event_ts",
            [cut.to_pydatetime()],
        ).df()
        con.execute("DELETE FROM candles WHERE event_ts >= ?", [cut.to_pydatetime()])
        con.execute("DELETE FROM funding_rates WHERE event_ts >= ?", [cut.to_pydatetime()])
    cold.paths.market_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(warm.paths.market_db, cold.paths.market_db)
    for frame in (candles, funding):
        for column in ("event_ts", "available_at"):
            if column in frame:
                frame[column] = pd.to_datetime(frame[column], utc=True)
    return Pair(warm, cold, candles, funding)


def _same(warm: MonitorReport, cold: MonitorReport, pair: Pair) -> None:
    """Findings (ids, values, evidence), summaries, stored records and states all equal."""
    assert [f.as_record() for f in warm.findings] == [f.as_record() for f in cold.findings]
    assert warm.to_json() == cold.to_json()
    kept = []
    for settings in (pair.warm, pair.cold):
        with DecisionsStore.open(settings.paths.decisions_db, readonly=True) as store:
            states = [store.monitor_state(k) for k in (LAST_BAR_KEY, GARCH_FITS_KEY)]
            kept.append((store.anomalies(100_000), states, store.monitor_state(DRIFT_ALARMS_KEY)))
    assert kept[0] == kept[1]


def test_a_warm_monitor_finds_and_stores_what_the_one_shot_does_bar_by_bar(pair: Pair) -> None:
    opens = sorted(pair.candles["event_ts"].unique())
    first = pd.Timestamp(opens[0]) - pd.Timedelta(hours=48)
    now = first.to_pydatetime() + timedelta(hours=50)
    with Monitor.open(pair.warm) as monitor:
        _same(
            monitor.run(since=first.to_pydatetime(), now=now),
            run_monitor(pair.cold, since=first.to_pydatetime(), now=now),
            pair,
        )
        # bar 0 for BTC only (ETH's arrives late, below); then each bar in turn for both
        pair.bar(opens[0], (BTC,))
        steps: list[tuple[str, ...]] = [(BTC,), (BTC, ETH), (BTC, ETH), (BTC, ETH)]
        for i, symbols in enumerate(steps):
            if i > 0:
                pair.bar(opens[i], symbols)
            if i == 2:  # ETH's bar 0, ingested two bars late: fills a hole in the held window
                pair.bar(opens[0], (ETH,))
            now = pd.Timestamp(opens[i]).to_pydatetime() + timedelta(hours=1, minutes=5)
            warm = monitor.run(now=now)
            cold = run_monitor(pair.cold, now=now)
            _same(warm, cold, pair)
            assert warm.until == pd.Timestamp(opens[i]).to_pydatetime()
        # the late bar was read: ETH's window has no hole left, as the store has none
        eth = monitor._market.held[ETH].candles["event_ts"]
        assert (eth.diff().dropna() == pd.Timedelta(hours=1)).all()
        assert pd.Timestamp(opens[0]) in set(eth)
        # a re-run over the same bars stores nothing new, warm or cold
        again = monitor.run(since=pd.Timestamp(opens[0]).to_pydatetime(), now=now)
        cold_again = run_monitor(pair.cold, since=pd.Timestamp(opens[0]).to_pydatetime(), now=now)
        assert again.stored == cold_again.stored == 0
        _same(again, cold_again, pair)


def test_the_held_market_windows_equal_a_fresh_read_bar_by_bar(pair: Pair) -> None:
    """The windows a warm monitor moves forward from the new rows alone (bars with and without
    a funding settlement, a symbol without a new bar, a late bar) equal reading them afresh:
    the same rows, values and dtypes."""
    from agents.monitoring.monitor import _logged_after
    from serving.market import market_histories

    opens = sorted(pair.candles["event_ts"].unique())
    with duckdb.connect(str(pair.warm.paths.market_db), read_only=True) as con:
        con.execute("SET TimeZone = 'UTC'")
        last = con.execute(
            "SELECT symbol, max(event_ts) AS event_ts, arg_max(funding_rate, event_ts) AS "
            "funding_rate FROM funding_rates GROUP BY symbol ORDER BY symbol"
        ).df()
    last["event_ts"] = pd.to_datetime(last["event_ts"], utc=True)

    def settle(perps: list[str], k: int) -> pd.DataFrame:
        """The perpetuals' ``k``-th next settlement (8-hourly) after the stored ones."""
        rows = last[last["symbol"].isin(perps)].copy()
        rows["event_ts"] = rows["event_ts"] + pd.Timedelta(hours=8 * k)
        rows["available_at"] = rows["event_ts"]
        rows["funding_rate"] = rows["funding_rate"] * (1 + k)
        return rows[["symbol", "event_ts", "available_at", "funding_rate"]]

    first = pd.Timestamp(opens[0]) - pd.Timedelta(hours=48)
    with Monitor.open(pair.warm) as monitor:
        monitor.run(since=first.to_pydatetime(), now=first.to_pydatetime() + timedelta(hours=50))
        steps: list[tuple[str, ...]] = [(BTC,), (BTC, ETH), (BTC, ETH), (BTC,), (BTC, ETH)]
        for i, symbols in enumerate(steps):
            pair.bar(opens[i], symbols)
            if i == 1:  # a settlement for BTC's perpetual only, then for both
                pair.ingest(pair.candles.iloc[0:0], settle([FUNDING[BTC]], 1))
            if i == 3:
                pair.ingest(pair.candles.iloc[0:0], settle(list(FUNDING.values()), 2))
            if i == 2:
                pair.bar(opens[0], (ETH,))  # two bars late
            monitor.run(now=pd.Timestamp(opens[i]).to_pydatetime() + timedelta(hours=1))
            with monitor._reader.attached() as market:
                fresh = market_histories(market, pair.warm, (BTC, ETH), start=monitor._market.start)
            for symbol in (BTC, ETH):
                held = monitor._market.held[symbol]
                pd.testing.assert_frame_equal(held.candles, fresh[symbol].candles)
                pd.testing.assert_frame_equal(held.funding, fresh[symbol].funding)
        assert len(monitor._market.held[BTC].funding) > len(monitor._market.held[ETH].funding) > 0
        # the entries after a time, in or out of logged_at order, are those logged after it
        log = monitor._log.frame
        assert log is not None and len(log) > 3
        seen = pd.Timestamp(log["logged_at"].iloc[len(log) // 2])
        expected = log[log["logged_at"] > seen]
        pd.testing.assert_frame_equal(_logged_after(log, seen), expected)
        shuffled = log.iloc[::-1]
        pd.testing.assert_frame_equal(_logged_after(shuffled, seen), expected.iloc[::-1])


def test_a_warm_monitor_sees_only_what_was_stored_at_each_bar(pair: Pair) -> None:
    """No look-ahead: the findings of a warm run at bar t equal a fresh run on the store as it
    was at t, and never name a bar after t; later bars change nothing already stored."""
    opens = sorted(pair.candles["event_ts"].unique())
    with Monitor.open(pair.warm) as monitor:
        since = (pd.Timestamp(opens[0]) - pd.Timedelta(hours=24)).to_pydatetime()
        monitor.run(since=since, now=since + timedelta(hours=25))
        run_monitor(pair.cold, since=since, now=since + timedelta(hours=25))
        for opened in opens[:3]:
            pair.bar(opened)
            now = pd.Timestamp(opened).to_pydatetime() + timedelta(hours=1, minutes=5)
            warm = monitor.run(now=now)
            _same(warm, run_monitor(pair.cold, now=now), pair)
            assert all(
                f.bar_ts <= pd.Timestamp(opened) + pd.Timedelta(hours=1) for f in warm.findings
            )


def test_an_ingest_in_another_process_succeeds_while_the_monitor_is_open(pair: Pair) -> None:
    with Monitor.open(pair.warm) as monitor:
        monitor.run(now=datetime(2024, 1, 11, tzinfo=UTC))
        code = (
            "import sys, duckdb; con = duckdb.connect(sys.argv[1]); "
            "con.execute(\"UPDATE candles SET volume = volume WHERE symbol = 'BTC/USDT'\"); "
            "con.close()"
        )
        done = subprocess.run(
            [sys.executable, "-c", code, str(pair.warm.paths.market_db)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        monitor.run(now=datetime(2024, 1, 11, tzinfo=UTC))  # and the monitor reads on


def test_follow_runs_now_then_after_each_bar_close(pair: Pair) -> None:
    newest = pd.Timestamp(pair.candles["event_ts"].min()) - pd.Timedelta(hours=1)
    since = (newest - pd.Timedelta(hours=3)).to_pydatetime()
    run_monitor(pair.warm, since=since, now=since + timedelta(hours=4))  # not a first run
    clock = [datetime(2024, 1, 10, 19, 20, tzinfo=UTC)]
    slept: list[float] = []
    reports: list[MonitorReport] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        clock[0] += timedelta(seconds=seconds)

    runs = follow_monitor(
        pair.warm,
        bars=3,
        delay=timedelta(seconds=30),
        clock=lambda: clock[0],
        sleep=sleep,
        on_report=reports.append,
    )

    assert runs == 3 and len(reports) == 3
    assert slept == [40 * 60 + 30, 3600]  # to 20:00:30, then 21:00:30
    # no new bar was stored: each run evaluates from after the newest bar, which stays
    assert {r.until for r in reports} == {newest.to_pydatetime()}
    assert next_run_at(datetime(2024, 1, 1, 5, 0, 30, tzinfo=UTC), timedelta(hours=1), timedelta(seconds=30)) == datetime(2024, 1, 1, 6, 0, 30, tzinfo=UTC)  # fmt: skip


@pytest.mark.slow
def test_a_moved_champion_alias_switches_the_drift_reference(
    served_home: ServedHome, tmp_path: Path
) -> None:
    """The alias is read again when the registry changed (not only every
    ``champion_recheck_s``): a champion without a drift reference stops being judged at the
    next run, and its return is judged again, as a fresh run_monitor sees it."""
    from mlflow import MlflowClient

    source = served_home.settings
    registry = tmp_path / "mlflow.db"
    shutil.copyfile(source.paths.mlflow_dir / "mlflow.db", registry)
    uri = f"sqlite:///{registry}"
    homes = []
    for name in ("warm", "cold"):
        settings = load_settings(
            home=tmp_path / name, mlflow_tracking_uri=uri, mlflow_registry_uri=uri
        )
        settings.paths.market_db.parent.mkdir(parents=True)
        shutil.copyfile(source.paths.market_db, settings.paths.market_db)
        shutil.copytree(source.paths.features_dir, settings.paths.features_dir)
        homes.append(settings)
    warm, cold = homes
    pair = Pair(warm, cold, pd.DataFrame(), pd.DataFrame())
    since = served_home.last_close - timedelta(hours=24)
    now = served_home.last_close + timedelta(minutes=5)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    model = REGISTERED_MODELS["xgb"]
    champion = client.get_model_version_by_alias(model, CHAMPION)
    (tmp_path / "bare").mkdir()  # a version without the drift_reference tag
    bare = client.create_model_version(model, (tmp_path / "bare").as_uri())

    with Monitor.open(warm) as monitor:
        first = monitor.run(since=since, now=now)
        _same(first, run_monitor(cold, since=since, now=now), pair)
        assert first.drift_families == ("xgb", "lstm")
        client.set_registered_model_alias(model, CHAMPION, bare.version)  # no drift reference
        moved = monitor.run(since=since, now=now)
        _same(moved, run_monitor(cold, since=since, now=now), pair)
        assert moved.drift_families == ("lstm",)
        client.set_registered_model_alias(model, CHAMPION, champion.version)
        back = monitor.run(since=since, now=now)
        _same(back, run_monitor(cold, since=since, now=now), pair)
        assert back.drift_families == ("xgb", "lstm")


def test_a_warm_monitor_judges_the_other_series_and_ingest_runs_as_the_one_shot(
    pair: Pair,
) -> None:
    """The data-quality side of a warm monitor watching BTC only: ETH's candles (not watched)
    gain a hole, then the row that closes it, then the late missing row; a live source's run
    quarantines rows, another re-sends stored rows (nothing added, bars due). Each bar the
    warm run, which reads again only the series the ingest log says changed and judges only
    the series with new runs, equals a fresh run."""
    from features.ingest.batch import Batch, Dataset
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore

    def live(rows: pd.DataFrame) -> None:
        frame = rows.drop(columns="symbol").assign(symbol=ETH, timeframe="1h")
        batch = Batch(
            Dataset.CANDLES, "exchange", "test bar", frame.reset_index(drop=True), ETH, "1h"
        )
        with MarketStore(pair.warm.paths.market_db) as store:
            ingest_source(Batches([batch]), store)
        shutil.copyfile(pair.warm.paths.market_db, pair.cold.paths.market_db)

    opens = sorted(pair.candles["event_ts"].unique())
    eth = pair.candles[pair.candles["symbol"] == ETH].set_index("event_ts")
    first = (pd.Timestamp(opens[0]) - pd.Timedelta(hours=48)).to_pydatetime()
    now = first + timedelta(hours=50)
    with Monitor.open(pair.warm) as monitor:
        _same(monitor.run(symbols=(BTC,), since=first, now=now), run_monitor(pair.cold, symbols=(BTC,), since=first, now=now), pair)  # fmt: skip
        found: set[str] = set()
        for i in range(5):
            pair.bar(opens[i], (BTC,) if i in (0, 1) else (BTC, ETH))  # ETH's 0 and 1 wait
            if i == 1:  # the live source's first ETH rows: bar 1 (bar 0 is missing: a hole)
                live(eth.loc[[opens[1]]].reset_index())
            if i == 2:  # a run with one bad row in two (quarantined), and the late bar 0
                bad = eth.loc[[opens[2], opens[3]]].reset_index()
                bad.loc[1, "close"] = -1.0
                live(bad)
                live(eth.loc[[opens[0]]].reset_index())
            if i == 3:  # a re-send of stored rows: adds nothing while bars are due
                live(eth.loc[[opens[1]]].reset_index())
            now = pd.Timestamp(opens[i]).to_pydatetime() + timedelta(hours=1, minutes=5)
            warm = monitor.run(symbols=(BTC,), now=now)
            _same(warm, run_monitor(pair.cold, symbols=(BTC,), now=now), pair)
            found |= {f.kind for f in warm.findings}
    assert {"series_gap", "quarantine_spike", "empty_ingest"} <= found


@pytest.mark.slow
def test_a_warm_monitor_reads_late_and_rewritten_feature_rows_as_the_one_shot(
    served_home: ServedHome, tmp_path: Path
) -> None:
    """Feature drift of a warm monitor over rewritten feature tables (as a build replaces them:
    time-major, read again from the window's row groups): rows of 100 bars inside the window
    missing, then arriving late with values training never saw, then rewritten back to their
    values. Each time the warm run equals a fresh run on the same tables, and the drift it
    reports follows the rows (it would not if it kept the rows it read before)."""
    from features.build import view_path, write_view_table
    from features.definitions import FEATURE_VIEWS, Kind

    source = served_home.settings
    homes = []
    for name in ("warm", "cold"):
        settings = load_settings(
            home=tmp_path / name,
            mlflow_tracking_uri=source.tracking_uri,
            mlflow_registry_uri=source.registry_uri,
        )
        settings.paths.market_db.parent.mkdir(parents=True)
        shutil.copyfile(source.paths.market_db, settings.paths.market_db)
        settings.paths.features_dir.mkdir(parents=True)
        homes.append(settings)
    warm, cold = homes
    pair = Pair(warm, cold, pd.DataFrame(), pd.DataFrame())
    tables = {
        kind: pd.read_parquet(view_path(source.paths.features_dir, FEATURE_VIEWS[kind]))
        for kind in Kind
    }
    last = served_home.last_close
    late = (
        pd.Timestamp(last) - pd.Timedelta(hours=112),
        pd.Timestamp(last) - pd.Timedelta(hours=13),
    )

    def write(rows: str) -> None:
        """Every home's tables with the late bars' rows left out, extreme, or as built."""
        for kind, table in tables.items():
            inside = table["available_at"].between(*late).to_numpy()
            frame = table.copy()
            if rows == "missing":
                frame = frame[~inside]
            elif rows == "extreme":
                floats = [c for c in frame.columns if frame[c].dtype == "float64"]
                frame.loc[inside, floats] = 1e9
            for settings in homes:
                write_view_table(view_path(settings.paths.features_dir, FEATURE_VIEWS[kind]), frame)

    since = last - timedelta(hours=24)
    now = last + timedelta(minutes=5)
    drifted = []
    with Monitor.open(warm) as monitor:
        for rows in ("missing", "extreme", "as built"):
            write(rows)
            report = monitor.run(since=since, now=now)
            _same(report, run_monitor(cold, since=since, now=now), pair)
            assert report.drift_families == ("xgb", "lstm")
            drifted.append(
                {
                    (f.kind, f.symbol, f.bar_ts)
                    for f in report.findings
                    if f.kind.startswith("feature_drift")
                }
            )
    # the late extreme rows drift both families at closes the others do not drift at
    assert drifted[1] - drifted[0] and drifted[1] - drifted[2]
    assert {kind for kind, _, _ in drifted[1] - drifted[0]} == {
        "feature_drift_xgb",
        "feature_drift_lstm",
    }
