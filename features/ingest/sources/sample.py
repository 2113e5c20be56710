"""The bundled sample: a year of Binance BTC/ETH candles and funding, Fear & Greed, and news headlines.

The files live in ``features/ingest/sample_data`` (package data; provenance and licences in its
README.md) and are read by the same parsers as user files, so the sample exercises the real path.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources

from features.ingest.batch import Batch, Cursor, Dataset
from features.ingest.sources.files import read_file
from sextant.settings import Settings

__all__ = ["SAMPLE_FILES", "SAMPLE_SOURCE", "SampleFile", "SampleSource"]

SAMPLE_SOURCE = "sample"


@dataclass(frozen=True, slots=True)
class SampleFile:
    """One bundled file and what it holds."""

    name: str
    dataset: Dataset
    symbol: str | None = None
    timeframe: str | None = None


SAMPLE_FILES: tuple[SampleFile, ...] = (
    SampleFile("BTC_USDT-1h.parquet", Dataset.CANDLES, "BTC/USDT", "1h"),
    SampleFile("ETH_USDT-1h.parquet", Dataset.CANDLES, "ETH/USDT", "1h"),
    SampleFile("BTC_USDT_USDT-1h-funding_rate.parquet", Dataset.FUNDING, "BTC/USDT:USDT"),
    SampleFile("ETH_USDT_USDT-1h-funding_rate.parquet", Dataset.FUNDING, "ETH/USDT:USDT"),
    SampleFile("fear_greed.csv", Dataset.FEAR_GREED),
    SampleFile("news_ualh.csv", Dataset.NEWS),
)


class SampleSource:
    """Yields the bundled sample, one batch per file, all under the source label "sample"."""

    name = SAMPLE_SOURCE

    def __init__(self, *, settings: Settings | None = None) -> None:
        self._settings = settings

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """Yield every bundled file (the sample is small and re-imports add nothing)."""
        folder = resources.files("features.ingest").joinpath("sample_data")
        for item in SAMPLE_FILES:
            with resources.as_file(folder.joinpath(item.name)) as path:
                batch = read_file(
                    path,
                    symbol=item.symbol,
                    timeframe=item.timeframe,
                    dataset=item.dataset,
                    source_label=SAMPLE_SOURCE,
                    settings=self._settings,
                )
            yield batch
