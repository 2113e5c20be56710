"""Data-quality detectors over a real market store: the sample ingested, then a live-like source.

Measured on the unplanted store (the sample ingested twice: the first run adds every row, the
re-import adds none), per run of each of the 6 series: quarantine_spike 0 / 12 runs,
empty_ingest 0 / 12 (file sources are not judged), series_gap 0 on funding and on the candles
the market side watches; the sample's one real candle hole per symbol is found when those
candles are not watched. The bound asserted is 0: on a clean store any finding is false.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from agents.monitoring.data_quality import (
    QuarantineConfig,
    empty_ingest,
    ingest_runs,
    narrow_series_timestamps,
    quarantine_spike,
    read_ingest_log,
    read_quarantine_reasons,
    read_series_timestamps,
    series_gap,
)
from agents.monitoring.findings import Category, Severity
from features.ingest.batch import Batch, Cursor, Dataset
from features.ingest.service import ingest_source
from features.ingest.sources.sample import SampleSource
from features.ingest.store import MarketStore
from sextant.errors import DataValidationError
from tests.agents.monitoring.planting import (
    FUNDING_SYMBOL,
    plant_hole,
    sample_candles,
    sample_funding,
)

LIVE = "exchange"  # a live-like source label (not a file source)
HOLE_FIRST = pd.Timestamp("2023-11-07 03:00", tz="UTC")
REAL_HOLE = pd.Timestamp("2023-03-24 13:00", tz="UTC")
WATCHED = {("sample", "BTC/USDT"), ("sample", "ETH/USDT")}


class ListSource:
    """A source that yields prepared batches under one label."""

    def __init__(self, name: str, batches: list[Batch]) -> None:
        self.name = name
        self._batches = batches

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        yield from self._batches


def _candle_batch(frame: pd.DataFrame, symbol: str) -> Batch:
    rows = frame.assign(symbol=symbol, timeframe="1h").reset_index(drop=True)
    return Batch(Dataset.CANDLES, LIVE, f"test://{symbol}", rows, symbol=symbol, timeframe="1h")


@dataclass(frozen=True)
class PlantedStore:
    log: pd.DataFrame
    reasons: pd.DataFrame
    candles_ts: pd.DataFrame
    funding_ts: pd.DataFrame
    spike_run: str
    empty_run: str
    first_missing_settlement: pd.Timestamp
    db: Path


def _ingest(store: MarketStore, batches: list[Batch], run_id: str) -> None:
    ingest_source(ListSource(LIVE, batches), store, run_id=run_id)


@pytest.fixture(scope="module")
def clean_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MarketStore]:
    """The sample ingested twice (the second run is a re-import that adds nothing)."""
    with MarketStore(tmp_path_factory.mktemp("clean") / "market.duckdb") as store:
        ingest_source(SampleSource(), store, run_id="sample-1")
        ingest_source(SampleSource(), store, run_id="sample-2")
        yield store


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> PlantedStore:
    """A live-like source: clean incremental runs, a run with 20 % bad rows, a run that re-sends
    only stored rows, a funding series missing two settlements, a candle series missing 6 bars."""
    db: Path = tmp_path_factory.mktemp("planted") / "market.duckdb"
    btc = sample_candles("BTC/USDT").drop(columns=["symbol", "timeframe"])
    with MarketStore(db) as store:
        _ingest(store, [_candle_batch(btc.iloc[:6000], "BTC/USDT")], "run-0")
        for k in range(5):  # clean hourly-like increments of 200 bars
            start = 6000 + 200 * k
            _ingest(
                store, [_candle_batch(btc.iloc[start : start + 200], "BTC/USDT")], f"run-{k + 1}"
            )
        bad = btc.iloc[7000:7200].copy()
        bad.iloc[::5, bad.columns.get_loc("close")] = -1.0  # 40 of 200 rows: non-positive close
        _ingest(store, [_candle_batch(bad, "BTC/USDT")], "run-spike")
        _ingest(store, [_candle_batch(btc.iloc[7000:7200], "BTC/USDT")], "run-fill")
        _ingest(store, [_candle_batch(btc.iloc[7100:7200], "BTC/USDT")], "run-empty")
        eth = plant_hole(sample_candles("ETH/USDT"), HOLE_FIRST, 6).drop(
            columns=["symbol", "timeframe"]
        )
        funding = sample_funding("BTC/USDT").drop(index=[500, 501]).reset_index(drop=True)
        first_missing = sample_funding("BTC/USDT")["event_ts"].iloc[500]
        funding_batch = Batch(
            Dataset.FUNDING, LIVE, "test://funding", funding, symbol=FUNDING_SYMBOL["BTC/USDT"]
        )
        _ingest(store, [_candle_batch(eth, "ETH/USDT"), funding_batch], "run-holes")
        return PlantedStore(
            log=read_ingest_log(store),
            reasons=read_quarantine_reasons(store),
            candles_ts=read_series_timestamps(store, "candles"),
            funding_ts=read_series_timestamps(store, "funding"),
            spike_run="run-spike",
            empty_run="run-empty",
            first_missing_settlement=first_missing,
            db=db,
        )


def _run_time(log: pd.DataFrame, run_id: str) -> datetime:
    stamp: pd.Timestamp = log.loc[log["run_id"] == run_id, "logged_at"].max()
    return stamp.to_pydatetime()


# -- recall on planted problems --------------------------------------------------------------


def test_a_run_with_a_fifth_of_its_rows_quarantined_is_a_quarantine_spike(
    planted: PlantedStore,
) -> None:
    # Act
    findings = quarantine_spike(planted.log, quarantine_reasons=planted.reasons)

    # Assert: exactly the planted run, at its time, with the reasons as evidence
    (spike,) = findings
    assert spike.kind == "quarantine_spike" and spike.category is Category.DATA
    assert spike.bar_ts == _run_time(planted.log, planted.spike_run)
    assert spike.symbol == "BTC/USDT"
    assert spike.value == pytest.approx(40 / 200)
    assert spike.threshold == pytest.approx(0.01)  # the trailing runs were clean: the floor
    assert spike.severity is Severity.CRITICAL  # 20 % >= 2 x 1 %
    assert spike.evidence["reasons"] == {"NON_POSITIVE_PRICE": 40}
    assert spike.evidence["trailing_runs"] == 6


def test_a_live_run_that_stored_nothing_while_bars_were_due_is_an_empty_ingest(
    planted: PlantedStore,
) -> None:
    # Act
    findings = empty_ingest(planted.log)

    # Assert: the re-send run; the run that filled the quarantined rows added some, so not it
    (empty,) = findings
    assert empty.kind == "empty_ingest"
    assert empty.bar_ts == _run_time(planted.log, planted.empty_run)
    stored_last = sample_candles("BTC/USDT")["event_ts"].iloc[7199]
    assert pd.Timestamp(empty.evidence["stored_last"]) == stored_last
    waited = pd.Timestamp(empty.bar_ts) - pd.Timedelta(minutes=15) - stored_last
    assert empty.value == waited // pd.Timedelta(hours=1) - 1  # bars closed since, less grace
    assert empty.severity is Severity.CRITICAL


def test_holes_in_stored_series_are_found_at_their_first_missing_row(
    planted: PlantedStore,
) -> None:
    # Act
    funding = series_gap(planted.funding_ts, dataset="funding")
    candles = series_gap(planted.candles_ts, dataset="candles")

    # Assert
    (settlements,) = funding
    assert settlements.bar_ts == planted.first_missing_settlement.to_pydatetime()
    assert settlements.value == 2 and settlements.symbol == "BTC/USDT:USDT"
    eth = [f for f in candles if f.symbol == "ETH/USDT"]
    assert [(f.bar_ts, f.value) for f in eth] == [
        (REAL_HOLE.to_pydatetime(), 1.0),
        (HOLE_FIRST.to_pydatetime(), 6.0),
    ]
    assert eth[1].severity is Severity.CRITICAL


def test_since_reports_a_hole_once_the_row_after_it_is_stored(planted: PlantedStore) -> None:
    after_real_hole = datetime(2023, 6, 1, tzinfo=UTC)
    found = series_gap(planted.candles_ts, dataset="candles", since=after_real_hole)
    assert [f.bar_ts for f in found if f.symbol == "ETH/USDT"] == [HOLE_FIRST.to_pydatetime()]


def test_reading_only_the_rows_that_close_holes_finds_the_same_gaps(planted: PlantedStore) -> None:
    # Arrange: `since` before, at, inside and after the planted holes
    moments = [
        datetime(2023, 1, 1, tzinfo=UTC),
        REAL_HOLE.to_pydatetime(),
        HOLE_FIRST.to_pydatetime(),
        HOLE_FIRST.to_pydatetime() + timedelta(hours=3),
        HOLE_FIRST.to_pydatetime() + timedelta(hours=6),
        planted.first_missing_settlement.to_pydatetime(),
        datetime(2030, 1, 1, tzinfo=UTC),
    ]
    with MarketStore(planted.db) as store:
        for dataset in ("candles", "funding"):
            whole = read_series_timestamps(store, dataset)
            for since in moments:
                # Act
                tail = read_series_timestamps(store, dataset, closing_from=since)
                # Assert: a few rows per series, and the same findings
                assert len(tail) < len(whole) or since < datetime(2023, 6, 1, tzinfo=UTC)
                expected = series_gap(whole, dataset=dataset, since=since)
                found = series_gap(tail, dataset=dataset, since=since)
                assert [f.as_record() for f in found] == [f.as_record() for f in expected]
    assert len(tail) == 0  # nothing stored after 2030


def test_narrowing_held_rows_to_a_later_span_equals_reading_it(planted: PlantedStore) -> None:
    """What a warm monitor derives from the rows it read for an earlier cutoff (and an earlier
    history start) is what the store returns for the later one: the same rows, each series'
    predecessor included, through the planted holes and past the end of the data; from rows
    read with every series' newest row before the cutoff, both forms of the later read."""
    moments = sorted(
        [
            datetime(2023, 1, 1, tzinfo=UTC),
            REAL_HOLE.to_pydatetime() - timedelta(hours=2),
            REAL_HOLE.to_pydatetime() + timedelta(hours=1),
            HOLE_FIRST.to_pydatetime() - timedelta(hours=1),
            HOLE_FIRST.to_pydatetime() + timedelta(hours=3),
            planted.first_missing_settlement.to_pydatetime(),
            datetime(2030, 1, 1, tzinfo=UTC),
        ]
    )
    wider = 0  # reads where every series' newest row adds rows
    with MarketStore(planted.db) as store:
        for dataset in ("candles", "funding"):
            for k, since in enumerate(moments):
                start = since - timedelta(days=30)
                for every in (False, True):
                    held = read_series_timestamps(
                        store, dataset, start=start, closing_from=since, every_series=every
                    )
                    for later in moments[k:]:
                        floors = (start, later - timedelta(days=20), later - timedelta(hours=1))
                        for floor, out in itertools.product(floors, {False, every}):
                            # Act
                            narrowed = narrow_series_timestamps(
                                held, start=floor, closing_from=later, every_series=out
                            )
                            # Assert
                            read = read_series_timestamps(
                                store, dataset, start=floor, closing_from=later, every_series=out
                            )
                            pd.testing.assert_frame_equal(narrowed, read)
                            if out:
                                fewer = read_series_timestamps(
                                    store, dataset, start=floor, closing_from=later
                                )
                                wider += len(read) > len(fewer)
    assert wider > 0


def test_reading_chosen_series_returns_exactly_their_rows(planted: PlantedStore) -> None:
    since = HOLE_FIRST.to_pydatetime() - timedelta(days=3)
    with MarketStore(planted.db) as store:
        every = read_series_timestamps(store, "candles", closing_from=since)
        eth = read_series_timestamps(
            store, "candles", closing_from=since, series={(LIVE, "ETH/USDT", "1h")}
        )
        none = read_series_timestamps(store, "candles", closing_from=since, series=set())
    expected = every[every["symbol"] == "ETH/USDT"].reset_index(drop=True)
    pd.testing.assert_frame_equal(eth, expected)
    assert len(eth) > 0 and none.empty and list(none.columns) == list(every.columns)


# -- false alarms on the clean store ---------------------------------------------------------


def test_a_clean_store_raises_no_data_quality_finding(clean_store: MarketStore) -> None:
    # Arrange
    log = read_ingest_log(clean_store)
    candles_ts = read_series_timestamps(clean_store, "candles")

    # Act
    spikes = quarantine_spike(log, quarantine_reasons=read_quarantine_reasons(clean_store))
    empties = empty_ingest(log)
    watched_gaps = series_gap(candles_ts, dataset="candles", watched=WATCHED)
    funding_gaps = series_gap(read_series_timestamps(clean_store, "funding"), dataset="funding")
    all_gaps = series_gap(candles_ts, dataset="candles")

    # Assert
    assert len(ingest_runs(log)) == 12
    assert (spikes, empties, watched_gaps, funding_gaps) == ([], [], [], [])
    # the sample's real holes are there when the market side does not watch those candles
    assert [(f.symbol, f.bar_ts) for f in all_gaps] == [
        ("BTC/USDT", REAL_HOLE.to_pydatetime()),
        ("ETH/USDT", REAL_HOLE.to_pydatetime()),
    ]


def test_a_file_source_is_judged_like_a_live_one_once_it_is_not_listed_as_a_file_source(
    clean_store: MarketStore,
) -> None:
    # the re-import added nothing while a year of bars was due: only file_sources excuses it
    from agents.monitoring.data_quality import EmptyIngestConfig

    log = read_ingest_log(clean_store)
    found = empty_ingest(log, config=EmptyIngestConfig(file_sources=()))
    assert sorted({f.evidence["dataset"] for f in found}) == ["candles", "fear_greed", "funding"]
    assert {f.evidence["run_id"] for f in found} == {"sample-2"}


# -- trailing reference ----------------------------------------------------------------------


def _log(rates: list[tuple[int, int]]) -> pd.DataFrame:
    start = pd.Timestamp("2024-01-01", tz="UTC")
    return pd.DataFrame(
        {
            "run_id": [f"r{i}" for i in range(len(rates))],
            "logged_at": [start + pd.Timedelta(hours=i) for i in range(len(rates))],
            "dataset": "candles",
            "source": LIVE,
            "symbol": "BTC/USDT",
            "timeframe": "1h",
            "rows_in": [n for n, _ in rates],
            "rows_added": [n - q for n, q in rates],
            "rows_quarantined": [q for _, q in rates],
            "last_event_ts": [start + pd.Timedelta(hours=i - 1) for i in range(len(rates))],
        }
    )


def test_a_series_that_always_quarantines_a_fifth_is_flagged_only_when_it_gets_worse() -> None:
    # Arrange: 20 % every run, then 100 %
    log = _log([(100, 20)] * 6 + [(100, 100)])

    # Act
    found = quarantine_spike(log, config=QuarantineConfig(ratio=4.0))

    # Assert: the first run (no history: the 1 % floor) and the all-quarantined run (>= 4 x 20 %)
    assert [f.evidence["run_id"] for f in found] == ["r0", "r6"]
    assert found[1].threshold == pytest.approx(0.8)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda f: f.drop(columns=["rows_in"]), "rows_in"),
        (lambda f: f.assign(logged_at=f["logged_at"].dt.tz_localize(None)), "logged_at"),
        (lambda f: f.assign(rows_quarantined=-1), "rows_quarantined"),
    ],
)
@pytest.mark.parametrize("detector", [quarantine_spike, empty_ingest])
def test_a_bad_ingest_log_is_a_data_validation_error_naming_the_field(
    detector: Callable[..., object],
    spoil: Callable[[pd.DataFrame], pd.DataFrame],
    field: str,
) -> None:
    with pytest.raises(DataValidationError) as caught:
        detector(spoil(_log([(100, 0)] * 3)))
    assert caught.value.field == field


def test_bad_stored_series_are_refused(planted: PlantedStore) -> None:
    shuffled = planted.funding_ts.iloc[::-1]
    with pytest.raises(DataValidationError, match="strictly increasing") as caught:
        series_gap(shuffled, dataset="funding")
    assert caught.value.field == "event_ts"
    with pytest.raises(DataValidationError, match="no grid") as caught:
        series_gap(planted.funding_ts, dataset="news")
    assert caught.value.field == "dataset"
    with pytest.raises(DataValidationError, match="lacks column"):
        series_gap(planted.funding_ts.drop(columns=["source"]), dataset="funding")
