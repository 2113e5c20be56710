"""News: RSS and Atom against a loopback feed server, CSV/JSON archives, and the VADER scorer."""

from __future__ import annotations

import hashlib
import json
import re
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from importlib.metadata import version
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.ingest import sentiment
from features.ingest.batch import COLUMNS, Dataset
from features.ingest.sentiment import SENTIMENT_MODEL, headline_sentiment
from features.ingest.sources.news import RssNewsSource, news_id, read_news_file
from sextant.errors import DataValidationError, SourceUnavailableError
from tests.fakes.alt_data_server import (
    ATOM_PATH,
    RSS_PATH,
    AltDataServer,
    FeedItem,
    load_fng_rows,
    serve_alt_data,
)

FETCHED_AT = datetime(2024, 5, 18, 12, 0, tzinfo=UTC)
PLUS_TWO = timezone(timedelta(hours=2))
MINUS_FIVE = timezone(timedelta(hours=-5))

GOOD = "Bitcoin surges to record high as investors celebrate strong gains"
BAD = "Exchange hacked, investors lose millions in devastating crash"
UNDATED = "Weekly market wrap: what moved crypto"
EMBARGOED = "Ether ETF decision due next week"
ITEMS = [
    FeedItem(
        GOOD,
        datetime(2024, 5, 17, 10, 0, tzinfo=PLUS_TWO),
        "BTC tops its old high.",
        "https://news.test/good",
    ),
    FeedItem(
        BAD,
        datetime(2024, 5, 16, 18, 30, tzinfo=MINUS_FIVE),
        "Funds drained overnight.",
        "https://news.test/bad",
    ),
    FeedItem(UNDATED, None, "", "https://news.test/wrap"),
    FeedItem(
        EMBARGOED,
        datetime(2024, 5, 19, 9, 0, tzinfo=UTC),
        "Dated after we fetched it.",
        "https://news.test/etf",
    ),
    # the same headline again, later and spaced differently: one row, the earliest
    FeedItem(
        "  bitcoin SURGES to record high as investors   celebrate strong gains",
        datetime(2024, 5, 18, 9, 0, tzinfo=UTC),
    ),
]
UALH = {  # file: rows, first, last (SOURCES.md)
    "2024-04-05_30d_news.csv": (217, "2024-03-18 08:10:19", "2024-05-03 16:58:35"),
    "2024-05-18_30d_news.csv": (207, "2024-04-17 08:43:15", "2024-05-17 15:18:12"),
    "2024-04-05_24h_news.csv": (234, "2024-03-05 17:04:11", "2024-05-05 14:28:00"),
    "2024-05-18_24h_news_with_sentiment.csv": (277, "2024-03-11 15:01:48", "2024-05-18 13:57:37"),
}


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def assert_news_schema(frame: pd.DataFrame) -> None:
    assert tuple(frame.columns) == COLUMNS[Dataset.NEWS]
    assert str(frame["event_ts"].dtype) == "datetime64[ns, UTC]"
    assert str(frame["available_at"].dtype) == "datetime64[ns, UTC]"
    assert frame["sentiment"].dtype == "float64"
    for column in ("news_id", "headline", "description", "url"):
        assert frame[column].dtype == object, column


class NothingStored:
    def last_event_ts(
        self, dataset: Dataset, source: str, symbol: str = "*", timeframe: str = "*"
    ) -> datetime | None:
        return None


def no_sleep(seconds: float) -> None:
    raise AssertionError(f"unexpected retry sleep of {seconds} s")


@pytest.fixture
def server() -> Iterator[AltDataServer]:
    with serve_alt_data(load_fng_rows().head(3), ITEMS) as running:
        yield running


def rss(feeds: list[str], **options: object) -> RssNewsSource:
    return RssNewsSource(feeds, clock=lambda: FETCHED_AT, **options)  # type: ignore[arg-type]


# --- feeds -----------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [RSS_PATH, ATOM_PATH], ids=["rss2", "atom"])
def test_a_feed_becomes_one_scored_batch_in_utc(server: AltDataServer, path: str) -> None:
    url = server.url(path)

    batches = list(rss([url], sleep=no_sleep).batches(NothingStored()))

    assert len(batches) == 1
    batch = batches[0]
    assert (batch.dataset, batch.source, batch.origin, batch.now) == (
        Dataset.NEWS,
        "rss:127.0.0.1",
        url,
        FETCHED_AT,
    )
    frame = batch.frame
    assert_news_schema(frame)
    by_headline = frame.set_index("headline")
    assert list(frame["headline"]) == [
        BAD,
        GOOD,
        UNDATED,
        EMBARGOED,
    ]  # oldest first, the repeat folded in
    assert by_headline.loc[GOOD, "event_ts"] == utc("2024-05-17 08:00")  # +02:00 converted
    assert by_headline.loc[BAD, "event_ts"] == utc("2024-05-16 23:30")  # -05:00 converted
    assert by_headline.loc[UNDATED, "event_ts"] == FETCHED_AT  # no date: seen when fetched
    assert by_headline.loc[GOOD, "available_at"] == FETCHED_AT
    assert by_headline.loc[BAD, "available_at"] == FETCHED_AT
    assert by_headline.loc[EMBARGOED, "available_at"] == utc(
        "2024-05-19 09:00"
    )  # never before the event
    assert by_headline.loc[GOOD, "sentiment"] > 0.5
    assert by_headline.loc[BAD, "sentiment"] < -0.5
    assert by_headline.loc[GOOD, "url"] == "https://news.test/good"
    assert by_headline.loc[BAD, "description"] == "Funds drained overnight."
    assert by_headline.loc[GOOD, "news_id"] == news_id(GOOD)


def test_several_feeds_give_one_batch_each_in_order(server: AltDataServer) -> None:
    feeds = [server.url(RSS_PATH), server.url(ATOM_PATH)]

    batches = list(rss(feeds, sleep=no_sleep).batches(NothingStored()))

    assert [b.origin for b in batches] == feeds
    assert batches[0].frame["news_id"].tolist() == batches[1].frame["news_id"].tolist()


def test_a_503_on_a_feed_is_retried(server: AltDataServer) -> None:
    server.fail_next(503)
    slept: list[float] = []

    batches = list(
        rss([server.url(RSS_PATH)], backoff_s=0.25, sleep=slept.append).batches(NothingStored())
    )

    assert slept == [0.25]
    assert len(batches[0].frame) == 4


def test_a_feed_that_stays_down_is_unavailable_naming_it(server: AltDataServer) -> None:
    server.fail_next(503, times=3)
    url = server.url(RSS_PATH)

    with pytest.raises(SourceUnavailableError, match="HTTP 503") as caught:
        list(rss([url], max_tries=3, sleep=lambda s: None).batches(NothingStored()))

    assert url in str(caught.value)


def test_an_unparseable_feed_fails_after_the_good_feeds_were_yielded(server: AltDataServer) -> None:
    server.set_route(
        "/feeds/broken.xml", b"Service moved {see status page", content_type="application/rss+xml"
    )
    bad, good = server.url("/feeds/broken.xml"), server.url(ATOM_PATH)
    batches = rss([bad, good], sleep=no_sleep).batches(NothingStored())

    first = next(batches)
    with pytest.raises(DataValidationError, match="not an RSS or Atom feed") as caught:
        next(batches)

    assert first.origin == good
    assert bad in str(caught.value)


def test_an_html_page_is_not_a_feed(server: AltDataServer) -> None:
    server.set_route(
        "/home.html", b"<html><body><p>Welcome</p></body></html>", content_type="text/html"
    )
    url = server.url("/home.html")

    with pytest.raises(DataValidationError, match="not an RSS or Atom feed") as caught:
        list(rss([url], sleep=no_sleep).batches(NothingStored()))

    assert url in str(caught.value)


# --- files -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(UALH), ids=list(UALH))
def test_each_shared_news_file_imports(shared_data: Path, name: str) -> None:
    rows, first, last = UALH[name]

    frame = read_news_file(shared_data / "news_ualh" / name)

    assert_news_schema(frame)
    assert len(frame) == rows  # each file's headlines are distinct within it
    assert frame["event_ts"].iloc[0] == utc(first)  # naive strings read as UTC
    assert frame["event_ts"].iloc[-1] == utc(last)
    assert (frame["available_at"] == frame["event_ts"]).all()
    assert frame["headline"].notna().all() and frame["news_id"].str.fullmatch(r"[0-9a-f]{16}").all()
    assert frame["sentiment"].between(-1, 1).all()


def test_the_four_shared_files_hold_834_distinct_headlines(shared_data: Path) -> None:
    frames = [read_news_file(shared_data / "news_ualh" / name) for name in UALH]

    together = pd.concat(frames, ignore_index=True).drop_duplicates("news_id")

    assert len(together) == 834
    assert together["event_ts"].min() == utc("2024-03-05 17:04:11")
    assert together["event_ts"].max() == utc("2024-05-18 13:57:37")


def test_the_input_sentiment_column_is_ignored(shared_data: Path) -> None:
    path = shared_data / "news_ualh" / "2024-05-18_24h_news_with_sentiment.csv"
    theirs = pd.read_csv(path)["sentiment"]  # a 0..1 score from the source project's model

    ours = read_news_file(path)["sentiment"]

    assert theirs.min() >= 0
    assert (ours < 0).any()


def test_a_json_array_with_offsets_titles_and_a_lag(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    records = [
        {
            "published_at": "2024-05-04T21:18:07+02:00",
            "title": GOOD,
            "summary": "s",
            "link": "https://n.test/1",
        },
        {"published_at": "2024-05-04 08:00:00", "title": BAD},  # naive (UTC) next to an offset
    ]
    path.write_text(json.dumps(records), encoding="utf-8")

    frame = read_news_file(path, timedelta(minutes=5))

    assert_news_schema(frame)
    assert frame["headline"].tolist() == [BAD, GOOD]
    assert frame["event_ts"].tolist() == [utc("2024-05-04 08:00"), utc("2024-05-04 19:18:07")]
    assert (frame["available_at"] - frame["event_ts"] == pd.Timedelta(minutes=5)).all()
    assert frame["url"].tolist() == [None, "https://n.test/1"]
    assert frame["description"].tolist() == [None, "s"]
    assert frame["sentiment"].iloc[0] < 0 < frame["sentiment"].iloc[1]


def test_json_lines_with_epoch_timestamps(tmp_path: Path) -> None:
    path = tmp_path / "news.jsonl.json"
    lines = [
        {"timestamp": 1714850287, "headline": "bitcoin rises above $69,000"},
        {"timestamp": 1714809600, "headline": "ether slips"},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n", encoding="utf-8")

    frame = read_news_file(path)

    assert frame["event_ts"].tolist() == [utc("2024-05-04 08:00"), utc("2024-05-04 19:18:07")]
    assert frame["headline"].tolist() == ["ether slips", "bitcoin rises above $69,000"]


def test_a_headline_repeated_in_one_file_keeps_its_earliest_time(tmp_path: Path) -> None:
    path = tmp_path / "news.csv"
    path.write_text(
        "date,headline\n2024-05-04 10:00:00,Bitcoin  ETF inflows\n2024-05-03 09:00:00,bitcoin etf inflows\n2024-05-05 10:00:00,other\n",
        encoding="utf-8",
    )

    frame = read_news_file(path)

    assert frame["headline"].tolist() == ["bitcoin etf inflows", "other"]
    assert frame["event_ts"].iloc[0] == utc("2024-05-03 09:00")


def test_a_file_without_headlines_names_file_and_column(tmp_path: Path) -> None:
    path = tmp_path / "no_headline.csv"
    path.write_text("date,description\n2024-05-04 10:00:00,text\n", encoding="utf-8")

    with pytest.raises(DataValidationError, match="headline") as caught:
        read_news_file(path)

    assert str(path) in str(caught.value)
    assert caught.value.field == "headline | title"


def test_a_file_without_timestamps_names_the_accepted_columns(tmp_path: Path) -> None:
    path = tmp_path / "no_time.csv"
    path.write_text("headline\nbitcoin up\n", encoding="utf-8")

    with pytest.raises(
        DataValidationError, match=re.escape("published_at | published | timestamp | date")
    ) as caught:
        read_news_file(path)

    assert str(path) in str(caught.value)


def test_broken_json_is_a_validation_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "news.json"
    path.write_text('[{"date": "2024-05-04", "headline": "cut', encoding="utf-8")

    with pytest.raises(DataValidationError, match="not a readable JSON file") as caught:
        read_news_file(path)

    assert caught.value.origin == str(path)


# --- ids and sentiment -----------------------------------------------------------------------


def test_news_id_is_sha1_of_the_normalized_headline() -> None:
    expected = hashlib.sha1(b"bitcoin etf inflows").hexdigest()[:16]

    assert news_id("  Bitcoin\tETF   inflows ") == expected
    assert news_id("bitcoin etf outflows") != expected


def test_sentiment_signs_range_and_dtype() -> None:
    texts = [GOOD, BAD, "Bitcoin trades at 65,000"]

    scores = headline_sentiment(texts)

    assert scores.dtype == np.float64 and scores.shape == (3,)
    assert scores[0] > 0.5 and scores[1] < -0.5 and scores[2] == 0.0
    assert headline_sentiment([]).shape == (0,)


def test_the_model_label_matches_the_installed_vader() -> None:
    installed = version("vaderSentiment")

    assert f"vader-{installed}" == SENTIMENT_MODEL


def test_the_lexicon_loads_without_any_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    attempts: list[object] = []

    def refuse(self: socket.socket, address: object) -> None:
        attempts.append(address)
        raise ConnectionRefusedError("no network in this test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    sentiment._analyzer.cache_clear()

    score = headline_sentiment([GOOD])[0]

    assert score > 0.5
    assert attempts == []
