"""Full feature build for 4 symbols × 8 years of hourly candles (the ../shared/data candles)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks.common import SHARED_DATA, Figure
from features.build import build_features
from features.ingest.service import ingest_source
from features.ingest.sources.files import FileSource
from features.ingest.store import MarketStore
from sextant.settings import load_settings

SYMBOLS = ("BTC/USDT", "ETH/USDT", "SOL/USDT", "XRP/USDT")
FILES = [
    SHARED_DATA / "roshan7869_algotrading" / "binance" / f"{s.replace('/', '_')}-1h.feather"
    for s in SYMBOLS
]
FUNDING = [
    SHARED_DATA
    / "roshan7869_algotrading"
    / "binance"
    / "futures"
    / f"{s}_USDT_USDT-1h-funding_rate.feather"
    for s in ("BTC", "ETH")
]
FNG = SHARED_DATA / "fear_greed" / "fng.csv"


def run() -> list[Figure]:
    """Ingest the inputs (not timed), then time a forced full build and an unchanged re-build."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), symbols=SYMBOLS, candle_source="file")
        with MarketStore(settings.paths.market_db) as store:
            for path in (*FILES, *FUNDING, FNG):
                ingest_source(FileSource(path, settings=settings), store)
        started = time.perf_counter()
        report = build_features(settings, force=True)
        full = time.perf_counter() - started
        started = time.perf_counter()
        build_features(settings)
        unchanged = time.perf_counter() - started
    rows = max(v.rows for v in report.views)
    return [
        Figure("features_build_4sym_8y_1h", full, "s", "< 30 s"),
        Figure("features_build_rows", rows, "rows", "= bars - warm-up, 4 symbols"),
        Figure("features_build_unchanged", unchanged, "s", "< 1 s, skips every symbol"),
    ]
