"""The Crypto Fear & Greed Index (alternative.me): over HTTP in its JSON format, or from its CSV export.

A day's value describes the UTC day that starts at ``event_ts`` (00:00 UTC); it is published some
time after that, hence ``available_at = event_ts + publication_lag``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from features.ingest.batch import COLUMNS, Batch, Cursor, Dataset
from features.ingest.sources.http import (
    DEFAULT_BACKOFF_MAX_S,
    DEFAULT_BACKOFF_S,
    DEFAULT_MAX_TRIES,
    USER_AGENT,
    fetch_with_retry,
)
from sextant.errors import DataValidationError
from sextant.settings import Settings

__all__ = [
    "FEAR_GREED_SOURCE",
    "FearGreedSource",
    "parse_fear_greed_json",
    "read_fear_greed_csv",
]

log = logging.getLogger(__name__)

FEAR_GREED_SOURCE = "alternative.me"

# Defaults are the Settings' declared defaults (read from the class: no environment access at import).
_DEFAULT_URL: str = Settings.model_fields["fng_url"].default
_DEFAULT_LAG: timedelta = Settings.model_fields["fng_publication_lag"].default
_DEFAULT_TIMEOUT_S: float = Settings.model_fields["http_timeout_s"].default


class FearGreedSource:
    """Daily Fear & Greed values from alternative.me's JSON API, one batch per run."""

    name = "fear_greed"

    def __init__(
        self,
        url: str = _DEFAULT_URL,
        *,
        publication_lag: timedelta = _DEFAULT_LAG,
        limit: int = 0,
        timeout_s: float = _DEFAULT_TIMEOUT_S,
        max_tries: int = DEFAULT_MAX_TRIES,
        backoff_s: float = DEFAULT_BACKOFF_S,
        backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.url = url
        self.publication_lag = publication_lag
        self.limit = limit  # 0 = all history (alternative.me's convention)
        self.timeout_s = timeout_s
        self.max_tries = max_tries
        self.backoff_s = backoff_s
        self.backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> FearGreedSource:
        """The source as configured by ``SEXTANT_FNG_*`` and ``SEXTANT_HTTP_*``."""
        return cls(
            settings.fng_url,
            publication_lag=settings.fng_publication_lag,
            timeout_s=settings.http_timeout_s,
            max_tries=settings.http_max_tries,
            backoff_s=settings.http_backoff_s,
            backoff_max_s=settings.http_backoff_max_s,
        )

    def request_limit(self, cursor: Cursor) -> int:
        """How many days to ask for: ``limit`` on a first run, else the days since the last stored one + 2."""
        last = cursor.last_event_ts(Dataset.FEAR_GREED, FEAR_GREED_SOURCE)
        if last is None:
            return self.limit
        today = _utc(pd.Timestamp(self._clock())).normalize()
        stored = _utc(pd.Timestamp(last)).normalize()
        return max((today - stored).days, 0) + 2  # +2: today's value and a one-day overlap

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """Yield one batch with the requested days, oldest first."""
        params: dict[str, str | int] = {"limit": self.request_limit(cursor), "format": "json"}
        with httpx.Client(
            timeout=self.timeout_s, follow_redirects=True, headers={"User-Agent": USER_AGENT}
        ) as client:
            fetched_at = self._clock()
            response = fetch_with_retry(
                client,
                self.url,
                params=params,
                max_tries=self.max_tries,
                backoff_s=self.backoff_s,
                backoff_max_s=self.backoff_max_s,
                sleep=self._sleep,
            )
        shown = str(response.request.url)
        frame = parse_fear_greed_json(response.content, self.publication_lag, origin=shown)
        yield Batch(Dataset.FEAR_GREED, FEAR_GREED_SOURCE, self.url, frame, now=fetched_at)


def parse_fear_greed_json(
    payload: bytes | str, publication_lag: timedelta, *, origin: str
) -> pd.DataFrame:
    """Normalize an alternative.me ``/fng/`` JSON payload; DataValidationError if it is not one."""
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise DataValidationError(f"not JSON: {exc}", origin=origin) from exc
    if not isinstance(document, dict):
        raise DataValidationError(
            f"expected a JSON object, got {type(document).__name__}", origin=origin
        )
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and metadata.get("error"):
        raise DataValidationError(
            f"the API reported an error: {metadata['error']}", origin=origin, field="metadata.error"
        )
    data = document.get("data")
    if not isinstance(data, list):
        raise DataValidationError(
            f'missing "data" list (keys: {sorted(document)})', origin=origin, field="data"
        )
    if not all(isinstance(item, dict) for item in data):
        raise DataValidationError('"data" must be a list of objects', origin=origin, field="data")
    items: list[dict[str, Any]] = data
    if items:
        missing = [
            k
            for k in ("timestamp", "value", "value_classification")
            if all(k not in i for i in items)
        ]
        if missing:
            raise DataValidationError(f"data items lack {missing}", origin=origin, field=missing[0])
    raw = pd.DataFrame(items, columns=["timestamp", "value", "value_classification"])
    seconds = pd.to_numeric(raw["timestamp"], errors="coerce")
    event_ts = _from_seconds(seconds, raw["timestamp"], origin=origin, field="data[].timestamp")
    return _normalized(event_ts, raw["value"], raw["value_classification"], publication_lag)


def read_fear_greed_csv(path: str | Path, publication_lag: timedelta) -> pd.DataFrame:
    """Normalize a Fear & Greed CSV (``date,timestamp,value,classification``); the ``date`` alone suffices."""
    origin = str(path)
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=True)
    except (
        OSError,
        ValueError,
        UnicodeDecodeError,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
    ) as exc:
        raise DataValidationError(f"not a readable CSV file: {exc}", origin=origin) from exc
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in ("value", "classification") if c not in raw.columns]
    if "timestamp" not in raw.columns and "date" not in raw.columns:
        missing.append("timestamp | date")
    if missing:
        raise DataValidationError(
            f"missing columns {missing}; the file has {list(raw.columns)}",
            origin=origin,
            field=missing[0],
        )
    if "timestamp" in raw.columns:
        event_ts = _from_seconds(
            pd.to_numeric(raw["timestamp"], errors="coerce"),
            raw["timestamp"],
            origin=origin,
            field="timestamp",
        )
    else:
        event_ts = pd.to_datetime(raw["date"], utc=True, format="ISO8601", errors="coerce")
        _require_some(event_ts, raw["date"], origin=origin, field="date")
    return _normalized(event_ts, raw["value"], raw["classification"], publication_lag)


def _from_seconds(seconds: pd.Series, raw: pd.Series, *, origin: str, field: str) -> pd.Series:
    try:
        event_ts = pd.to_datetime(seconds, unit="s", utc=True, errors="coerce")
    except (OverflowError, ValueError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise DataValidationError(
            f"timestamps out of range: {exc}", origin=origin, field=field
        ) from exc
    _require_some(event_ts, raw, origin=origin, field=field)
    return event_ts


def _require_some(parsed: pd.Series, raw: pd.Series, *, origin: str, field: str) -> None:
    """A column with values but no readable timestamp at all is unreadable as a whole."""
    if len(parsed) and parsed.isna().all() and raw.notna().any():
        first = raw.dropna().iloc[0]
        raise DataValidationError(
            f"no readable timestamps (first value {first!r})", origin=origin, field=field
        )


def _normalized(
    event_ts: pd.Series, value: pd.Series, classification: pd.Series, publication_lag: timedelta
) -> pd.DataFrame:
    event = pd.Series(event_ts.to_numpy(), dtype="datetime64[ns, UTC]").dt.floor("D")
    frame = pd.DataFrame(
        {
            "event_ts": event,
            "available_at": event + pd.Timedelta(publication_lag),
            "value": pd.to_numeric(value.reset_index(drop=True), errors="coerce").astype("float64"),
            "classification": classification.reset_index(drop=True).astype(object),
        },
        columns=list(COLUMNS[Dataset.FEAR_GREED]),
    )
    return frame.sort_values("event_ts", kind="stable", na_position="last").reset_index(drop=True)


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")
