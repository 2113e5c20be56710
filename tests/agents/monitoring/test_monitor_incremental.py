"""What a warm `Monitor` keeps between runs equals what it would read afresh: the ingest log it
holds (appended to, and trimmed as its span moves on)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd

from agents.monitoring.data_quality import read_ingest_log
from agents.monitoring.monitor import Monitor, MonitorConfig
from features.ingest.store import MarketStore
from sextant.settings import load_settings

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def _log(db: Path, entries: list[tuple[str, datetime, str]]) -> None:
    """Append ingest log entries (run id, logged at, symbol) as an ingest writes them."""
    with duckdb.connect(str(db)) as con:
        for run_id, at, symbol in entries:
            con.execute(
                "INSERT INTO ingest_log VALUES (?, ?, 'candles', 'exchange', ?, '1h', 'test', "
                "1, 1, 0, 0, ?, ?, ?)",
                [run_id, at, symbol, at, at, at],
            )


def test_the_held_ingest_log_equals_a_fresh_read_as_its_span_moves(tmp_path: Path) -> None:
    settings = load_settings(home=tmp_path, symbols=("BTC/USDT",))
    settings.paths.market_db.parent.mkdir(parents=True, exist_ok=True)
    MarketStore(settings.paths.market_db).close()  # the schema
    _log(
        settings.paths.market_db, [(f"r{i}", T0 + timedelta(days=i), "BTC/USDT") for i in range(40)]
    )
    # a start that moves on (older entries drop out), then back (everything read again)
    starts = [None, T0 + timedelta(days=3), T0 + timedelta(days=3), T0 + timedelta(days=10, hours=1), T0 + timedelta(days=41), T0 + timedelta(days=5)]  # fmt: skip
    config = MonitorConfig(reread_every_runs=100)  # no periodic full read: the held path only
    with Monitor.open(settings, config=config) as monitor:
        for k, start in enumerate(starts):
            new = [
                (f"n{k}-{j}", T0 + timedelta(days=40 + k, hours=j), "ETH/USDT") for j in range(k)
            ]
            _log(settings.paths.market_db, new)
            with monitor._reader.attached() as market:
                # Act
                held = monitor._ingest_log(market, start)
                # Assert
                fresh = read_ingest_log(market, since=start)
            pd.testing.assert_frame_equal(held, fresh)
            assert monitor._log.newest == fresh["logged_at"].max().to_pydatetime()
    assert len(held) > 0
