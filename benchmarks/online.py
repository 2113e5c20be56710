"""Feast reads on synthetic tables (2 symbols x 2,000 hourly bars): online latency, training frame."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Figure, best_of
from features.definitions import FEATURE_VIEWS, FEATURES, Kind
from features.feast_store import FeastStore
from sextant.settings import load_settings

SYMBOLS = ("BTC/USDT", "ETH/USDT")
BARS = 2_000
START = pd.Timestamp("2024-01-01", tz="UTC")
SERVICE = "xgb_direction_v1"
READS = 1_000
WARMUP = 50


def write_tables(features_dir: Path, *, bars: int = BARS, seed: int = 7) -> None:
    """Feature tables in the layout `sextant features build` writes, with random values."""
    rng = np.random.default_rng(seed)
    features_dir.mkdir(parents=True, exist_ok=True)
    event_ts = pd.date_range(START, periods=bars, freq="h", tz="UTC")
    for kind in Kind:
        names = [f.name for f in FEATURES if f.kind is kind]
        frames = [
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "event_ts": event_ts,
                    "available_at": event_ts + pd.Timedelta(hours=1),
                    **{name: rng.normal(size=bars) for name in names},
                }
            )
            for symbol in SYMBOLS
        ]
        path = features_dir / f"{FEATURE_VIEWS[kind]}.parquet"
        pd.concat(frames, ignore_index=True).to_parquet(path, index=False)


def latency_ms(read: Callable[[], object]) -> tuple[float, float]:
    """p50 and p99 of ``read`` in milliseconds over READS calls after WARMUP calls."""
    for _ in range(WARMUP):
        read()
    times = []
    for _ in range(READS):
        began = time.perf_counter()
        read()
        times.append(time.perf_counter() - began)
    cuts = statistics.quantiles(times, n=100)
    return cuts[49] * 1e3, cuts[98] * 1e3


def run() -> list[Figure]:
    """Online read latency of one symbol's service (DataFrame, array, Feast alone); a 4k-row frame."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp) / "home")
        write_tables(settings.paths.features_dir)
        store = FeastStore(settings)
        store.materialize()

        p50, p99 = latency_ms(lambda: store.online_features(SERVICE, [SYMBOLS[0]]))
        array50, array99 = latency_ms(lambda: store.online_array(SERVICE, [SYMBOLS[0]]))
        # Feast's own read of the same service: what the wrappers add comes on top of it
        service = store.store.get_feature_service(SERVICE)
        rows = [{"symbol": SYMBOLS[0]}]
        raw50, raw99 = latency_ms(
            lambda: store.store.get_online_features(features=service, entity_rows=rows)
        )

        first, last = START + pd.Timedelta(hours=1), START + pd.Timedelta(hours=BARS)

        def frame() -> None:
            built = store.training_frame(SERVICE, SYMBOLS, first, last)
            assert len(built) == len(SYMBOLS) * BARS, len(built)

        training_s, _ = best_of(3, frame)
    return [
        Figure("feast_online_read_p50", p50, "ms", "< 0.5 ms"),
        Figure("feast_online_read_p99", p99, "ms", "< 1 ms"),
        Figure("feast_online_read_array_p50", array50, "ms", "< 0.5 ms"),
        Figure("feast_online_read_array_p99", array99, "ms", "< 1 ms"),
        Figure("feast_online_read_feast_only_p50", raw50, "ms", "reference"),
        Figure("feast_online_read_feast_only_p99", raw99, "ms", "reference"),
        Figure("feast_training_frame_4k_rows", training_s, "s", "< 2 s"),
    ]
