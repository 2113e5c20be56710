"""What a warm `Monitor` keeps between runs equals what it would read afresh: the ingest log it
holds (appended to, and trimmed as its span moves on), and the series rows `series_gap` judges
(extended from the log where it says enough, read again where it does not)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pytest

from agents.monitoring.data_quality import read_ingest_log, read_series_timestamps
from agents.monitoring.monitor import Monitor, MonitorConfig
from features.ingest.batch import Batch, Dataset
from features.ingest.service import ingest_source
from features.ingest.store import MarketStore
from sextant.settings import load_settings
from tests.agents.monitoring.planting import Batches

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


def _candles(symbol: str, hours: list[int]) -> Batch:
    times = [T0 + timedelta(hours=h) for h in hours]
    frame = pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": "1h",
            "event_ts": pd.to_datetime(times, utc=True),
            **{c: [100.0 + h for h in hours] for c in ("open", "high", "low", "close")},
            "volume": 1.0,
        }
    )
    return Batch(Dataset.CANDLES, "exchange", "test", frame, symbol, "1h")


def _funding(perp: str, hours: list[int]) -> Batch:
    times = pd.to_datetime([T0 + timedelta(hours=h) for h in hours], utc=True)
    frame = pd.DataFrame(
        {"symbol": perp, "event_ts": times, "available_at": times, "funding_rate": 1e-4}
    )
    return Batch(Dataset.FUNDING, "exchange", "test", frame, perp)


def test_the_held_series_rows_equal_a_fresh_read_and_single_row_appends_are_not_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A warm monitor's series rows (`series_gap`'s input) after each ingest equal
    `read_series_timestamps` afresh. A series whose new entries each added its one newest row
    is extended from the log alone (the held rows keep every series' newest row before the
    cutoff, which an edit bypassing the ingest before the first run changed); a late row, a
    batch of several rows, a series not held and a mixed series are read again."""
    settings = load_settings(home=tmp_path, symbols=("BTC/USDT",))
    settings.paths.market_db.parent.mkdir(parents=True, exist_ok=True)
    with MarketStore(settings.paths.market_db) as store:  # 48 hourly bars, 6 settlements
        ingest_source(
            Batches(
                [
                    _candles("ETH/USDT", list(range(48))),
                    _candles("SOL/USDT", [*range(40), *range(41, 48)]),  # a hole at 40
                    _funding("ETH/USDT:USDT", list(range(0, 48, 8))),
                    _funding("SOL/USDT:USDT", list(range(0, 48, 8))),
                ]
            ),
            store,
        )
    with duckdb.connect(str(settings.paths.market_db)) as con:  # an edit bypassing the ingest
        con.execute(  # ETH's perpetual's newest rate (40 h): its log entry still says 40 h
            "DELETE FROM funding_rates WHERE symbol = 'ETH/USDT:USDT' AND event_ts >= ?",
            [T0 + timedelta(hours=40)],
        )
    read: list[tuple[str, Any]] = []
    real_read = read_series_timestamps

    def spy(market: Any, dataset: str, **kwargs: Any) -> pd.DataFrame:
        read.append((dataset, kwargs.get("series")))
        return real_read(market, dataset, **kwargs)

    monkeypatch.setattr("agents.monitoring.monitor.read_series_timestamps", spy)
    watched = (("exchange", "BTC/USDT"),)
    eth, sol = ("exchange", "ETH/USDT", "1h"), ("exchange", "SOL/USDT", "1h")
    eth_rate, sol_rate = ("exchange", "ETH/USDT:USDT", "*"), ("exchange", "SOL/USDT:USDT", "*")
    steps: list[tuple[list[Batch], dict[str, set[Any] | None]]] = [
        # one new bar each, and ETH's settlement (its perpetual has no row from the cutoff
        # on: its newest row before it is held): nothing read
        (
            [
                _candles("ETH/USDT", [48]),
                _candles("SOL/USDT", [48]),
                _funding("ETH/USDT:USDT", [48]),
            ],
            {},
        ),
        # two runs of one bar each for ETH: both appended; SOL's late row 40: read again
        (
            [_candles("ETH/USDT", [49]), _candles("ETH/USDT", [50]), _candles("SOL/USDT", [40])],
            {"candles": {sol}},
        ),
        # two bars in one batch (ETH), and SOL's settlement with a row already stored
        (
            [_candles("ETH/USDT", [51, 52]), _funding("SOL/USDT:USDT", [40, 48])],
            {"candles": {eth}, "funding": {sol_rate}},
        ),
        # a series not held yet (XRP, rows before the span and in it): read
        (
            [_candles("XRP/USDT", [20, 51, 52])],
            {"candles": {("exchange", "XRP/USDT", "1h")}},
        ),
        # one bar for ETH, a late settlement and a new one for ETH's perpetual (mixed): read
        (
            [
                _candles("ETH/USDT", [53]),
                _funding("ETH/USDT:USDT", [44]),
                _funding("ETH/USDT:USDT", [56]),
            ],
            {"funding": {eth_rate}},
        ),
        # SOL's perpetual settles: appended; ADA's first row ever (a series not held): read
        (
            [_funding("SOL/USDT:USDT", [56]), _candles("ADA/USDT", [55])],
            {"candles": {("exchange", "ADA/USDT", "1h")}},
        ),
    ]
    config = MonitorConfig(reread_every_runs=100)  # no periodic full read: the held path only
    with Monitor.open(settings, config=config) as monitor:
        for k, (batches, expected_reads) in enumerate([([], {}), *steps]):
            if batches:
                with MarketStore(settings.paths.market_db) as store:
                    ingest_source(Batches(batches), store)
            start = T0 + timedelta(hours=k)
            since = T0 + timedelta(hours=44 + k)
            read.clear()
            with monitor._reader.attached() as market:
                log = monitor._ingest_log(market, None)
                for dataset in ("candles", "funding"):
                    # Act
                    held = monitor._series_timestamps(
                        market, dataset, start, since, watched, log, None
                    )
                    # Assert
                    fresh = real_read(market, dataset, start=start, closing_from=since)
                    pd.testing.assert_frame_equal(held, fresh)
            if k > 0:
                # each read once: a dataset read twice would hide in the mapping
                assert len(read) == len(expected_reads), f"step {k}: {read}"
                assert dict(read) == expected_reads, f"step {k}"
    assert len(fresh) > 0
