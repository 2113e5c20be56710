"""News headlines from RSS 2.0 / Atom feeds over HTTP, and from CSV / JSON archives.

Every headline gets ``news_id`` (a hash of its normalized text, so one headline seen twice is one
row) and a VADER ``sentiment`` we compute ourselves; a sentiment column in the input is ignored.
A feed's headline is available when we fetched it (never before it happened); an archived headline
was on a real-time feed at publication, so it is available at ``event_ts + publication_lag``.
"""

from __future__ import annotations

import calendar
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import httpx
import numpy as np
import pandas as pd

from features.ingest.batch import COLUMNS, Batch, Cursor, Dataset
from features.ingest.sentiment import headline_sentiment
from features.ingest.sources.epoch import from_epoch
from features.ingest.sources.http import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_TRIES,
    USER_AGENT,
    fetch_with_retry,
)
from sextant.errors import DataValidationError, SourceUnavailableError
from sextant.settings import Settings

__all__ = [
    "NEWS_HEADLINE_COLUMNS",
    "NEWS_TIME_COLUMNS",
    "RssNewsSource",
    "news_id",
    "parse_feed",
    "read_news_file",
]

log = logging.getLogger(__name__)

# Accepted input column names (case-insensitive), first match wins.
NEWS_TIME_COLUMNS = ("published_at", "published", "timestamp", "date")
NEWS_HEADLINE_COLUMNS = ("headline", "title")
_DESCRIPTION_COLUMNS = ("description", "summary")
_URL_COLUMNS = ("url", "link")
_JSON_SUFFIXES = (".json", ".jsonl", ".ndjson")

_DEFAULT_TIMEOUT_S: float = Settings.model_fields["http_timeout_s"].default


def news_id(headline: str) -> str:
    """Stable id of a headline: sha1 of its whitespace-collapsed, lower-cased text, 16 hex chars."""
    return hashlib.sha1(" ".join(headline.split()).lower().encode("utf-8")).hexdigest()[:16]


class RssNewsSource:
    """Headlines of RSS 2.0 / Atom feeds; one batch per feed, labelled ``rss:<host>``.

    A failing feed does not stop the others: its error is raised after the remaining feeds were
    yielded (further failures are attached to it as notes).
    """

    name = "rss"

    def __init__(
        self,
        feeds: Sequence[str],
        *,
        timeout_s: float = _DEFAULT_TIMEOUT_S,
        max_tries: int = DEFAULT_MAX_TRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.feeds = tuple(feeds)
        self.timeout_s = timeout_s
        self.max_tries = max_tries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_settings(cls, feeds: Sequence[str], settings: Settings) -> RssNewsSource:
        """The source with the ``SEXTANT_HTTP_*`` timeout and retry policy."""
        return cls(
            feeds,
            timeout_s=settings.http_timeout_s,
            max_tries=settings.http_max_tries,
            backoff_s=settings.http_backoff_s,
            backoff_max_s=settings.http_backoff_max_s,
        )

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """Yield each feed's current entries (feeds hold only recent items: no cursor needed)."""
        failures: list[SourceUnavailableError | DataValidationError] = []
        with httpx.Client(
            timeout=self.timeout_s, follow_redirects=True, headers={"User-Agent": USER_AGENT}
        ) as client:
            for feed in self.feeds:
                try:
                    batch = self._fetch(client, feed)
                except (SourceUnavailableError, DataValidationError) as exc:
                    log.warning("news feed %s failed: %s", feed, exc)
                    failures.append(exc)
                    continue
                yield batch
        if failures:
            first = failures[0]
            for other in failures[1:]:
                first.add_note(f"also failed: {other}")
            raise first

    def _fetch(self, client: httpx.Client, feed: str) -> Batch:
        response = fetch_with_retry(
            client,
            feed,
            max_tries=self.max_tries,
            backoff_s=self.backoff_s,
            backoff_max_s=self.backoff_max_s,
            sleep=self._sleep,
        )
        fetched_at = self._clock()
        frame = parse_feed(
            response.content,
            origin=feed,
            fetched_at=fetched_at,
            content_type=response.headers.get("content-type"),
        )
        host = urlsplit(feed).hostname or feed
        return Batch(Dataset.NEWS, f"rss:{host}", feed, frame, now=fetched_at)


def parse_feed(
    content: bytes, *, origin: str, fetched_at: datetime, content_type: str | None = None
) -> pd.DataFrame:
    """Normalize an RSS 2.0 / Atom document; entries without a date happened at ``fetched_at``."""
    headers = {"content-location": origin}
    if content_type:
        headers["content-type"] = content_type
    # A stream, never a string: feedparser would fetch a string that looks like a URL.
    parsed = feedparser.parse(io.BytesIO(content), response_headers=headers)
    entries: list[Any] = list(parsed.entries)
    if not entries and (parsed.bozo or not parsed.version):
        problem = parsed.get("bozo_exception") or "no feed element"
        raise DataValidationError(f"not an RSS or Atom feed: {problem}", origin=origin)
    fetched = _utc(pd.Timestamp(fetched_at))
    event_ts = pd.Series(
        [fetched if (t := _entry_time(entry)) is None else t for entry in entries],
        dtype="datetime64[ns, UTC]",
    )
    available_at = event_ts.where(event_ts > fetched, fetched)
    return _news_frame(
        event_ts,
        available_at,
        headline=[entry.get("title") for entry in entries],
        description=[entry.get("summary") for entry in entries],
        url=[entry.get("link") for entry in entries],
    )


def _entry_time(entry: Any) -> pd.Timestamp | None:
    """feedparser's ``*_parsed`` fields are struct_time already converted to UTC."""
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        parsed = entry.get(key)
        if parsed is not None:
            return pd.Timestamp(calendar.timegm(parsed), unit="s", tz="UTC")
    return None


def read_news_file(path: str | Path, publication_lag: timedelta = timedelta(0)) -> pd.DataFrame:
    """Normalize a CSV or JSON (array or JSON lines) headline archive; naive timestamps are UTC."""
    path = Path(path)
    origin = str(path)
    raw = _read_json(path) if path.suffix.lower() in _JSON_SUFFIXES else _read_csv(path)
    names: dict[str, Any] = {}
    for column in raw.columns:
        names.setdefault(str(column).strip().lower(), column)

    def first(candidates: Sequence[str]) -> Any | None:
        return next((names[c] for c in candidates if c in names), None)

    time_column, headline_column = first(NEWS_TIME_COLUMNS), first(NEWS_HEADLINE_COLUMNS)
    missing = [
        " | ".join(options)
        for options, found in (
            (NEWS_TIME_COLUMNS, time_column),
            (NEWS_HEADLINE_COLUMNS, headline_column),
        )
        if found is None
    ]
    if missing:
        raise DataValidationError(
            f"missing columns {missing}; the file has {[str(c) for c in raw.columns]}",
            origin=origin,
            field=missing[0],
        )
    event_ts = _timestamps(raw[time_column], origin=origin, field=str(time_column))
    description_column, url_column = first(_DESCRIPTION_COLUMNS), first(_URL_COLUMNS)
    rows = len(raw)
    return _news_frame(
        event_ts,
        event_ts + pd.Timedelta(publication_lag),
        headline=list(raw[headline_column]),
        description=[None] * rows if description_column is None else list(raw[description_column]),
        url=[None] * rows if url_column is None else list(raw[url_column]),
    )


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        # only empty cells are missing: a headline reading "NA" or "null" is text
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
    except (
        OSError,
        ValueError,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as exc:
        raise DataValidationError(f"not a readable CSV file: {exc}", origin=str(path)) from exc


def _read_json(path: Path) -> pd.DataFrame:
    origin = str(path)
    try:
        text = path.read_text(encoding="utf-8")
        if text.lstrip().startswith("["):
            records = json.loads(text)
        else:
            records = [json.loads(line) for line in text.splitlines() if line.strip()]
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DataValidationError(f"not a readable JSON file: {exc}", origin=origin) from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise DataValidationError(
            "expected a JSON array of objects or JSON lines of objects", origin=origin
        )
    if not records:
        raise DataValidationError("the file holds no records", origin=origin)
    return pd.DataFrame.from_records(records)


def _timestamps(series: pd.Series, *, origin: str, field: str) -> pd.Series:
    """datetime64[ns, UTC]: ISO 8601 or RFC 822 strings (naive = UTC), or epoch numbers by magnitude."""
    series = series.reset_index(drop=True)
    present = series.notna()
    if not present.any():
        return pd.Series(pd.NaT, index=series.index, dtype="datetime64[ns, UTC]")
    numbers = pd.to_numeric(series, errors="coerce")
    try:
        if numbers.notna().sum() == present.sum():  # every value is a number: epoch time
            parsed = from_epoch(numbers)
        else:
            # "mixed", not "ISO8601": pandas 2.3 gives naive strings the offset of aware ones in the
            # same column under ISO8601; mixed reads each value alone (RFC 822 dates included).
            parsed = pd.to_datetime(series, utc=True, format="mixed", errors="coerce")
    except (OverflowError, ValueError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise DataValidationError(
            f"cannot read timestamps: {exc}", origin=origin, field=field
        ) from exc
    if parsed.isna().all():
        first = series.dropna().iloc[0]
        raise DataValidationError(
            f"no readable timestamps (first value {first!r})", origin=origin, field=field
        )
    return pd.Series(parsed, dtype="datetime64[ns, UTC]")


def _news_frame(
    event_ts: pd.Series,
    available_at: pd.Series,
    *,
    headline: Sequence[object],
    description: Sequence[object],
    url: Sequence[object],
) -> pd.DataFrame:
    """Assemble COLUMNS[NEWS]; one row per headline (its earliest), oldest first."""
    texts = [" ".join(h.split()) if isinstance(h, str) and h.strip() else None for h in headline]
    has_text = np.array([t is not None for t in texts], dtype=bool)
    sentiment = np.full(len(texts), np.nan)
    if has_text.any():
        sentiment[has_text] = headline_sentiment([t for t in texts if t is not None])
    frame = pd.DataFrame(
        {
            # a missing headline still gets an id, so the validator reports it as EMPTY_TEXT
            "news_id": [news_id(t or "") for t in texts],
            "event_ts": event_ts.reset_index(drop=True).astype("datetime64[ns, UTC]"),
            "available_at": available_at.reset_index(drop=True).astype("datetime64[ns, UTC]"),
            "headline": pd.Series(texts, dtype=object),
            "description": pd.Series([_text(d) for d in description], dtype=object),
            "url": pd.Series([_text(u) for u in url], dtype=object),
            "sentiment": sentiment,
        },
        columns=list(COLUMNS[Dataset.NEWS]),
    )
    frame = frame.sort_values("event_ts", kind="stable", na_position="last")
    repeated = frame["news_id"].duplicated(keep="first") & frame["headline"].notna()
    return frame.loc[~repeated].reset_index(drop=True)


def _text(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    return value.strip() or None


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
