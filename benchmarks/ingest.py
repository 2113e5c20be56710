"""Ingest 8 years of hourly BTC candles (73k rows) from feather: read, validate, bulk insert."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks.common import SHARED_DATA, Figure, best_of
from features.ingest.service import ingest_source
from features.ingest.sources.files import FileSource
from features.ingest.store import MarketStore

BTC_8Y = SHARED_DATA / "roshan7869_algotrading" / "binance" / "BTC_USDT-1h.feather"


def run() -> list[Figure]:
    """End-to-end time into a fresh store, and the time of a second (idempotent, 0 rows) run."""
    if not BTC_8Y.exists():
        raise FileNotFoundError(f"benchmark input missing: {BTC_8Y}")

    def fresh() -> None:
        with (
            tempfile.TemporaryDirectory() as tmp,
            MarketStore(Path(tmp) / "market.duckdb") as store,
        ):
            results = ingest_source(FileSource(BTC_8Y), store)
            assert results[0].rows_added == 73_265, results[0]

    best, median = best_of(5, fresh)
    with tempfile.TemporaryDirectory() as tmp, MarketStore(Path(tmp) / "market.duckdb") as store:
        ingest_source(FileSource(BTC_8Y), store)
        again_best, _ = best_of(3, lambda: ingest_source(FileSource(BTC_8Y), store))
    return [
        Figure("ingest_feather_btc_1h_73k", best, "s", "< 3 s"),
        Figure("ingest_feather_btc_1h_73k_median", median, "s", "< 3 s"),
        Figure("ingest_feather_btc_1h_73k_rerun", again_best, "s", "< 3 s, adds 0 rows"),
    ]
