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
from features.vectors import write_service_vectors
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
    write_service_vectors(features_dir)


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
    """Online read latency of one symbol's service (array, DataFrame, per feature); a 4k-row frame."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp) / "home")
        write_tables(settings.paths.features_dir)
        store = FeastStore(settings)
        store.materialize()

        # the serving path: the service's features as a float matrix, ready for the model
        p50, p99 = latency_ms(lambda: store.online_array(SERVICE, [SYMBOLS[0]]))
        # the same read packaged as a pandas DataFrame (pandas costs about 0.4 ms of it)
        frame50, frame99 = latency_ms(lambda: store.online_features(SERVICE, [SYMBOLS[0]]))
        # The same service read feature by feature from the three kind views (Feast's service
        # read, what online_array replaced with the packed vector view): a reference figure
        per50, per99 = latency_ms(lambda: store.online_per_feature(SERVICE, [SYMBOLS[0]]))

        first, last = START + pd.Timedelta(hours=1), START + pd.Timedelta(hours=BARS)

        def frame() -> None:
            built = store.training_frame(SERVICE, SYMBOLS, first, last)
            assert len(built) == len(SYMBOLS) * BARS, len(built)

        training_s, _ = best_of(3, frame)
    return [
        Figure("feast_online_read_p50", p50, "ms", "< 0.5 ms"),
        Figure("feast_online_read_p99", p99, "ms", "< 1 ms"),
        Figure("feast_online_read_frame_p50", frame50, "ms", "reference"),
        Figure("feast_online_read_frame_p99", frame99, "ms", "reference"),
        Figure("feast_online_read_per_feature_p50", per50, "ms", "reference"),
        Figure("feast_online_read_per_feature_p99", per99, "ms", "reference"),
        Figure("feast_training_frame_4k_rows", training_s, "s", "< 2 s"),
    ]
