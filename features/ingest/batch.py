"""What every source yields: a ``Batch`` of rows in one dataset's normalized schema."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Protocol

import pandas as pd

__all__ = ["COLUMNS", "KEYS", "Batch", "Cursor", "Dataset", "Source"]


class Dataset(StrEnum):
    """The kinds of raw data the market store keeps (one table each)."""

    CANDLES = "candles"
    FUNDING = "funding"
    FEAR_GREED = "fear_greed"
    NEWS = "news"


# Normalized columns a source must deliver, in order. Timestamps are tz-aware UTC.
# ``available_at`` is when the value could have been known (DESIGN.md "Time"); for candles it is
# derived (open time + one bar), so it is not stored.
COLUMNS: dict[Dataset, tuple[str, ...]] = {
    Dataset.CANDLES: ("symbol", "timeframe", "event_ts", "open", "high", "low", "close", "volume"),
    Dataset.FUNDING: ("symbol", "event_ts", "available_at", "funding_rate"),
    Dataset.FEAR_GREED: ("event_ts", "available_at", "value", "classification"),
    Dataset.NEWS: (
        "news_id",
        "event_ts",
        "available_at",
        "headline",
        "description",
        "url",
        "sentiment",
    ),
}

# Primary keys within one source (the stored key is ``source`` + these).
KEYS: dict[Dataset, tuple[str, ...]] = {
    Dataset.CANDLES: ("symbol", "timeframe", "event_ts"),
    Dataset.FUNDING: ("symbol", "event_ts"),
    Dataset.FEAR_GREED: ("event_ts",),
    Dataset.NEWS: ("news_id",),
}

NO_SYMBOL = "*"


@dataclass(frozen=True, slots=True)
class Batch:
    """Rows of one dataset from one source, for one symbol/timeframe where those apply.

    ``source`` is the provider label stored in the key ("binance", "file", "sample", ...);
    ``origin`` names where the rows came from (file path or URL) for errors and quarantine;
    ``now`` is the reference clock for "in the future" checks (the exchange's server time where
    the source knows it), defaulting to the local UTC clock.
    """

    dataset: Dataset
    source: str
    origin: str
    frame: pd.DataFrame
    symbol: str = NO_SYMBOL
    timeframe: str = NO_SYMBOL
    now: datetime | None = None


class Cursor(Protocol):
    """Read access to what is already stored, so a source can resume incrementally."""

    def last_event_ts(
        self, dataset: Dataset, source: str, symbol: str = NO_SYMBOL, timeframe: str = NO_SYMBOL
    ) -> datetime | None: ...


class Source(Protocol):
    """One small interface for every source: yield normalized batches, in time order.

    A source raises ``DataValidationError`` for unreadable input, ``SourceUnavailableError`` for
    transient failures it gave up retrying, and ``SourceRequestError`` for requests the
    provider refuses. Batches are stored as they arrive, so an interrupted run keeps its progress.
    """

    name: str

    def batches(self, cursor: Cursor) -> Iterator[Batch]: ...
