"""The serving benchmarks' 50-symbol home: each copy is its base series, lagged and scaled."""

from __future__ import annotations

import pandas as pd

from benchmarks.bench_home import BenchSource
from features.ingest.batch import Dataset
from features.ingest.sources.sample import SampleSource
from features.ingest.validate import validate_batch


class _NoCursor:
    def last_event_ts(self, *args: object) -> None:
        return None


def test_copies_are_lagged_scaled_bases_ending_together() -> None:
    symbols = ("S00/USDT", "S01/USDT", "S02/USDT", "S03/USDT")
    batches = list(BenchSource(symbols, bars=500).batches(_NoCursor()))
    base = {
        b.symbol: b.frame.set_index("event_ts")
        for b in SampleSource().batches(_NoCursor())
        if b.dataset is Dataset.CANDLES
    }
    candles = {b.symbol: b for b in batches if b.dataset is Dataset.CANDLES}
    funding = {b.symbol: b for b in batches if b.dataset is Dataset.FUNDING}
    assert sorted(candles) == list(symbols)
    assert sorted(funding) == [f"{s}:USDT" for s in symbols]
    assert {b.dataset for b in batches} == set(Dataset)
    ends = {b.frame["event_ts"].max() for b in candles.values()}
    assert len(ends) == 1  # every copy's latest bar is the same bar
    for i, symbol in enumerate(symbols):
        frame = candles[symbol].frame.set_index("event_ts")
        assert len(frame) == 500
        assert (frame["symbol"] == symbol).all()
        of = base[("BTC/USDT", "ETH/USDT")[i % 2]]
        lag = i // 2
        lagged = of["close"].shift(lag).reindex(frame.index) * (1 + i / 100)
        pd.testing.assert_series_equal(frame["close"], lagged, check_names=False)
        assert (frame["volume"] == of["volume"].shift(lag).reindex(frame.index)).all()
        # what is ingested passes the ingest's own validation
        assert validate_batch(candles[symbol]).rejected.empty
    # two copies of one base with different lags are different series
    assert not candles["S00/USDT"].frame["close"].equals(candles["S02/USDT"].frame["close"])
