"""`features build`: tables per view, data tests on what was written, incremental per symbol."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import build_features, view_path
from features.definitions import (
    FEATURE_VIEWS,
    FEATURES,
    SERVICE_VECTOR_VIEWS,
    Kind,
    by_name,
    max_warmup,
    service_features,
    vector_layout,
)
from features.ingest.batch import Batch, Dataset
from features.ingest.service import ingest_source
from features.ingest.store import MarketStore
from sextant.errors import DataValidationError
from sextant.settings import Settings, load_settings
from tests.features.conftest import SampleMarket, bars_since_gap

HOUR = pd.Timedelta(hours=1)


@pytest.fixture
def settings(sample_market: SampleMarket, tmp_path: Path) -> Settings:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(sample_market.db, home / "market.duckdb")
    return load_settings(home=home)


def read_views(settings: Settings) -> dict[Kind, pd.DataFrame]:
    return {
        kind: pd.read_parquet(view_path(settings.paths.features_dir, view))
        for kind, view in FEATURE_VIEWS.items()
    }


def test_built_tables_pass_the_data_tests(settings: Settings, sample_market: SampleMarket) -> None:
    report = build_features(settings)

    tables = read_views(settings)
    assert sorted(report.rebuilt) == ["BTC/USDT", "ETH/USDT"]
    expected_rows = sum(len(c) - max_warmup() for c in sample_market.candles.values())
    for kind, table in tables.items():
        names = [f.name for f in FEATURES if f.kind is kind]
        assert list(table.columns) == ["symbol", "event_ts", "available_at", *names]
        assert len(table) == expected_rows
        assert not table.duplicated(["symbol", "event_ts"]).any()
        for _, rows in table.groupby("symbol"):
            assert rows["event_ts"].is_monotonic_increasing
        # time-major (a reader of recent rows decodes the last row groups): by bar close, then
        # symbol
        keys = list(zip(table["available_at"], table["symbol"], strict=True))
        assert keys == sorted(keys)
        assert str(table["available_at"].dt.tz) == "UTC"
        values = table[names].to_numpy(dtype=float)
        if kind is not Kind.ALT:
            # null only within a feature's warm-up after a gap (the sample misses one bar)
            for symbol, rows in table.groupby("symbol"):
                since_gap = bars_since_gap(sample_market.candles[str(symbol)]["event_ts"], HOUR)
                for name in names:
                    restarting = since_gap[max_warmup() :] < by_name()[name].warmup
                    column = rows[name].to_numpy(dtype=float)
                    assert np.isnan(column[restarting]).all(), (symbol, name)
                    assert np.isfinite(column[~restarting]).all(), (symbol, name)
        else:
            assert np.isfinite(values[~np.isnan(values)]).all()
    views = (*FEATURE_VIEWS.values(), *SERVICE_VECTOR_VIEWS.values())
    assert {v.view: v.rows for v in report.views} == dict.fromkeys(views, expected_rows)


def windows(frame: pd.DataFrame, names: list[str], window: int) -> np.ndarray:
    """Per row of ``frame`` (sorted by symbol, then time): its symbol's last ``window`` rows of
    ``names``, oldest first, NaN before the symbol's first row."""
    grouped = frame.groupby("symbol", sort=False)[names]
    lagged = [grouped.shift(window - 1 - k).to_numpy(dtype=float) for k in range(window)]
    return np.stack(lagged, axis=1)


def test_each_service_vector_packs_its_features_of_its_last_bars(settings: Settings) -> None:
    # Arrange
    build_features(settings)
    tables = read_views(settings)
    wide = tables[Kind.TA]
    for kind in (Kind.STAT, Kind.ALT):
        wide = wide.merge(tables[kind], on=["symbol", "event_ts", "available_at"], validate="1:1")
    # vector tables are by symbol, then time (the kind tables by time: `write_view_table`)
    wide = wide.sort_values(["symbol", "available_at"], kind="stable").reset_index(drop=True)

    for service, view in SERVICE_VECTOR_VIEWS.items():
        # Act
        packed = pd.read_parquet(view_path(settings.paths.features_dir, view))

        # Assert: same rows, same order; each vector the symbol's last `window` rows of the
        # service's features in its order, oldest first (NaN kept, and before the first bar)
        layout = vector_layout(service)
        assert packed.columns.tolist() == ["symbol", "event_ts", "available_at", "vector"]
        assert packed[["symbol", "event_ts"]].equals(wide[["symbol", "event_ts"]])
        expected = windows(wide, list(service_features(service)), layout.window)
        vectors = np.stack(packed["vector"].to_numpy())
        assert vectors.shape == (len(wide), layout.size)
        assert np.array_equal(vectors.reshape(expected.shape), expected, equal_nan=True), service


def test_unchanged_inputs_skip_and_new_candles_rebuild_only_their_symbol(
    settings: Settings,
) -> None:
    build_features(settings)
    assert build_features(settings).skipped == ["BTC/USDT", "ETH/USDT"]

    with MarketStore(settings.paths.market_db) as store:
        last = store.candles("ETH/USDT", "1h").iloc[-1]
        bar = last.to_frame().T.assign(event_ts=last["event_ts"] + pd.Timedelta(hours=1))
        bar = bar.astype({c: float for c in ("open", "high", "low", "close", "volume")}).drop(
            columns=["source", "ingested_at"]
        )
        bar["event_ts"] = pd.to_datetime(bar["event_ts"], utc=True).dt.as_unit("ns")

        class OneBar:
            name = "one-bar"

            def batches(self, cursor: object):  # type: ignore[no-untyped-def]
                yield Batch(
                    Dataset.CANDLES, "sample", "test", bar.reset_index(drop=True), "ETH/USDT", "1h"
                )

        ingest_source(OneBar(), store)

    report = build_features(settings)

    assert report.rebuilt == ["ETH/USDT"] and report.skipped == ["BTC/USDT"]
    views = (*FEATURE_VIEWS.values(), *SERVICE_VECTOR_VIEWS.values())
    assert {v.view: v.rows_added for v in report.views} == dict.fromkeys(views, 1)


def test_a_symbol_without_candles_is_named(settings: Settings) -> None:
    with pytest.raises(DataValidationError, match="no 1h candles stored for SOL/USDT"):
        build_features(settings, symbols=("SOL/USDT",))
