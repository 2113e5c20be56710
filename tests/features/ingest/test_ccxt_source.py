"""CcxtSource against the real ccxt binance client, pointed at a loopback fake of Binance's REST API."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest

from features.ingest.batch import COLUMNS, NO_SYMBOL, Batch, Dataset
from features.ingest.sources.ccxt_source import CcxtSource, override_api_host
from sextant.errors import ConfigError, SourceRequestError, SourceUnavailableError
from sextant.settings import Settings, load_settings
from tests.fakes.binance_server import (
    FakeBinance,
    internal_error,
    rate_limited,
    run_fake_binance,
    server_error,
)

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
SERVER_TIME = pd.Timestamp("2024-01-14 03:30", tz="UTC")  # in the middle of the 03:00 bar
HOUR = pd.Timedelta(hours=1)
KLINES = "/api/v3/klines"
FUNDING = "/fapi/v1/fundingRate"


class DictCursor:
    """What a store would answer: the last stored event_ts per (dataset, source, symbol, timeframe)."""

    def __init__(self) -> None:
        self.last: dict[tuple[str, str, str, str], datetime] = {}

    def last_event_ts(
        self, dataset: Dataset, source: str, symbol: str = NO_SYMBOL, timeframe: str = NO_SYMBOL
    ) -> datetime | None:
        return self.last.get((dataset.value, source, symbol, timeframe))

    def store(self, batch: Batch) -> None:
        key = (batch.dataset.value, batch.source, batch.symbol, batch.timeframe)
        newest = batch.frame["event_ts"].max().to_pydatetime()
        self.last[key] = max(newest, self.last.get(key, newest))


@pytest.fixture(scope="module")
def sol_candles(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_feather(shared_data / "roshan7869_algotrading/binance/SOL_USDT-1h.feather")
    return frame[(frame["date"] >= T0) & (frame["date"] < T0 + pd.Timedelta(days=15))].reset_index(
        drop=True
    )


@pytest.fixture(scope="module")
def btc_funding(shared_data: Path) -> pd.DataFrame:
    frame = pd.read_feather(
        shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-funding_rate.feather"
    )
    return frame[
        (frame["date"] >= T0) & (frame["date"] < pd.Timestamp("2024-03-05", tz="UTC"))
    ].reset_index(drop=True)


@pytest.fixture
def fake(sol_candles: pd.DataFrame, btc_funding: pd.DataFrame) -> Iterator[FakeBinance]:
    state = FakeBinance(
        server_time=SERVER_TIME, candles={"SOLUSDT": sol_candles}, funding={"BTCUSDT": btc_funding}
    )
    with run_fake_binance(state) as running:
        yield running


@pytest.fixture
def settings() -> Settings:
    return load_settings(
        ccxt_page_limit=100,
        ccxt_max_tries=3,
        ccxt_backoff_s=0.5,
        ccxt_backoff_max_s=60.0,
        ccxt_api_url=None,
    )


def sol_source(
    fake: FakeBinance, settings: Settings, sleeps: list[float] | None = None, **options: object
) -> CcxtSource:
    sleep = sleeps.append if sleeps is not None else _no_sleep
    kwargs: dict[str, object] = {
        "since": T0.to_pydatetime(),
        "api_url": fake.url,
        "settings": settings,
        "sleep": sleep,
    }
    kwargs.update(options)
    symbols = kwargs.pop("symbols", ["SOL/USDT"])
    return CcxtSource("binance", symbols, "1h", **kwargs)  # type: ignore[arg-type]


def _no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected retry sleep of {seconds} s")


def closed_candles(raw: pd.DataFrame, server_time: pd.Timestamp = SERVER_TIME) -> pd.DataFrame:
    """The candles a correct run yields: open from T0, closed by the server time, in our schema."""
    rows = raw[(raw["date"] >= T0) & (raw["date"] + HOUR <= server_time)]
    frame = rows.rename(columns={"date": "event_ts"}).assign(symbol="SOL/USDT", timeframe="1h")
    return frame.loc[:, list(COLUMNS[Dataset.CANDLES])].reset_index(drop=True)


def concat(batches: list[Batch]) -> pd.DataFrame:
    return pd.concat([b.frame for b in batches], ignore_index=True)


def start_times(fake: FakeBinance, path: str = KLINES) -> list[pd.Timestamp]:
    queries = [parse_qs(urlsplit(r).query) for r in fake.requests_to(path)]
    return [pd.Timestamp(int(q["startTime"][0]), unit="ms", tz="UTC") for q in queries]


def test_candles_come_page_by_page_and_equal_the_closed_candles(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    batches = list(sol_source(fake, settings).batches(DictCursor()))

    expected = closed_candles(sol_candles)
    assert [len(b.frame) for b in batches] == [100, 100, 100, 15]
    pd.testing.assert_frame_equal(concat(batches), expected)
    assert start_times(fake) == [T0, T0 + 100 * HOUR, T0 + 200 * HOUR, T0 + 300 * HOUR]
    first = batches[0]
    assert (first.dataset, first.source, first.symbol, first.timeframe) == (
        Dataset.CANDLES,
        "binance",
        "SOL/USDT",
        "1h",
    )
    assert first.origin == f"{fake.url}{KLINES}"
    assert first.now == SERVER_TIME.to_pydatetime()
    assert str(first.frame["event_ts"].dtype) == "datetime64[ns, UTC]"
    assert first.frame["close"].dtype == np.float64


def test_only_the_spot_market_list_is_loaded_for_spot_symbols(
    fake: FakeBinance, settings: Settings
) -> None:
    list(sol_source(fake, settings).batches(DictCursor()))

    assert [r for r in fake.requests if "exchangeInfo" in r] == ["/api/v3/exchangeInfo"]


@pytest.mark.parametrize(
    ("server_time", "last_yielded"),
    [
        (SERVER_TIME, "2024-01-14 02:00"),  # 03:00 bar open for 30 more minutes
        (pd.Timestamp("2024-01-14 03:00", tz="UTC"), "2024-01-14 02:00"),  # 03:00 bar just opened
        (
            pd.Timestamp("2024-01-14 04:00", tz="UTC"),
            "2024-01-14 03:00",
        ),  # 03:00 bar closed exactly now
    ],
)
def test_the_still_open_candle_is_never_yielded(
    fake: FakeBinance, settings: Settings, server_time: pd.Timestamp, last_yielded: str
) -> None:
    fake.server_time = server_time  # years before the local clock: only the server's clock can tell

    frame = concat(list(sol_source(fake, settings).batches(DictCursor())))

    assert frame["event_ts"].max() == pd.Timestamp(last_yielded, tz="UTC")
    assert (frame["event_ts"] + HOUR <= server_time).all()


def test_an_interrupted_run_resumes_from_the_cursor(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    fake.fail(KLINES, server_error(503), on=3, times=None)  # page 3 fails beyond the retry budget
    cursor, sleeps, first_run = DictCursor(), list[float](), list[Batch]()

    with pytest.raises(
        SourceUnavailableError,
        match=r"binance fetch_ohlcv 1h since 2024-01-09T08:00.* SOL/USDT failed after 3 tries",
    ):
        for batch in sol_source(fake, settings, sleeps).batches(cursor):
            first_run.append(batch)
            cursor.store(batch)
    fake.clear_faults()
    resumed_from = len(fake.requests_to(KLINES))
    second_run = list(sol_source(fake, settings, since=None).batches(cursor))

    assert [len(b.frame) for b in first_run] == [100, 100]
    assert sleeps == [0.5, 1.0]
    assert start_times(fake)[resumed_from] == T0 + 200 * HOUR
    pd.testing.assert_frame_equal(concat(first_run + second_run), closed_candles(sol_candles))


def test_retry_after_is_honoured_on_429(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    fake.fail(KLINES, rate_limited(7), on=2)
    sleeps: list[float] = []

    frame = concat(list(sol_source(fake, settings, sleeps).batches(DictCursor())))

    assert sleeps == [7.0]  # max(backoff 0.5 s, Retry-After 7 s)
    assert (
        start_times(fake)[1] == start_times(fake)[2] == T0 + 100 * HOUR
    )  # the same page asked again
    pd.testing.assert_frame_equal(frame, closed_candles(sol_candles))


@pytest.mark.parametrize(
    "fault", [server_error(500), server_error(503), internal_error()], ids=["500", "503", "-1001"]
)
def test_a_transient_error_is_retried_with_backoff(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame, fault: object
) -> None:
    fake.fail(KLINES, fault, on=1)  # type: ignore[arg-type]
    sleeps: list[float] = []

    frame = concat(list(sol_source(fake, settings, sleeps).batches(DictCursor())))

    assert sleeps == [0.5]
    assert len(fake.requests_to(KLINES)) == 5
    pd.testing.assert_frame_equal(frame, closed_candles(sol_candles))


def test_backoff_doubles_up_to_its_cap_then_gives_up(fake: FakeBinance) -> None:
    settings = load_settings(
        ccxt_page_limit=100,
        ccxt_max_tries=5,
        ccxt_backoff_s=0.5,
        ccxt_backoff_max_s=1.5,
        ccxt_api_url=None,
    )
    fake.fail("/api/v3/time", server_error(502), times=None)
    sleeps: list[float] = []

    with pytest.raises(
        SourceUnavailableError,
        match=r"binance fetch_time .*failed after 5 tries; last failure: ExchangeNotAvailable",
    ):
        list(sol_source(fake, settings, sleeps).batches(DictCursor()))

    assert sleeps == [0.5, 1.0, 1.5, 1.5]
    assert fake.requests_to(KLINES) == []


def test_a_retry_after_beyond_the_backoff_cap_fails_instead_of_hanging(
    fake: FakeBinance, settings: Settings
) -> None:
    fake.fail(KLINES, rate_limited(3600), on=1)
    sleeps: list[float] = []

    with pytest.raises(SourceUnavailableError, match=r"asks to wait 3600 s \(Retry-After\)"):
        list(sol_source(fake, settings, sleeps).batches(DictCursor()))

    assert sleeps == []


@pytest.mark.parametrize(
    ("symbol", "klines_requests"),
    [
        ("BTC/USDT", 1),
        ("DOGE/USDT", 0),
    ],  # listed but refused by the server (-1121); not listed at all
)
def test_a_bad_symbol_fails_at_once_without_retry(
    fake: FakeBinance, settings: Settings, symbol: str, klines_requests: int
) -> None:
    sleeps: list[float] = []

    with pytest.raises(
        SourceRequestError,
        match=rf"binance refused fetch_ohlcv .* for {symbol} \(is the symbol listed\?.*BadSymbol",
    ):
        list(sol_source(fake, settings, sleeps, symbols=[symbol]).batches(DictCursor()))

    assert sleeps == []
    assert len(fake.requests_to(KLINES)) == klines_requests


def test_a_refused_request_fails_at_once_without_retry(
    fake: FakeBinance, settings: Settings
) -> None:
    fake.timeframe = "4h"  # the fake now answers 1h klines with -1120 "Invalid interval."
    sleeps: list[float] = []

    with pytest.raises(
        SourceRequestError,
        match=r"binance refused fetch_ohlcv 1h .* for SOL/USDT: BadRequest: .*Invalid interval",
    ):
        list(sol_source(fake, settings, sleeps).batches(DictCursor()))

    assert sleeps == []
    assert len(fake.requests_to(KLINES)) == 1


def test_duplicates_and_gaps_come_through_as_delivered(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    duplicate, gap = T0 + 50 * HOUR, [T0 + 150 * HOUR, T0 + 151 * HOUR]
    fake.duplicates = {duplicate}
    fake.gaps = set(gap)

    frame = concat(list(sol_source(fake, settings).batches(DictCursor())))

    expected = closed_candles(sol_candles)
    expected = pd.concat([expected, expected[expected["event_ts"] == duplicate]]).sort_values(
        "event_ts", kind="stable"
    )
    expected = expected[~expected["event_ts"].isin(gap)].reset_index(drop=True)
    pd.testing.assert_frame_equal(frame, expected)
    assert (frame["event_ts"] == duplicate).sum() == 2


def test_a_server_repeating_the_previous_bar_does_not_duplicate_rows(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    fake.overlap_pages = True  # each page also carries the bar before startTime (already yielded)

    frame = concat(list(sol_source(fake, settings).batches(DictCursor())))

    pd.testing.assert_frame_equal(frame, closed_candles(sol_candles))


def test_a_later_run_asks_only_for_bars_after_the_stored_one(
    fake: FakeBinance, settings: Settings, sol_candles: pd.DataFrame
) -> None:
    cursor = DictCursor()
    stored = pd.Timestamp("2024-01-13 20:00", tz="UTC")
    cursor.last[("candles", "binance", "SOL/USDT", "1h")] = stored.to_pydatetime()

    frame = concat(list(sol_source(fake, settings, since=None).batches(cursor)))

    assert start_times(fake) == [stored + HOUR]
    pd.testing.assert_frame_equal(
        frame, closed_candles(sol_candles).query("event_ts > @stored").reset_index(drop=True)
    )


def test_nothing_stored_and_no_since_asks_for_since_before_any_request(
    fake: FakeBinance, settings: Settings
) -> None:
    source = sol_source(fake, settings, since=None)

    with pytest.raises(
        ConfigError, match=r"nothing stored yet for binance SOL/USDT candles.*--since"
    ):
        list(source.batches(DictCursor()))

    assert fake.requests == []


def test_progress_reports_each_page(fake: FakeBinance, settings: Settings) -> None:
    reports: list[tuple[str, int, int]] = []

    list(sol_source(fake, settings, progress=lambda *r: reports.append(r)).batches(DictCursor()))

    total = int((SERVER_TIME - T0) / pd.Timedelta(milliseconds=1))
    hour_ms = 3_600_000
    assert reports == [("binance SOL/USDT 1h", n * hour_ms, total) for n in (100, 200, 300, 315)]


def test_funding_history_is_paginated_and_incremental(
    fake: FakeBinance, settings: Settings, btc_funding: pd.DataFrame
) -> None:
    fake.server_time = pd.Timestamp("2024-03-01 05:00", tz="UTC")
    perp = "BTC/USDT:USDT"
    cursor = DictCursor()

    first = list(
        sol_source(fake, settings, symbols=[perp], dataset=Dataset.FUNDING).batches(cursor)
    )
    for batch in first[:1]:
        cursor.store(batch)
    again = list(
        sol_source(fake, settings, symbols=[perp], dataset=Dataset.FUNDING).batches(cursor)
    )

    settled = btc_funding[btc_funding["date"] <= fake.server_time]
    expected = pd.DataFrame(
        {
            "symbol": perp,
            "event_ts": settled["date"],
            "available_at": settled["date"],
            "funding_rate": settled["open"].round(8),
        }
    ).reset_index(drop=True)
    assert [len(b.frame) for b in first] == [100, 81]
    assert (first[0].dataset, first[0].source, first[0].symbol, first[0].origin) == (
        Dataset.FUNDING,
        "binance",
        perp,
        f"{fake.url}{FUNDING}",
    )
    pd.testing.assert_frame_equal(concat(first), expected)
    pd.testing.assert_frame_equal(concat(again), expected.iloc[100:].reset_index(drop=True))
    last_stored = expected["event_ts"].iloc[99]
    assert start_times(fake, FUNDING)[3] == last_stored + pd.Timedelta(milliseconds=1)
    assert len(fake.requests_to(FUNDING)) == 3 + 2  # each run ends on an empty page
    assert [r for r in fake.requests if "exchangeInfo" in r] == ["/fapi/v1/exchangeInfo"] * 2


def test_candles_and_funding_together(
    fake: FakeBinance, settings: Settings, shared_data: Path
) -> None:
    perp_frame = pd.read_feather(
        shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-futures.feather"
    )
    fake.perp_candles = {
        "BTCUSDT": perp_frame[perp_frame["date"].between(T0, SERVER_TIME)].reset_index(drop=True)
    }
    fake.server_time = T0 + pd.Timedelta(hours=150, minutes=10)
    source = sol_source(
        fake,
        settings,
        symbols=["SOL/USDT", "BTC/USDT:USDT"],
        dataset=[Dataset.CANDLES, Dataset.FUNDING],
    )

    batches = list(source.batches(DictCursor()))

    assert [(b.dataset, b.symbol, len(b.frame)) for b in batches] == [
        (Dataset.CANDLES, "SOL/USDT", 100),
        (Dataset.CANDLES, "SOL/USDT", 50),
        (Dataset.CANDLES, "BTC/USDT:USDT", 100),
        (Dataset.CANDLES, "BTC/USDT:USDT", 50),
        (
            Dataset.FUNDING,
            "BTC/USDT:USDT",
            19,
        ),  # 00:00, 08:00, 16:00 for 6 days, then 2024-01-07 00:00
    ]
    assert batches[2].origin == f"{fake.url}/fapi/v1/klines"
    assert sorted(r for r in fake.requests if "exchangeInfo" in r) == [
        "/api/v3/exchangeInfo",
        "/fapi/v1/exchangeInfo",
    ]
    assert all("SOLUSDT" not in r for r in fake.requests_to(FUNDING))


def test_override_api_host_swaps_scheme_and_host_of_every_endpoint() -> None:
    urls = {
        "public": "https://api.binance.com/api/v3",
        "fapiPublic": "https://fapi.binance.com/fapi/v1",
        "nested": {"dapiPublic": "https://dapi.binance.com/dapi/v1?x=1"},
        "note": "not a url",
    }

    swapped = override_api_host(urls, "http://127.0.0.1:8765")
    prefixed = override_api_host(urls, "https://proxy.example:8443/binance/")

    assert swapped == {
        "public": "http://127.0.0.1:8765/api/v3",
        "fapiPublic": "http://127.0.0.1:8765/fapi/v1",
        "nested": {"dapiPublic": "http://127.0.0.1:8765/dapi/v1?x=1"},
        "note": "not a url",
    }
    assert prefixed["public"] == "https://proxy.example:8443/binance/api/v3"
    assert urls["public"] == "https://api.binance.com/api/v3"  # the input is left alone


@pytest.mark.parametrize("bad", ["127.0.0.1:8765", "ftp://host", "http://"])
def test_override_api_host_rejects_a_url_without_scheme_or_host(bad: str) -> None:
    with pytest.raises(ConfigError, match="api_url"):
        override_api_host({"public": "https://api.binance.com/api/v3"}, bad)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exchange_id": "nosuchexchange"}, "unknown ccxt exchange id 'nosuchexchange'"),
        ({"since": datetime(2024, 1, 1)}, "has no time zone"),
        ({"timeframe": "7h"}, "has no timeframe '7h'"),
        ({"dataset": Dataset.FUNDING}, "funding history needs perpetual symbols"),
        ({"dataset": Dataset.NEWS}, "ccxt delivers"),
        ({"symbols": []}, "no symbols given"),
    ],
)
def test_bad_options_are_config_errors(
    settings: Settings, options: dict[str, object], message: str
) -> None:
    arguments: dict[str, object] = {
        "exchange_id": "binance",
        "symbols": ["SOL/USDT"],
        "timeframe": "1h",
        "settings": settings,
    }
    arguments.update(options)

    with pytest.raises(ConfigError, match=message):
        CcxtSource(**arguments)  # type: ignore[arg-type]
