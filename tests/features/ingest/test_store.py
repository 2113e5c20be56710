"""Market store: idempotent upserts, conflicts never overwrite, batches are atomic, coverage is honest."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from features.ingest.batch import Batch, Dataset
from features.ingest.service import ingest_source
from features.ingest.store import MarketStore
from features.ingest.validate import Reason, validate_batch
from tests.features.ingest.factories import NOW, candle_batch, candle_frame, funding_frame


class ListSource:
    """A source that yields prepared batches (and optionally fails after them)."""

    name = "list"

    def __init__(self, batches: list[Batch], fail_with: Exception | None = None) -> None:
        self._batches = batches
        self._fail_with = fail_with

    def batches(self, cursor: object):  # type: ignore[no-untyped-def]
        yield from self._batches
        if self._fail_with is not None:
            raise self._fail_with


@pytest.fixture
def store(tmp_path: Path):  # type: ignore[no-untyped-def]
    with MarketStore(tmp_path / "market.duckdb") as s:
        yield s


def test_same_ingest_twice_gives_an_identical_store(store: MarketStore) -> None:
    frame = candle_frame(100)
    frame.loc[10, "close"] = -3.0  # one row for quarantine
    source = ListSource([candle_batch(frame)])

    first = ingest_source(source, store)
    snapshot = store.table_snapshot()
    second = ingest_source(source, store)

    assert (first[0].rows_added, first[0].rows_quarantined) == (99, 1)
    assert (second[0].rows_added, second[0].rows_quarantined) == (0, 1)
    assert store.table_snapshot() == snapshot
    assert len(store.query("SELECT * FROM ingest_log")) == 2


def test_conflicting_row_is_quarantined_and_stored_row_kept(store: MarketStore) -> None:
    frame = candle_frame(10)
    ingest_source(ListSource([candle_batch(frame)]), store)
    revised = frame.copy()
    revised.loc[5, "close"] = revised.loc[5, "close"] * 1.01
    revised.loc[5, "high"] = max(revised.loc[5, "high"], revised.loc[5, "close"])

    result = ingest_source(ListSource([candle_batch(revised)]), store)

    assert result[0].rows_added == 0 and result[0].rows_quarantined == 1
    stored = store.candles("BTC/USDT", "1h")
    assert stored["close"].iloc[5] == frame["close"].iloc[5]
    reasons = store.query("SELECT reason FROM quarantine")["reason"].tolist()
    assert reasons == [Reason.CONFLICTS_STORED.value]


def test_failed_batch_leaves_the_store_untouched(
    store: MarketStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_source(ListSource([candle_batch(candle_frame(24))]), store)
    before = store.table_snapshot()
    log_rows = len(store.query("SELECT * FROM ingest_log"))

    def broken_log(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "_log", broken_log)
    later = candle_frame(48)  # overlaps and extends: would add 24 rows
    with pytest.raises(RuntimeError, match="disk full"):
        store.write_batch(candle_batch(later), validate_batch(candle_batch(later)), run_id="r")

    assert store.table_snapshot() == before
    assert len(store.query("SELECT * FROM ingest_log")) == log_rows


def test_interrupted_source_keeps_the_batches_before_the_failure(store: MarketStore) -> None:
    frame = candle_frame(30)
    pages = [candle_batch(frame.iloc[:10]), candle_batch(frame.iloc[10:20])]
    with pytest.raises(ConnectionError):
        ingest_source(ListSource(pages, fail_with=ConnectionError("gone")), store)

    assert len(store.candles("BTC/USDT", "1h")) == 20
    last = store.last_event_ts(Dataset.CANDLES, "test", "BTC/USDT", "1h")
    assert last == frame["event_ts"].iloc[19].to_pydatetime()


def test_gaps_are_reported_not_filled(store: MarketStore) -> None:
    frame = candle_frame(48).drop(index=[10, 11, 12, 30]).reset_index(drop=True)
    result = ingest_source(ListSource([candle_batch(frame)]), store)

    assert (result[0].gaps, result[0].missing_bars) == (2, 4)
    assert len(store.candles("BTC/USDT", "1h")) == 44
    cov = {c.symbol: c for c in store.coverage()}["BTC/USDT"]
    assert (cov.rows, cov.gaps, cov.missing_bars) == (44, 2, 4)


def test_gap_at_the_joint_with_older_rows_is_reported(store: MarketStore) -> None:
    frame = candle_frame(20)
    ingest_source(ListSource([candle_batch(frame.iloc[:8])]), store)
    result = ingest_source(ListSource([candle_batch(frame.iloc[11:])]), store)
    assert (result[0].gaps, result[0].missing_bars) == (1, 3)


def test_coverage_counts_quarantine_per_series(store: MarketStore) -> None:
    btc = candle_frame(10)
    eth = candle_frame(10, symbol="ETH/USDT")
    eth.loc[2, "volume"] = -1.0
    ingest_source(ListSource([candle_batch(btc), candle_batch(eth)]), store)
    funding = funding_frame(6)
    ingest_source(
        ListSource(
            [Batch(Dataset.FUNDING, "test", "unit", funding, symbol="BTC/USDT:USDT", now=NOW)]
        ),
        store,
    )

    coverage = {(c.dataset, c.symbol): c for c in store.coverage()}

    assert coverage[("candles", "ETH/USDT")].quarantined == 1
    assert coverage[("candles", "ETH/USDT")].rows == 9
    assert coverage[("candles", "BTC/USDT")].quarantined == 0
    assert coverage[("funding", "BTC/USDT:USDT")].rows == 6
    assert (
        coverage[("funding", "BTC/USDT:USDT")].first_ts
        == funding["event_ts"].iloc[0].to_pydatetime()
    )


def test_quarantine_record_keeps_the_rejected_values(store: MarketStore) -> None:
    frame = candle_frame(5)
    frame.loc[2, "close"] = -7.5
    ingest_source(ListSource([candle_batch(frame, origin="/data/x.feather")]), store)

    row = store.query("SELECT * FROM quarantine").iloc[0]

    assert row["reason"] == Reason.NON_POSITIVE_PRICE.value
    assert row["origin"] == "/data/x.feather"
    assert '"close":-7.5' in row["record"]
    assert row["event_ts"] == frame["event_ts"].iloc[2]


def test_read_only_store_on_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    from sextant.errors import DataValidationError

    with pytest.raises(DataValidationError, match="does not exist yet"):
        MarketStore(tmp_path / "nope.duckdb", read_only=True)


def test_timestamps_round_trip_as_utc(store: MarketStore) -> None:
    frame = candle_frame(3)
    ingest_source(ListSource([candle_batch(frame)]), store)
    stored = store.candles("BTC/USDT", "1h")
    assert str(stored["event_ts"].dt.tz) == "UTC"
    pd.testing.assert_series_equal(
        stored["event_ts"], frame["event_ts"], check_names=False, check_dtype=False
    )
