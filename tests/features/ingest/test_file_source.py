"""The file source on every real file format in ../shared/data, round trips, inference and bad input."""

from __future__ import annotations

import json
import random
import shutil
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.ingest.batch import COLUMNS, NO_SYMBOL, Batch, Dataset
from features.ingest.service import ingest_source
from features.ingest.sources.files import FileSource, NameHints, infer_from_name, read_file
from features.ingest.store import MarketStore
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import load_settings
from tests.features.ingest.factories import candle_frame

_TEXT = {"symbol", "timeframe", "classification", "news_id", "headline", "description", "url"}
_TIME = {"event_ts", "available_at"}

# path under shared/data, dataset, source label, symbol, timeframe, rows, first, last (SOURCES.md)
FEATHER_FILES = [
    (
        "roshan7869_algotrading/binance/BTC_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "BTC/USDT",
        "1h",
        73_265,
        "2018-01-01 00:00",
        "2026-05-16 18:00",
    ),
    (
        "roshan7869_algotrading/binance/ETH_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "ETH/USDT",
        "1h",
        73_265,
        "2018-01-01 00:00",
        "2026-05-16 18:00",
    ),
    (
        "roshan7869_algotrading/binance/SOL_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "SOL/USDT",
        "1h",
        50_489,
        "2020-08-11 06:00",
        "2026-05-16 18:00",
    ),
    (
        "roshan7869_algotrading/binance/XRP_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "XRP/USDT",
        "1h",
        70_339,
        "2018-05-04 08:00",
        "2026-05-16 18:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-futures.feather",
        Dataset.CANDLES,
        "file",
        "BTC/USDT:USDT",
        "1h",
        58_623,
        "2019-09-08 17:00",
        "2026-05-17 07:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/ETH_USDT_USDT-1h-futures.feather",
        Dataset.CANDLES,
        "file",
        "ETH/USDT:USDT",
        "1h",
        56_713,
        "2019-11-27 07:00",
        "2026-05-17 07:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-mark.feather",
        Dataset.CANDLES,
        "file:mark",
        "BTC/USDT:USDT",
        "1h",
        56_084,
        "2019-12-23 11:00",
        "2026-05-17 06:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/ETH_USDT_USDT-1h-mark.feather",
        Dataset.CANDLES,
        "file:mark",
        "ETH/USDT:USDT",
        "1h",
        56_084,
        "2019-12-23 11:00",
        "2026-05-17 06:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-funding_rate.feather",
        Dataset.FUNDING,
        "file",
        "BTC/USDT:USDT",
        NO_SYMBOL,
        7_323,
        "2019-09-10 08:00",
        "2026-05-17 00:00",
    ),
    (
        "roshan7869_algotrading/binance/futures/ETH_USDT_USDT-1h-funding_rate.feather",
        Dataset.FUNDING,
        "file",
        "ETH/USDT:USDT",
        NO_SYMBOL,
        7_089,
        "2019-11-27 08:00",
        "2026-05-17 00:00",
    ),
    (
        "daisybum_cryptotradingbot/binance/BTC_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "BTC/USDT",
        "1h",
        8_998,
        "2023-01-01 00:00",
        "2024-01-10 22:00",
    ),
    (
        "daisybum_cryptotradingbot/binance/ETH_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "ETH/USDT",
        "1h",
        8_998,
        "2023-01-01 00:00",
        "2024-01-10 22:00",
    ),
    (
        "daisybum_cryptotradingbot/binance/BTC_USDT-15m.feather",
        Dataset.CANDLES,
        "file",
        "BTC/USDT",
        "15m",
        34_994,
        "2023-01-01 00:00",
        "2023-12-31 13:30",
    ),
    (
        "daisybum_cryptotradingbot/binance/ETH_USDT-15m.feather",
        Dataset.CANDLES,
        "file",
        "ETH/USDT",
        "15m",
        34_994,
        "2023-01-01 00:00",
        "2023-12-31 13:30",
    ),
    (
        "nic_tradingstrategyga/binance/BTC_USDT-1h.feather",
        Dataset.CANDLES,
        "file",
        "BTC/USDT",
        "1h",
        58_419,
        "2017-08-17 04:00",
        "2024-04-21 14:00",
    ),
]
NEWS_FILES = [
    ("news_ualh/2024-04-05_30d_news.csv", 217),
    ("news_ualh/2024-05-18_30d_news.csv", 207),
    ("news_ualh/2024-04-05_24h_news.csv", 234),
    ("news_ualh/2024-05-18_24h_news_with_sentiment.csv", 277),
]
DAISY_BTC = "daisybum_cryptotradingbot/binance/BTC_USDT-1h.feather"


def assert_normalized(frame: pd.DataFrame, dataset: Dataset) -> None:
    """Exactly the dataset's columns, in order, with the contract's dtypes."""
    assert tuple(frame.columns) == COLUMNS[dataset]
    for column in frame.columns:
        if column in _TIME:
            assert str(frame[column].dtype) == "datetime64[ns, UTC]", column
        elif column in _TEXT:
            assert frame[column].dtype == object, column
        else:
            assert frame[column].dtype == "float64", column


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def only_batch(source: FileSource) -> Batch:
    batches = list(source.batches(cursor=None))  # type: ignore[arg-type]  # files need no cursor
    assert len(batches) == 1
    return batches[0]


def freqtrade_slice(shared_data: Path, rows: int = 300) -> pd.DataFrame:
    return pd.read_feather(shared_data / DAISY_BTC).iloc[:rows]


# --- every real file --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("relative", "dataset", "label", "symbol", "timeframe", "rows", "first", "last"),
    FEATHER_FILES,
    ids=[f[0] for f in FEATHER_FILES],
)
def test_every_shared_feather_file_imports_with_inferred_series(
    shared_data: Path,
    relative: str,
    dataset: Dataset,
    label: str,
    symbol: str,
    timeframe: str,
    rows: int,
    first: str,
    last: str,
) -> None:
    batch = only_batch(FileSource(shared_data / relative))

    assert (batch.dataset, batch.source, batch.symbol, batch.timeframe) == (
        dataset,
        label,
        symbol,
        timeframe,
    )
    assert batch.origin == str(shared_data / relative)
    assert_normalized(batch.frame, dataset)
    assert len(batch.frame) == rows
    assert batch.frame["event_ts"].iloc[0] == utc(first)
    assert batch.frame["event_ts"].iloc[-1] == utc(last)
    assert (batch.frame["symbol"] == symbol).all()
    if dataset is Dataset.CANDLES:
        assert (batch.frame["timeframe"] == timeframe).all()


def test_candle_values_are_the_feather_values_unchanged(shared_data: Path) -> None:
    path = shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-futures.feather"
    raw = pd.read_feather(path)  # datetime64[ms, UTC] in this file

    frame = read_file(path).frame

    assert (frame["event_ts"].to_numpy() == raw["date"].dt.as_unit("ns").to_numpy()).all()
    for column in ("open", "high", "low", "close", "volume"):
        assert (frame[column].to_numpy() == raw[column].to_numpy()).all(), column


def test_freqtrade_funding_takes_the_rate_from_open_and_is_known_at_settlement(
    shared_data: Path,
) -> None:
    path = (
        shared_data / "roshan7869_algotrading/binance/futures/ETH_USDT_USDT-1h-funding_rate.feather"
    )
    raw = pd.read_feather(path)

    frame = read_file(path).frame

    assert (frame["funding_rate"].to_numpy() == raw["open"].to_numpy()).all()
    assert (frame["available_at"] == frame["event_ts"]).all()
    assert set(frame["event_ts"].dt.hour) == {0, 8, 16}


def test_fear_greed_csv_is_recognized_by_its_columns(shared_data: Path) -> None:
    batch = only_batch(FileSource(shared_data / "fear_greed/fng.csv"))

    assert (batch.dataset, batch.source, batch.symbol, batch.timeframe) == (
        Dataset.FEAR_GREED,
        "file",
        NO_SYMBOL,
        NO_SYMBOL,
    )
    assert_normalized(batch.frame, Dataset.FEAR_GREED)
    assert len(batch.frame) == 3_121
    assert batch.frame["event_ts"].min() == utc("2018-02-01")
    assert batch.frame["event_ts"].max() == utc("2026-08-22")


def test_fear_greed_publication_lag_comes_from_settings(shared_data: Path) -> None:
    path = shared_data / "fear_greed/fng.csv"
    one_hour = FileSource(path, settings=load_settings(fng_publication_lag=timedelta(hours=1)))
    three_hours = FileSource(path, settings=load_settings(fng_publication_lag=timedelta(hours=3)))

    early = only_batch(one_hour).frame["available_at"]
    late = only_batch(three_hours).frame["available_at"]

    assert ((late - early) == pd.Timedelta(hours=2)).all()


@pytest.mark.parametrize(("relative", "rows"), NEWS_FILES, ids=[f[0] for f in NEWS_FILES])
def test_news_csv_is_recognized_by_its_columns(shared_data: Path, relative: str, rows: int) -> None:
    batch = only_batch(FileSource(shared_data / relative))

    assert (batch.dataset, batch.source, batch.symbol) == (Dataset.NEWS, "file", NO_SYMBOL)
    assert_normalized(batch.frame, Dataset.NEWS)
    assert len(batch.frame) == rows


def test_news_json_is_dispatched_to_the_news_reader(tmp_path: Path) -> None:
    path = tmp_path / "headlines.json"
    items = [
        {
            "date": "2024-05-04 19:18:07",
            "headline": "bitcoin rises above $69,000",
            "url": "https://example.org/a",
        },
        {"date": "2024-05-05 08:00:00", "headline": "ether slips", "url": "https://example.org/b"},
    ]
    path.write_text(json.dumps(items), encoding="utf-8")

    batch = only_batch(FileSource(path))

    assert batch.dataset is Dataset.NEWS
    assert_normalized(batch.frame, Dataset.NEWS)
    assert sorted(batch.frame["headline"]) == ["bitcoin rises above $69,000", "ether slips"]


# --- round trips through CSV and parquet --------------------------------------------------------


def test_csv_with_iso_dates_round_trips_exactly(shared_data: Path, tmp_path: Path) -> None:
    expected = read_file(shared_data / DAISY_BTC).frame.iloc[:300]
    path = tmp_path / "BTC_USDT-1h.csv"
    freqtrade_slice(shared_data).to_csv(path, index=False)  # date as '2023-01-01 00:00:00+00:00'

    frame = read_file(path).frame

    pd.testing.assert_frame_equal(frame, expected, check_exact=True)


@pytest.mark.parametrize("time_column", ["timestamp", "open_time", "event_ts"])
def test_csv_with_epoch_milliseconds_round_trips_exactly(
    shared_data: Path, tmp_path: Path, time_column: str
) -> None:
    expected = read_file(shared_data / DAISY_BTC).frame.iloc[:300]
    raw = freqtrade_slice(shared_data)
    raw.insert(0, time_column, raw.pop("date").astype("int64") // 1_000_000)
    path = tmp_path / "BTC_USDT-1h.csv"
    raw.to_csv(path, index=False)

    frame = read_file(path).frame

    pd.testing.assert_frame_equal(frame, expected, check_exact=True)


def test_csv_with_naive_time_strings_reads_them_as_utc(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "open_time,open,high,low,close,volume\n"
        "2024-01-01 00:00:00,10,11,9,10.5,1\n"
        "2024-01-01T01:00:00,10.5,12,10,11,2\n",
        encoding="utf-8",
    )

    frame = read_file(path, symbol="BTC/USDT", timeframe="1h").frame

    assert list(frame["event_ts"]) == [utc("2024-01-01 00:00"), utc("2024-01-01 01:00")]
    assert list(frame["close"]) == [10.5, 11.0]


def test_parquet_round_trips_exactly(shared_data: Path, tmp_path: Path) -> None:
    expected = read_file(shared_data / DAISY_BTC).frame.iloc[:300]
    path = tmp_path / "BTC_USDT-1h.parquet"
    freqtrade_slice(shared_data).to_parquet(path, index=False)

    frame = read_file(path).frame

    pd.testing.assert_frame_equal(frame, expected, check_exact=True)


def test_parquet_with_naive_datetimes_reads_them_as_utc(shared_data: Path, tmp_path: Path) -> None:
    raw = freqtrade_slice(shared_data, rows=5)
    raw["date"] = raw["date"].dt.tz_localize(None)
    path = tmp_path / "ETH_USDT-1h.parquet"
    raw.to_parquet(path, index=False)

    frame = read_file(path).frame

    assert str(frame["event_ts"].dtype) == "datetime64[ns, UTC]"
    assert frame["event_ts"].iloc[0] == utc("2023-01-01 00:00")


def test_funding_csv_with_binance_column_names(tmp_path: Path) -> None:
    path = tmp_path / "funding.csv"
    path.write_text(
        "symbol,fundingTime,fundingRate\nBTCUSDT,1672531200000,0.0001\nBTCUSDT,1672560000000,-0.00002\n",
        encoding="utf-8",
    )

    batch = read_file(path, symbol="BTC/USDT:USDT")

    assert (batch.dataset, batch.symbol) == (Dataset.FUNDING, "BTC/USDT:USDT")
    assert_normalized(batch.frame, Dataset.FUNDING)
    assert list(batch.frame["event_ts"]) == [utc("2023-01-01 00:00"), utc("2023-01-01 08:00")]
    assert list(batch.frame["funding_rate"]) == [0.0001, -0.00002]


def test_funding_parquet_named_like_freqtrade(shared_data: Path, tmp_path: Path) -> None:
    raw = pd.read_feather(
        shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-funding_rate.feather"
    )
    path = tmp_path / "BTC_USDT_USDT-1h-funding_rate.parquet"
    raw.loc[:9, ["date"]].assign(funding_rate=raw["open"].iloc[:10]).to_parquet(path, index=False)

    batch = read_file(path)

    assert (batch.dataset, batch.symbol) == (Dataset.FUNDING, "BTC/USDT:USDT")
    assert list(batch.frame["funding_rate"]) == list(raw["open"].iloc[:10])


# --- inference and overrides -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hints"),
    [
        ("BTC_USDT-1h.feather", NameHints("BTC/USDT", "1h", Dataset.CANDLES)),
        ("ETH_USDT-15m.parquet", NameHints("ETH/USDT", "15m", Dataset.CANDLES)),
        ("BTC_USDT_USDT-1h-futures.feather", NameHints("BTC/USDT:USDT", "1h", Dataset.CANDLES)),
        (
            "1000SHIB_USDT_USDT-4h-futures.feather",
            NameHints("1000SHIB/USDT:USDT", "4h", Dataset.CANDLES),
        ),
        (
            "BTC_USDT_USDT-1h-mark.feather",
            NameHints("BTC/USDT:USDT", "1h", Dataset.CANDLES, "mark"),
        ),
        (
            "BTC_USDT_USDT-1h-funding_rate.feather",
            NameHints("BTC/USDT:USDT", None, Dataset.FUNDING),
        ),
        ("prices.csv", NameHints()),
        ("fng.csv", NameHints()),
    ],
)
def test_infer_from_freqtrade_names(name: str, hints: NameHints) -> None:
    assert infer_from_name(name) == hints


def test_mark_candles_get_their_own_source_label(shared_data: Path) -> None:
    path = shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-mark.feather"

    batch = read_file(path, source_label="archive")

    assert batch.source == "archive:mark"


def test_explicit_symbol_and_timeframe_win_over_the_name(shared_data: Path, tmp_path: Path) -> None:
    # hourly candles in a file whose name says 4h (the data's own spacing must agree)
    path = tmp_path / "BTC_USDT-4h.feather"
    shutil.copy(shared_data / DAISY_BTC, path)

    batch = only_batch(FileSource(path, symbol="XBT/USD", timeframe="1h", source_label="mine"))

    assert (batch.source, batch.symbol, batch.timeframe) == ("mine", "XBT/USD", "1h")
    assert set(batch.frame["symbol"]) == {"XBT/USD"}
    assert set(batch.frame["timeframe"]) == {"1h"}


def test_explicit_dataset_wins_over_the_name(shared_data: Path) -> None:
    path = (
        shared_data / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-funding_rate.feather"
    )

    batch = read_file(path, dataset="candles", timeframe="8h")

    assert (batch.dataset, batch.symbol, batch.timeframe) == (
        Dataset.CANDLES,
        "BTC/USDT:USDT",
        "8h",
    )
    assert_normalized(batch.frame, Dataset.CANDLES)


def test_explicit_funding_dataset_reads_a_freqtrade_frame_by_its_open_column(
    shared_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "rates.parquet"
    freqtrade_slice(shared_data, rows=3).to_parquet(path, index=False)

    batch = read_file(path, dataset=Dataset.FUNDING, symbol="BTC/USDT:USDT")

    assert batch.dataset is Dataset.FUNDING
    assert list(batch.frame["funding_rate"]) == list(freqtrade_slice(shared_data, rows=3)["open"])


def test_a_candle_file_without_a_symbol_in_its_name_needs_one(
    shared_data: Path, tmp_path: Path
) -> None:
    path = tmp_path / "prices.parquet"
    freqtrade_slice(shared_data, rows=3).to_parquet(path, index=False)

    with pytest.raises(ConfigError, match="--symbol"):
        read_file(path, timeframe="1h")
    with pytest.raises(ConfigError, match="--timeframe"):
        read_file(path, symbol="BTC/USDT")


def test_an_unknown_timeframe_or_dataset_is_a_config_error(shared_data: Path) -> None:
    with pytest.raises(ConfigError, match="unknown timeframe"):
        read_file(shared_data / DAISY_BTC, timeframe="1 hour")
    with pytest.raises(ConfigError, match="unknown dataset"):
        FileSource(shared_data / DAISY_BTC, dataset="ohlcv")


# --- a timeframe the data contradicts ----------------------------------------------------------


def write_candle_csv(path: Path, frame: pd.DataFrame) -> Path:
    """A plain candle CSV (date, open, high, low, close, volume), no symbol or timeframe in it."""
    columns = ["event_ts", "open", "high", "low", "close", "volume"]
    frame.loc[:, columns].rename(columns={"event_ts": "date"}).to_csv(path, index=False)
    return path


@pytest.mark.parametrize(
    ("data", "declared"), [("15m", "1h"), ("1h", "15m"), ("1h", "4h"), ("1d", "1h")]
)
def test_candles_whose_spacing_contradicts_the_declared_timeframe_are_refused_whole(
    tmp_path: Path, data: str, declared: str
) -> None:
    # Arrange: 400 clean candles of one timeframe, declared as another
    path = write_candle_csv(tmp_path / "prices.csv", candle_frame(400, timeframe=data))
    with MarketStore(tmp_path / "market.duckdb") as store:
        before = store.table_snapshot()

        # Act
        with pytest.raises(DataValidationError) as caught:
            ingest_source(FileSource(path, symbol="BTC/USDT", timeframe=declared), store)

        # Assert: nothing stored, not even quarantine; the error names both timeframes and the file
        assert store.table_snapshot() == before
        assert len(store.query("SELECT * FROM ingest_log")) == 0
    message = str(caught.value)
    assert f"declared timeframe {declared}" in message
    assert f"{data} apart" in message
    assert caught.value.origin == str(path)
    assert str(path) in message


def test_candles_with_a_few_gaps_duplicates_and_stray_rows_still_ingest(tmp_path: Path) -> None:
    # Arrange: 400 hourly candles; 4 holes (38 bars), 3 duplicated rows, 3 rows off the hour grid
    frame = candle_frame(400)
    holes = np.r_[20:30, 100:101, 200:225, 300:302]
    kept = frame.drop(index=holes)
    stray = frame.iloc[[50, 60, 70]].assign(
        event_ts=lambda f: f["event_ts"] + pd.Timedelta(minutes=30)
    )
    messy = pd.concat([kept, kept.iloc[[5, 6, 7]], stray]).sort_values("event_ts", kind="stable")
    path = write_candle_csv(tmp_path / "prices.csv", messy)

    # Act
    with MarketStore(tmp_path / "market.duckdb") as store:
        [result] = ingest_source(FileSource(path, symbol="BTC/USDT", timeframe="1h"), store)
        stored = store.candles("BTC/USDT", "1h", source="file")

    # Assert: the hourly rows are stored, the stray rows quarantined as off-grid
    assert result.rows_added == len(kept) == 362
    assert result.exact_duplicates == 3
    assert result.rows_quarantined == 3
    assert result.gaps == 4
    assert stored["event_ts"].tolist() == kept["event_ts"].tolist()


def test_a_file_too_short_to_show_a_spacing_is_not_refused(tmp_path: Path) -> None:
    # two hourly bars with a 2-hour hole between: three timestamps decide nothing
    frame = candle_frame(5).iloc[[0, 1, 4]]
    path = write_candle_csv(tmp_path / "prices.csv", frame)

    batch = read_file(path, symbol="BTC/USDT", timeframe="1h")

    assert batch.frame["event_ts"].tolist() == frame["event_ts"].tolist()


# --- directories ---------------------------------------------------------------------------------


def test_a_directory_yields_one_batch_per_supported_file_in_name_order(shared_data: Path) -> None:
    source = FileSource(shared_data / "daisybum_cryptotradingbot/binance")

    batches = list(source.batches(cursor=None))  # type: ignore[arg-type]

    assert [(b.symbol, b.timeframe, len(b.frame)) for b in batches] == [
        ("BTC/USDT", "15m", 34_994),
        ("BTC/USDT", "1h", 8_998),
        ("ETH/USDT", "15m", 34_994),
        ("ETH/USDT", "1h", 8_998),
    ]


def test_a_directory_skips_unsupported_and_hidden_files(shared_data: Path, tmp_path: Path) -> None:
    shutil.copy(shared_data / DAISY_BTC, tmp_path / "BTC_USDT-1h.feather")
    shutil.copy(
        shared_data
        / "roshan7869_algotrading/binance/futures/BTC_USDT_USDT-1h-funding_rate.feather",
        tmp_path,
    )
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    (tmp_path / ".partial.csv").write_text("half a file", encoding="utf-8")

    batches = list(FileSource(tmp_path).batches(cursor=None))  # type: ignore[arg-type]

    assert [(b.dataset, b.symbol) for b in batches] == [
        (Dataset.CANDLES, "BTC/USDT"),
        (Dataset.FUNDING, "BTC/USDT:USDT"),
    ]


def test_an_unreadable_file_in_a_directory_does_not_stop_the_others(
    shared_data: Path, tmp_path: Path
) -> None:
    shutil.copy(shared_data / DAISY_BTC, tmp_path / "BTC_USDT-1h.feather")
    (tmp_path / "DOGE_USDT-1h.feather").write_bytes(garbage())
    (tmp_path / "ETH_USDT-1h.csv").write_text("name,age\nada,36\n", encoding="utf-8")
    shutil.copy(shared_data / "daisybum_cryptotradingbot/binance/ETH_USDT-1h.feather", tmp_path)
    yielded: list[Batch] = []

    with pytest.raises(DataValidationError) as caught:
        yielded.extend(FileSource(tmp_path).batches(cursor=None))  # type: ignore[arg-type]

    assert [b.symbol for b in yielded] == ["BTC/USDT", "ETH/USDT"]
    assert caught.value.origin == str(tmp_path / "DOGE_USDT-1h.feather")
    assert any(str(tmp_path / "ETH_USDT-1h.csv") in note for note in caught.value.__notes__)


def test_a_missing_path_or_an_empty_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        list(FileSource(tmp_path / "nowhere").batches(cursor=None))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="no supported files"):
        list(FileSource(tmp_path).batches(cursor=None))  # type: ignore[arg-type]


def test_an_unsupported_file_type_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.xlsx"
    path.write_bytes(b"PK\x03\x04")

    with pytest.raises(ConfigError, match=r"\.xlsx"):
        read_file(path)


# --- unreadable input --------------------------------------------------------------------------


def garbage(size: int = 4096) -> bytes:
    return random.Random(7).randbytes(size)


@pytest.mark.parametrize("fraction", [0.1, 0.5, 0.99])
def test_a_truncated_feather_file_is_rejected_naming_the_file(
    shared_data: Path, tmp_path: Path, fraction: float
) -> None:
    data = (shared_data / DAISY_BTC).read_bytes()
    path = tmp_path / "BTC_USDT-1h.feather"
    path.write_bytes(data[: int(len(data) * fraction)])

    with pytest.raises(DataValidationError, match="feather") as caught:
        read_file(path)
    assert caught.value.origin == str(path)
    assert str(path) in str(caught.value)


def test_a_truncated_parquet_file_is_rejected_naming_the_file(
    shared_data: Path, tmp_path: Path
) -> None:
    whole = tmp_path / "whole.parquet"
    freqtrade_slice(shared_data).to_parquet(whole, index=False)
    path = tmp_path / "BTC_USDT-1h.parquet"
    path.write_bytes(whole.read_bytes()[:2000])

    with pytest.raises(DataValidationError, match="parquet") as caught:
        read_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("suffix", [".csv", ".feather", ".parquet"])
def test_an_empty_file_is_rejected_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"BTC_USDT-1h{suffix}"
    path.touch()

    with pytest.raises(DataValidationError, match="empty") as caught:
        read_file(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("suffix", [".csv", ".feather", ".parquet"])
def test_binary_garbage_is_rejected_naming_the_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"BTC_USDT-1h{suffix}"
    path.write_bytes(garbage())

    with pytest.raises(DataValidationError) as caught:
        read_file(path)
    assert str(path) in str(caught.value)


def test_a_csv_without_a_close_column_names_it(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text("date,open,high,low,volume\n2024-01-01 00:00:00,1,2,0.5,3\n", encoding="utf-8")

    with pytest.raises(DataValidationError, match=r"missing columns \['close'\]") as caught:
        read_file(path)
    assert str(path) in str(caught.value)


def test_a_csv_with_unrelated_columns_lists_what_is_missing(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text("name,age\nada,36\n", encoding="utf-8")

    with pytest.raises(DataValidationError, match="missing columns") as caught:
        read_file(path)
    message = str(caught.value)
    assert "open" in message and "date" in message and str(path) in message


def test_a_time_column_without_any_readable_timestamp_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        "date,open,high,low,close,volume\nyesterday,1,2,0.5,1.5,3\nnoon,1,2,0.5,1.5,3\n",
        encoding="utf-8",
    )

    with pytest.raises(DataValidationError, match="timestamps") as caught:
        read_file(path)
    assert caught.value.field == "date"
    assert str(path) in str(caught.value)


def test_a_price_column_without_any_number_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        "date,open,high,low,close,volume\n2024-01-01,1,2,0.5,n/a?,3\n2024-01-02,1,2,0.5,-,3\n",
        encoding="utf-8",
    )

    with pytest.raises(DataValidationError) as caught:
        read_file(path)
    assert caught.value.field == "close"


def test_row_level_problems_pass_through_for_the_validator(tmp_path: Path) -> None:
    path = tmp_path / "BTC_USDT-1h.csv"
    path.write_text(
        "date,open,high,low,close,volume\n"
        "2024-01-01 00:00:00,10,11,9,,1\n"  # missing close
        "2024-01-01 01:00:00,-10,11,9,10,1\n"  # negative price
        "2024-01-01 01:00:00,-10,11,9,10,1\n"  # duplicate
        "not-a-time,10,11,9,10,1\n"  # one unreadable timestamp
        "2024-01-01 03:00:00,10,11,9,oops,1\n",  # one unreadable number
        encoding="utf-8",
    )

    frame = read_file(path).frame

    assert_normalized(frame, Dataset.CANDLES)
    assert len(frame) == 5
    assert frame["close"].isna().tolist() == [True, False, False, False, True]
    assert frame["open"].iloc[1] == -10.0
    assert frame["event_ts"].isna().tolist() == [False, False, False, True, False]
