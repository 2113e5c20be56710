"""Training time of the three families on BTC+ETH, 2 years hourly, and the gate's latency figures."""

from __future__ import annotations

import logging
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.common import SHARED_DATA, Figure
from features.build import build_features
from features.feast_store import materialize
from features.ingest.service import ingest_source
from features.ingest.sources.files import FileSource
from features.ingest.store import MarketStore
from models.registry import LATENCY_BUDGET_MS
from models.tracking import Tracking
from models.training import TrainConfig, train_models
from sextant.settings import load_settings

SYMBOLS = ("BTC/USDT", "ETH/USDT")
ROSHAN = SHARED_DATA / "roshan7869_algotrading" / "binance"
INPUTS = [
    ROSHAN / "BTC_USDT-1h.feather",
    ROSHAN / "ETH_USDT-1h.feather",
    ROSHAN / "futures" / "BTC_USDT_USDT-1h-funding_rate.feather",
    ROSHAN / "futures" / "ETH_USDT_USDT-1h-funding_rate.feather",
    SHARED_DATA / "fear_greed" / "fng.csv",
]
START = datetime(2022, 1, 1, tzinfo=UTC)
END = datetime(2023, 12, 31, 23, tzinfo=UTC)


def run() -> list[Figure]:
    """Prepare a home (not timed), then time `train_models` per family with the default configuration."""
    logging.getLogger("models").setLevel(logging.WARNING)
    figures = []
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), symbols=SYMBOLS, candle_source="file")
        with MarketStore(settings.paths.market_db) as store:
            for path in INPUTS:
                ingest_source(FileSource(path, settings=settings), store)
        build_features(settings)
        materialize(settings)
        total = 0.0
        for family in ("garch", "xgb", "lstm"):
            started = time.perf_counter()
            (report,) = train_models(
                settings,
                TrainConfig(families=(family,), start=START, end=END),
                Tracking.from_settings(settings),
            )
            seconds = time.perf_counter() - started
            total += seconds
            figures.append(
                Figure(f"train_{family}_btc_eth_2y_1h", seconds, "s", "total of the three < 300 s")
            )
            figures.append(
                Figure(
                    f"onnx_{family}_single_row_p99",
                    report.latency_ms["p99"],
                    "ms",
                    f"< {LATENCY_BUDGET_MS[family]} ms",
                )
            )
            figures.append(
                Figure(f"onnx_{family}_single_row_p50", report.latency_ms["p50"], "ms", "reference")
            )
        figures.insert(0, Figure("train_three_families_btc_eth_2y_1h", total, "s", "< 300 s"))
    return figures
