"""Fear & Greed over HTTP (against a loopback alternative.me) and from the real fng.csv."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from features.ingest.batch import COLUMNS, NO_SYMBOL, Batch, Dataset
from features.ingest.sources.fear_greed import FearGreedSource, read_fear_greed_csv
from sextant.errors import DataValidationError, SourceRequestError, SourceUnavailableError
from tests.fakes.alt_data_server import FNG_PATH, AltDataServer, load_fng_rows, serve_alt_data

LAG = timedelta(hours=1)


class StoredUpTo:
    """A cursor over a store whose last Fear & Greed day is ``last`` (None: nothing stored)."""

    def __init__(self, last: datetime | None) -> None:
        self.last = last
        self.asked: list[tuple[Dataset, str]] = []

    def last_event_ts(
        self, dataset: Dataset, source: str, symbol: str = NO_SYMBOL, timeframe: str = NO_SYMBOL
    ) -> datetime | None:
        self.asked.append((dataset, source))
        return self.last


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected retry sleep of {seconds} s")


@pytest.fixture(scope="module")
def rows(shared_data: Path) -> pd.DataFrame:
    """Two months of real rows around the upstream gap of 2024-10-26."""
    everything = load_fng_rows(shared_data / "fear_greed" / "fng.csv")
    return everything[
        (everything["date"] >= "2024-10-01") & (everything["date"] <= "2024-11-30")
    ].reset_index(drop=True)


@pytest.fixture
def server(rows: pd.DataFrame) -> Iterator[AltDataServer]:
    with serve_alt_data(rows) as running:
        yield running


def fetch(source: FearGreedSource, cursor: StoredUpTo | None = None) -> Batch:
    batches = list(source.batches(cursor or StoredUpTo(None)))
    assert len(batches) == 1
    return batches[0]


def test_full_history_equals_the_served_csv_rows(server: AltDataServer, rows: pd.DataFrame) -> None:
    url = server.url(FNG_PATH)
    source = FearGreedSource(url, publication_lag=LAG, sleep=no_sleep)

    batch = fetch(source)

    assert (batch.dataset, batch.source, batch.origin) == (
        Dataset.FEAR_GREED,
        "alternative.me",
        url,
    )
    frame = batch.frame
    assert tuple(frame.columns) == COLUMNS[Dataset.FEAR_GREED]
    assert str(frame["event_ts"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["available_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["value"].dtype == "float64"
    assert frame["classification"].dtype == object
    assert len(frame) == len(rows) == 60  # 61 days less the missing 2024-10-26
    expected_ts = pd.to_datetime(rows["timestamp"], unit="s", utc=True)
    assert frame["event_ts"].tolist() == expected_ts.tolist()  # oldest first, like the CSV
    assert frame["event_ts"].iloc[0] == pd.Timestamp("2024-10-01", tz="UTC")
    assert frame["value"].tolist() == rows["value"].tolist()
    assert frame["classification"].tolist() == rows["classification"].tolist()
    assert ((frame["available_at"] - frame["event_ts"]) == pd.Timedelta(hours=1)).all()
    assert [r.query for r in server.requests] == [{"limit": "0", "format": "json"}]


def test_with_a_stored_day_only_the_days_since_then_are_requested(
    server: AltDataServer, rows: pd.DataFrame
) -> None:
    cursor = StoredUpTo(datetime(2024, 11, 25, tzinfo=UTC))
    source = FearGreedSource(
        server.url(FNG_PATH),
        publication_lag=LAG,
        sleep=no_sleep,
        clock=lambda: datetime(2024, 11, 30, 12, 0, tzinfo=UTC),
    )

    frame = fetch(source, cursor).frame

    assert cursor.asked == [(Dataset.FEAR_GREED, "alternative.me")]
    assert (
        server.requests[0].query["limit"] == "7"
    )  # 5 days since 11-25, plus today and one overlap
    assert frame["event_ts"].tolist() == list(
        pd.date_range("2024-11-24", "2024-11-30", freq="D", tz="UTC")
    )
    assert frame["value"].tolist() == rows["value"].iloc[-7:].tolist()


def test_503_then_success_is_retried_with_exponential_backoff(
    server: AltDataServer, rows: pd.DataFrame
) -> None:
    server.fail_next(503, times=2)
    slept: list[float] = []
    source = FearGreedSource(server.url(FNG_PATH), max_tries=3, backoff_s=0.5, sleep=slept.append)

    frame = fetch(source).frame

    assert slept == [0.5, 1.0]
    assert [r.status for r in server.requests] == [503, 503, 200]
    assert len(frame) == len(rows)


def test_429_waits_at_least_what_retry_after_asks(server: AltDataServer) -> None:
    server.fail_next(429, retry_after="7")
    slept: list[float] = []
    source = FearGreedSource(
        server.url(FNG_PATH), backoff_s=0.5, backoff_max_s=60, sleep=slept.append
    )

    fetch(source)

    assert slept == [7.0]


def test_persistent_503_gives_up_after_max_tries_naming_the_url(server: AltDataServer) -> None:
    server.fail_next(503, times=10)
    slept: list[float] = []
    url = server.url(FNG_PATH)
    source = FearGreedSource(url, max_tries=4, backoff_s=1, backoff_max_s=3, sleep=slept.append)

    with pytest.raises(SourceUnavailableError, match="HTTP 503") as caught:
        fetch(source)

    assert url in str(caught.value)
    assert len(server.requests) == 4
    assert slept == [1, 2, 3]  # doubling, capped at backoff_max_s


def test_connection_refused_is_transient_and_ends_unavailable() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/fng/"
    slept: list[float] = []
    source = FearGreedSource(url, max_tries=2, sleep=slept.append)

    with pytest.raises(SourceUnavailableError, match="ConnectError") as caught:
        fetch(source)

    assert f"127.0.0.1:{port}/fng/" in str(caught.value)
    assert slept == [1.0]


def test_a_timeout_is_retried_then_unavailable(server: AltDataServer) -> None:
    server.stall_next(1.0, times=2)
    source = FearGreedSource(server.url(FNG_PATH), timeout_s=0.1, max_tries=2, sleep=lambda s: None)

    with pytest.raises(SourceUnavailableError, match="Timeout"):
        fetch(source)


def test_garbage_json_is_a_validation_error_naming_the_url(server: AltDataServer) -> None:
    server.set_route("/broken/", b"<html>maintenance</html>", content_type="text/html")
    url = server.url("/broken/")

    with pytest.raises(DataValidationError, match="not JSON") as caught:
        fetch(FearGreedSource(url, sleep=no_sleep))

    assert caught.value.origin is not None and caught.value.origin.startswith(url)
    assert url in str(caught.value)


@pytest.mark.parametrize(
    ("payload", "problem"),
    [
        ({"name": "Fear and Greed Index", "metadata": {"error": None}}, 'missing "data"'),
        (
            {"name": "Fear and Greed Index", "data": [], "metadata": {"error": "Invalid limit"}},
            "Invalid limit",
        ),
        ({"data": ["40", "41"], "metadata": {"error": None}}, "list of objects"),
        ({"data": [{"val": "40", "ts": "1551157200"}], "metadata": {"error": None}}, "lack"),
        ([{"value": "40"}], "expected a JSON object"),
        (
            {"data": [{"value": "40", "value_classification": "Fear", "timestamp": "yesterday"}]},
            "no readable timestamps",
        ),
    ],
    ids=[
        "no-data",
        "metadata-error",
        "data-not-objects",
        "fields-missing",
        "top-level-list",
        "bad-timestamps",
    ],
)
def test_a_payload_not_in_the_api_format_is_rejected(
    server: AltDataServer, payload: object, problem: str
) -> None:
    server.set_route("/odd/", json.dumps(payload).encode())

    with pytest.raises(DataValidationError, match=problem) as caught:
        fetch(FearGreedSource(server.url("/odd/"), sleep=no_sleep))

    assert server.url("/odd/") in str(caught.value)


def test_a_404_is_refused_at_once_not_retried(server: AltDataServer) -> None:
    url = server.url("/no-such-api/")

    with pytest.raises(SourceRequestError, match="HTTP 404") as caught:
        fetch(FearGreedSource(url, sleep=no_sleep))

    assert url in str(caught.value)
    assert len(server.requests) == 1


def test_the_real_csv_reads_whole(shared_data: Path) -> None:
    path = shared_data / "fear_greed" / "fng.csv"
    raw = pd.read_csv(path)

    frame = read_fear_greed_csv(path, timedelta(hours=2))

    assert tuple(frame.columns) == COLUMNS[Dataset.FEAR_GREED]
    assert len(frame) == 3_121
    assert frame["event_ts"].iloc[0] == pd.Timestamp("2018-02-01", tz="UTC")
    assert frame["event_ts"].iloc[-1] == pd.Timestamp("2026-08-22", tz="UTC")
    assert frame["event_ts"].is_monotonic_increasing
    assert (frame["event_ts"].dt.strftime("%Y-%m-%d") == raw["date"]).all()
    assert frame["value"].tolist() == raw["value"].tolist()
    assert set(frame["classification"]) == {
        "Extreme Fear",
        "Fear",
        "Neutral",
        "Greed",
        "Extreme Greed",
    }
    assert ((frame["available_at"] - frame["event_ts"]) == pd.Timedelta(hours=2)).all()
    assert pd.Timestamp("2024-10-26", tz="UTC") not in set(
        frame["event_ts"]
    )  # the upstream gap stays a gap


def test_a_csv_with_only_dates_is_read_as_utc_days(tmp_path: Path) -> None:
    path = tmp_path / "fng.csv"
    path.write_text(
        "date,value,classification\n2024-05-01,61,Greed\n2024-05-02,47.0,Neutral\n",
        encoding="utf-8",
    )

    frame = read_fear_greed_csv(path, LAG)

    assert frame["event_ts"].tolist() == [
        pd.Timestamp("2024-05-01", tz="UTC"),
        pd.Timestamp("2024-05-02", tz="UTC"),
    ]
    assert frame["value"].tolist() == [61.0, 47.0]


def test_a_csv_without_the_value_column_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "fng.csv"
    path.write_text(
        "date,timestamp,classification\n2024-05-01,1714521600,Greed\n", encoding="utf-8"
    )

    with pytest.raises(DataValidationError, match="value") as caught:
        read_fear_greed_csv(path, LAG)

    assert str(path) in str(caught.value)
    assert caught.value.field == "value"
