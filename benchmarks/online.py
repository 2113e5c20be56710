"""Online path: Feast reads on synthetic tables (2 symbols x 2,000 hourly bars), online latency and
training frame; one decisions-store write (a decision record with portfolio and gate state)."""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import Figure, best_of
from features.definitions import FEATURE_VIEWS, FEATURES, Kind
from features.feast_store import FeastStore
from features.vectors import write_service_vectors
from serving.decisions_store import DecisionsStore
from sextant.decision import DecisionConfig, ModelOutputs, PortfolioState, RiskGate, decide
from sextant.execution import Candle, ExecutionConfig, PaperBroker
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
        *decision_write_figures(),
    ]


# --- decisions store: one acknowledged decision write ---------------------------------------
STORE_WRITES = 2_000
STORE_WARMUP = 100
CHECKPOINT_EVERY = 100  # the service checkpoints between bars, off the decision path


def _paper_broker(config: DecisionConfig, features: dict[str, float]) -> PaperBroker:
    """A paper account long both symbols, with stops and targets (a real snapshot to store)."""
    models = ModelOutputs(p_xgb=0.7, p_lstm=0.7, garch_variance=4e-5, var_quantile=2.6)
    broker = PaperBroker(SYMBOLS, "1h", ExecutionConfig())
    bar = Candle(open=100.0, high=100.2, low=99.8, close=100.0, volume=1e6)  # a quiet bar
    first = START.to_pydatetime()
    broker.on_bar(first, dict.fromkeys(SYMBOLS, bar))
    gate = RiskGate(config.risk)
    for symbol in SYMBOLS:
        ts = first + timedelta(hours=1)
        portfolio = broker.portfolio()
        broker.submit(decide(symbol, ts, features, models, portfolio, config, gate, price=100.0))
    broker.on_bar(first + timedelta(hours=1), dict.fromkeys(SYMBOLS, bar))
    return broker


def decision_write_figures() -> list[Figure]:
    """One decision record from ``decide``, with the portfolio snapshot and the gate state, per
    transaction (``DecisionsStore.record``): p50/p99 under synchronous NORMAL (the default:
    survives kill -9) and FULL (also survives a power loss: an fsync per commit)."""
    config = DecisionConfig()
    features = {
        "rsi_14": 60.0,
        "macd_hist_pct": 0.001,
        "bb_percent_b_20": 0.5,
        "adx_14": 25.0,
        "ema_cross_12_26": 0.01,
        "donchian_breakout_20": 1.0,
        "natr_14": 0.8,
    }
    models = ModelOutputs(p_xgb=0.6, p_lstm=float("nan"), garch_variance=4e-5, var_quantile=2.6)
    broker = _paper_broker(config, features)
    assert all(units > 0 for units in broker.units().values()), "the bench account holds nothing"
    snapshot = broker.to_snapshot()
    figures: list[Figure] = []
    for synchronous in ("NORMAL", "FULL"):
        with tempfile.TemporaryDirectory() as tmp:
            store = DecisionsStore.open(Path(tmp) / "decisions.sqlite", synchronous=synchronous)
            gate = RiskGate(config.risk)
            writes, checkpoints = [], []
            for i in range(STORE_WARMUP + STORE_WRITES):
                decision = decide(
                    SYMBOLS[i % 2],
                    START.to_pydatetime() + timedelta(hours=i),
                    features,
                    models,
                    PortfolioState(100_000.0, {SYMBOLS[0]: 80_000.0}),
                    config,
                    gate,
                    price=100.0,
                    model_versions={"xgb": "3", "lstm": "2"},
                )
                began = time.perf_counter()
                store.record([decision], account="paper", portfolio=snapshot, gate=gate)
                if i >= STORE_WARMUP:
                    writes.append(time.perf_counter() - began)
                if i % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                    began = time.perf_counter()
                    store.checkpoint()
                    checkpoints.append(time.perf_counter() - began)
            store.close()
        cuts = statistics.quantiles(writes, n=100)
        name = "decision_write" if synchronous == "NORMAL" else "decision_write_full_sync"
        target = "< 0.2 ms" if synchronous == "NORMAL" else "reference"
        figures += [
            Figure(f"{name}_p50", cuts[49] * 1e3, "ms", "reference"),
            Figure(f"{name}_p99", cuts[98] * 1e3, "ms", target),
        ]
        if synchronous == "NORMAL":
            figures.append(
                Figure(
                    f"decisions_checkpoint_{CHECKPOINT_EVERY}_writes_p50",
                    statistics.median(checkpoints) * 1e3,
                    "ms",
                    "reference",
                )
            )
    return figures
