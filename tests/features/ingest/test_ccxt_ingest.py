"""ccxt → validation → market store, end to end against a loopback fake of Binance's REST API.

The scenario the issue names: more than 3 pages, a 429 then success, a 5xx then success, a
duplicated candle, a gap, an interruption and a resume. Exactly the expected rows are stored, once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from features.ingest.service import ingest_source
from features.ingest.sources.ccxt_source import CcxtSource
from features.ingest.store import MarketStore
from sextant.errors import SourceUnavailableError
from sextant.settings import load_settings
from tests.fakes.binance_server import FakeBinance, rate_limited, run_fake_binance, server_error

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
SERVER_TIME = pd.Timestamp("2024-01-14 03:30", tz="UTC")  # the 03:00 bar is still open
HOUR = pd.Timedelta(hours=1)
KLINES = "/api/v3/klines"


@pytest.fixture(scope="module")
def sol(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_feather(shared_data / "roshan7869_algotrading/binance/SOL_USDT-1h.feather")
    return frame[(frame["date"] >= T0) & (frame["date"] < T0 + pd.Timedelta(days=15))].reset_index(
        drop=True
    )


@pytest.fixture
def fake(sol: pd.DataFrame) -> Iterator[FakeBinance]:
    with run_fake_binance(
        FakeBinance(server_time=SERVER_TIME, candles={"SOLUSDT": sol})
    ) as running:
        yield running


def source(
    fake: FakeBinance, sleeps: list[float], *, since: pd.Timestamp | None = T0
) -> CcxtSource:
    settings = load_settings(ccxt_page_limit=100, ccxt_max_tries=3, ccxt_backoff_s=0.5)
    return CcxtSource(
        "binance",
        ["SOL/USDT"],
        "1h",
        since=None if since is None else since.to_pydatetime(),
        api_url=fake.url,
        settings=settings,
        sleep=sleeps.append,
    )


def test_faults_duplicates_gaps_and_a_resume_store_each_closed_candle_once(
    fake: FakeBinance, sol: pd.DataFrame, tmp_path: Path
) -> None:
    # Arrange: a duplicated bar, a two-bar gap, a 429 and a 503 that recover, then page 3 failing for good
    duplicate, gap = T0 + 50 * HOUR, {T0 + 150 * HOUR, T0 + 151 * HOUR}
    fake.duplicates, fake.gaps = {duplicate}, gap
    fake.fail(KLINES, rate_limited(2), on=1)
    fake.fail(KLINES, server_error(503), on=3)
    fake.fail(KLINES, server_error(502), on=5, times=None)
    sleeps: list[float] = []

    with MarketStore(tmp_path / "market.duckdb") as store:
        # Act 1: the run is interrupted after two stored pages
        with pytest.raises(SourceUnavailableError, match="SOL/USDT"):
            ingest_source(source(fake, sleeps), store)
        stored_after_interruption = len(store.candles("SOL/USDT", "1h"))

        # Act 2: the exchange recovers; a run without --since resumes from the store
        fake.clear_faults()
        resumed = ingest_source(source(fake, sleeps, since=None), store)
        # Act 3: the same ingest again adds nothing
        snapshot = store.table_snapshot()
        again = ingest_source(source(fake, sleeps, since=None), store)

        stored = store.candles("SOL/USDT", "1h", source="binance")
        assert store.table_snapshot() == snapshot

    # Assert: exactly the closed candles minus the gap, once each, with the exchange's values
    expected = sol[(sol["date"] + HOUR <= SERVER_TIME) & ~sol["date"].isin(gap)].reset_index(
        drop=True
    )
    assert (
        stored_after_interruption == 199
    )  # pages 1 and 2 (100 bars, one of them missing) were kept
    assert stored["event_ts"].tolist() == expected["date"].tolist()
    assert stored["event_ts"].is_unique
    pd.testing.assert_frame_equal(
        stored[["open", "high", "low", "close", "volume"]].reset_index(drop=True),
        expected[["open", "high", "low", "close", "volume"]],
    )
    assert sleeps[0] >= 2  # Retry-After honoured
    assert resumed[0].rows_added == len(expected) - 199
    assert (resumed[0].gaps, resumed[0].missing_bars) == (
        0,
        0,
    )  # the gap lies in the first run's span
    assert sum(r.rows_added for r in again) == 0
    first_page_requests = fake.requests_to(KLINES)
    assert len(first_page_requests) >= 4 + 3  # >3 pages in the first run, retries included


def test_cli_ingests_exactly_the_closed_candles_of_a_binance_speaking_server(
    fake: FakeBinance, sol: pd.DataFrame, tmp_path: Path
) -> None:
    env = {**os.environ, "SEXTANT_HOME": str(tmp_path / "home"), "SEXTANT_CCXT_PAGE_LIMIT": "100"}
    args = [
        sys.executable,
        "-m",
        "sextant.cli",
        "ingest",
        "--source",
        "ccxt",
        "--exchange",
        "binance",
        "--api-url",
        fake.url,
        "--symbol",
        "SOL/USDT",
        "--timeframe",
        "1h",
        "--since",
        "2024-01-01",
        "--json",
    ]

    first = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)
    fake.server_time = SERVER_TIME + 3 * HOUR  # time passes: three more bars close
    second = subprocess.run(args, env=env, capture_output=True, text=True, timeout=300)

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    (r1,) = json.loads(first.stdout)["results"]
    (r2,) = json.loads(second.stdout)["results"]
    closed = sol[sol["date"] + HOUR <= SERVER_TIME]
    assert r1["rows_added"] == len(closed) == 315
    assert r1["last_ts"] == closed["date"].iloc[-1].isoformat()
    assert r2["rows_added"] == 3
    assert r2["first_ts"] == (closed["date"].iloc[-1] + HOUR).isoformat()
