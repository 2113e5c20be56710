"""Turn an ingest request (what the CLI or a flow was asked) into independent units of work.

One unit is one source instance: per symbol for exchanges, per file for paths, one for the rest.
The CLI runs the units in order; the ``ingest`` flow runs each as a retryable task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from features.ingest.batch import Dataset, Source
from sextant.errors import ConfigError
from sextant.settings import Settings

__all__ = ["SOURCE_KINDS", "IngestRequest", "IngestUnit", "plan_ingest"]

SOURCE_KINDS = ("sample", "ccxt", "file", "fng", "news")

ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """What to ingest; unset fields fall back to settings."""

    source: str = "sample"
    exchange: str | None = None
    api_url: str | None = None
    symbols: tuple[str, ...] = ()
    timeframe: str | None = None
    since: datetime | None = None
    path: Path | None = None
    dataset: Dataset | None = None
    feeds: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IngestUnit:
    """One independently retryable piece of an ingest request."""

    label: str
    source: Source


def plan_ingest(
    request: IngestRequest, settings: Settings, *, progress: ProgressCallback | None = None
) -> list[IngestUnit]:
    """Build the source instances for a request; raises ConfigError for an incomplete request."""
    kind = request.source
    if kind == "sample":
        from features.ingest.sources.sample import SampleSource

        return [IngestUnit("sample", SampleSource())]
    if kind == "ccxt":
        return _ccxt_units(request, settings, progress)
    if kind == "file":
        from features.ingest.sources.files import FileSource

        if request.path is None:
            raise ConfigError("--source file needs --path (a file or a directory of files)")
        symbol = request.symbols[0] if request.symbols else None
        if len(request.symbols) > 1:
            raise ConfigError("--source file takes at most one --symbol (it applies to every file)")
        source = FileSource(
            request.path,
            symbol=symbol,
            timeframe=request.timeframe,
            dataset=request.dataset,
            settings=settings,
        )
        return [IngestUnit(f"file {request.path}", source)]
    if kind == "fng":
        from features.ingest.sources.fear_greed import FearGreedSource

        return [IngestUnit("fear & greed", FearGreedSource.from_settings(settings))]
    if kind == "news":
        return _news_units(request, settings)
    raise ConfigError(f"unknown source {kind!r}: expected one of {', '.join(SOURCE_KINDS)}")


def _ccxt_units(
    request: IngestRequest, settings: Settings, progress: ProgressCallback | None
) -> list[IngestUnit]:
    from features.ingest.sources.ccxt_source import CcxtSource

    exchange = request.exchange or settings.exchange
    symbols = request.symbols or settings.symbols
    timeframe = request.timeframe or settings.timeframe
    dataset = request.dataset or Dataset.CANDLES
    return [
        IngestUnit(
            f"{exchange} {symbol} {timeframe if dataset is Dataset.CANDLES else dataset.value}",
            CcxtSource(
                exchange,
                [symbol],
                timeframe,
                since=request.since,
                dataset=dataset,
                api_url=request.api_url or settings.ccxt_api_url,
                settings=settings,
                progress=progress,
            ),
        )
        for symbol in symbols
    ]


def _news_units(request: IngestRequest, settings: Settings) -> list[IngestUnit]:
    from features.ingest.sources.news import RssNewsSource

    units: list[IngestUnit] = []
    if request.path is not None:
        from features.ingest.sources.files import FileSource

        units.append(
            IngestUnit(
                f"news file {request.path}",
                FileSource(request.path, dataset=Dataset.NEWS, settings=settings),
            )
        )
    feeds = request.feeds or (() if request.path is not None else settings.news_feeds)
    units.extend(
        IngestUnit(f"news feed {feed}", RssNewsSource.from_settings([feed], settings))
        for feed in feeds
    )
    if not units:
        raise ConfigError("--source news needs --path FILE, --feed URL, or SEXTANT_NEWS_FEEDS")
    return units
