"""The bundled sample: what it yields, that it equals the shared data, that it is documented and clean."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pandas as pd
import pyarrow.parquet as pa_parquet
import pytest

from features.ingest.batch import NO_SYMBOL, Batch, Dataset
from features.ingest.sources.files import FileSource, read_file
from features.ingest.sources.sample import SAMPLE_FILES, SampleSource
from features.ingest.validate import validate_batch
from tests.features.ingest.test_file_source import NEWS_FILES, assert_normalized

REPO = Path(__file__).resolve().parents[3]
SAMPLE_DIR = REPO / "features" / "ingest" / "sample_data"
START = pd.Timestamp("2023-01-01", tz="UTC")
END = pd.Timestamp("2024-01-11", tz="UTC")  # exclusive

EXPECTED_SERIES = [
    (Dataset.CANDLES, "BTC/USDT", "1h"),
    (Dataset.CANDLES, "ETH/USDT", "1h"),
    (Dataset.FUNDING, "BTC/USDT:USDT", NO_SYMBOL),
    (Dataset.FUNDING, "ETH/USDT:USDT", NO_SYMBOL),
    (Dataset.FEAR_GREED, NO_SYMBOL, NO_SYMBOL),
    (Dataset.NEWS, NO_SYMBOL, NO_SYMBOL),
]


@pytest.fixture(scope="module")
def sample() -> list[Batch]:
    return list(SampleSource().batches(cursor=None))  # type: ignore[arg-type]  # the sample needs no cursor


def batch_for(batches: list[Batch], dataset: Dataset, symbol: str = NO_SYMBOL) -> Batch:
    (found,) = [b for b in batches if b.dataset is dataset and b.symbol == symbol]
    return found


def in_period(frame: pd.DataFrame) -> pd.DataFrame:
    kept = frame[(frame["event_ts"] >= START) & (frame["event_ts"] < END)]
    return kept.reset_index(drop=True)


def test_the_sample_yields_the_documented_series_under_the_sample_label(
    sample: list[Batch],
) -> None:
    assert [(b.dataset, b.symbol, b.timeframe) for b in sample] == EXPECTED_SERIES
    assert {b.source for b in sample} == {"sample"}
    for batch in sample:
        assert_normalized(batch.frame, batch.dataset)


@pytest.mark.parametrize(("dataset", "symbol", "rows", "first", "last"), [
    (Dataset.CANDLES, "BTC/USDT", 8_998, "2023-01-01 00:00", "2024-01-10 22:00"),
    (Dataset.CANDLES, "ETH/USDT", 8_998, "2023-01-01 00:00", "2024-01-10 22:00"),
    (Dataset.FUNDING, "BTC/USDT:USDT", 1_125, "2023-01-01 00:00", "2024-01-10 16:00"),
    (Dataset.FUNDING, "ETH/USDT:USDT", 1_125, "2023-01-01 00:00", "2024-01-10 16:00"),
    (Dataset.FEAR_GREED, NO_SYMBOL, 375, "2023-01-01 00:00", "2024-01-10 00:00"),
    (Dataset.NEWS, NO_SYMBOL, 834, "2024-03-05 17:04:11", "2024-05-18 13:57:37"),
])  # fmt: skip
def test_each_series_covers_the_documented_period(
    sample: list[Batch], dataset: Dataset, symbol: str, rows: int, first: str, last: str
) -> None:
    frame = batch_for(sample, dataset, symbol).frame

    assert len(frame) == rows
    assert frame["event_ts"].min() == pd.Timestamp(first, tz="UTC")
    assert frame["event_ts"].max() == pd.Timestamp(last, tz="UTC")


@pytest.mark.parametrize("pair", ["BTC_USDT", "ETH_USDT"])
def test_sample_candles_equal_the_shared_feather_rows(
    sample: list[Batch], shared_data: Path, pair: str
) -> None:
    shared = read_file(shared_data / f"daisybum_cryptotradingbot/binance/{pair}-1h.feather").frame

    bundled = batch_for(sample, Dataset.CANDLES, pair.replace("_", "/")).frame

    pd.testing.assert_frame_equal(bundled, in_period(shared), check_exact=True)


@pytest.mark.parametrize("pair", ["BTC_USDT", "ETH_USDT"])
def test_sample_funding_equals_the_shared_feather_rows(
    sample: list[Batch], shared_data: Path, pair: str
) -> None:
    path = (
        shared_data / f"roshan7869_algotrading/binance/futures/{pair}_USDT-1h-funding_rate.feather"
    )
    shared = read_file(path).frame

    bundled = batch_for(sample, Dataset.FUNDING, pair.replace("_", "/") + ":USDT").frame

    pd.testing.assert_frame_equal(bundled, in_period(shared), check_exact=True)


def test_sample_fear_greed_equals_the_shared_csv_rows(
    sample: list[Batch], shared_data: Path
) -> None:
    shared = read_file(shared_data / "fear_greed/fng.csv").frame

    bundled = batch_for(sample, Dataset.FEAR_GREED).frame

    pd.testing.assert_frame_equal(bundled, in_period(shared), check_exact=True)


def test_sample_news_holds_every_distinct_shared_headline(
    sample: list[Batch], shared_data: Path
) -> None:
    shared = pd.concat([read_file(shared_data / relative).frame for relative, _ in NEWS_FILES])
    earliest = shared.sort_values("event_ts", kind="stable").drop_duplicates("news_id")

    bundled = batch_for(sample, Dataset.NEWS).frame

    assert set(bundled["news_id"]) == set(shared["news_id"])
    merged = bundled.merge(earliest, on="news_id", suffixes=("", "_shared"))
    assert len(merged) == len(bundled)
    assert (merged["event_ts"] == merged["event_ts_shared"]).all()
    assert (merged["headline"] == merged["headline_shared"]).all()


def test_every_sample_row_passes_validation(sample: list[Batch]) -> None:
    for batch in sample:
        validated = validate_batch(batch)

        assert len(validated.rejected) == 0, (
            batch.dataset,
            batch.symbol,
            validated.rejected.head(),
        )
        assert len(validated.valid) == len(batch.frame)


def test_pointing_the_file_source_at_the_sample_folder_infers_the_same_series(
    sample: list[Batch],
) -> None:
    by_file = {b.origin: b for b in FileSource(SAMPLE_DIR).batches(cursor=None)}  # type: ignore[arg-type]

    for batch in sample:
        twin = by_file[batch.origin]
        assert (twin.dataset, twin.symbol, twin.timeframe) == (
            batch.dataset,
            batch.symbol,
            batch.timeframe,
        )
        pd.testing.assert_frame_equal(twin.frame, batch.frame, check_exact=True)


def test_the_readme_lists_every_bundled_file_with_its_provenance() -> None:
    readme = (SAMPLE_DIR / "README.md").read_text(encoding="utf-8")
    bundled = sorted(p.name for p in SAMPLE_DIR.iterdir() if p.name != "README.md")

    assert bundled == sorted(item.name for item in SAMPLE_FILES)
    for name in bundled:
        assert f"`{name}`" in readme, name
    for fact in (
        "GPL-3.0",
        "Binance",
        "alternative.me",
        "no licence",
        "MIT",
        "2024-03",
        "019e541ccb2dab68bb5eb2a78f2ad57f616cb4f7",
    ):
        assert fact in readme, fact


def test_the_sample_is_small() -> None:
    total = sum(p.stat().st_size for p in SAMPLE_DIR.iterdir())

    assert total < 3_000_000


def test_candle_and_funding_files_are_zstd_parquet() -> None:
    for item in SAMPLE_FILES:
        if item.name.endswith(".parquet"):
            metadata = pa_parquet.ParquetFile(SAMPLE_DIR / item.name).metadata
            codecs = {
                metadata.row_group(0).column(i).compression for i in range(metadata.num_columns)
            }
            assert codecs == {"ZSTD"}, item.name


@pytest.fixture
def build_script() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location(
        "build_sample_data", REPO / "scripts" / "build_sample_data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module


def test_the_build_script_reproduces_the_bundled_files(
    build_script: ModuleType, shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build_script.main(["--shared", str(shared_data), "--out", str(tmp_path)]) == 0

    for item in SAMPLE_FILES:
        rebuilt, bundled = tmp_path / item.name, SAMPLE_DIR / item.name
        if item.name.endswith(".parquet"):
            assert pa_parquet.read_table(rebuilt).equals(pa_parquet.read_table(bundled)), item.name
        else:
            assert rebuilt.read_bytes() == bundled.read_bytes(), item.name
    assert "8998 rows" in capsys.readouterr().out
