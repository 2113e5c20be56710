"""Pinned figures of whole backtest runs: the execution code may move, its numbers may not.

The figures were first pinned before the fills, stops, funding and accounting moved out of the
bar loop into ``sextant.execution``. A run is pinned by its discrete outcomes exactly (the trade
count, each trade's exit reason, the trading state at each bar, where every series is NaN or
infinite; an order under 1e-12 of equity counts as none) and by a weighted checksum of each numeric series (fixed pseudo-random weights, so
that any one value moving moves it) to ``CHECKSUM_RTOL`` of the series' size. Not by the bits:
numpy's float64 ``exp``/``log`` loops differ in the last places between CPUs (its AVX-512 and
AVX2 builds gave these runs' series up to 2e-13 apart, relative, with the same trades and
states), and a bit-exact digest pinned on one CPU failed on the other. A deliberate change of
the execution rules re-pins them in the same commit, saying why (``python -m`` this module
prints them).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from sextant.backtest import DECISION_FIELDS, BacktestResult, run_backtest
from sextant.decision import DecisionConfig
from sextant.decision._kernels import ACTION_NAMES
from tests.sextant.backtest.test_engine import random_inputs

CHECKSUM_RTOL = 1e-9  # of the series' weighted absolute sum: far above the CPUs' 2e-13

# pinned where the bit-exact digests of the same runs still held (numpy's AVX2 loops), and checked
# there against those digests (2a892245... and 38073e87...)
RANDOM_FIGURES: dict[str, float | str] = {
    "equity": 35333188.519082546,
    "cash": 35183915.86097202,
    "realized": -257316271.16508633,
    "unrealized": -1099.84792004707,
    "positions": 6066.5805937848245,
    "fees": 3680.1372425306527,
    "funding": -22.970013121497892,
    "decisions": 13220.435617121479,
    "trades": 898323.9022224694,
    "discrete": "e6511aa8ec3f1312daf9a8026eb5c2cde4fc1c569ae124df37fdb53188510aec",
}
BENCH_FIGURES: dict[str, float | str] = {
    "equity": 6272065484.026421,
    "cash": 6272354220.862442,
    "realized": -212060169.02763784,
    "unrealized": 84332.40497745693,
    "positions": -11109.614509750405,
    "fees": 7787.239369805275,
    "funding": 0.0,
    "decisions": 81644.78989429504,
    "trades": 2795892.3414051067,
    "discrete": "bc07dacaeb8aeefb62b56f7444fdb72fac503445a94335ecdfe5260348c3203c",
}


def _decisions(result: BacktestResult) -> np.ndarray:
    """The recorded decisions, an order under 1e-12 of equity taken as none: its action (HOLD,
    or REDUCE by 1e-15) is rounding, and the CPUs above disagreed on one such bar."""
    decisions = np.array(result.decisions, dtype=np.float64)
    fields = list(DECISION_FIELDS)
    order = decisions[..., fields.index("approved")] - decisions[..., fields.index("current")]
    negligible = np.abs(order) < 1e-12
    decisions[..., fields.index("action")][negligible] = ACTION_NAMES.index("HOLD")
    return decisions


def _series(result: BacktestResult) -> dict[str, np.ndarray]:
    return {
        "equity": result.equity.to_numpy(),
        "cash": result.cash.to_numpy(),
        "realized": result.realized.to_numpy(),
        "unrealized": result.unrealized.to_numpy(),
        "positions": result.positions.to_numpy(),
        "fees": result.fees.to_numpy(),
        "funding": result.funding.to_numpy(),
        "decisions": _decisions(result),
        "trades": result.trades.select_dtypes("number").to_numpy(dtype=np.float64),
    }


def _measured(result: BacktestResult) -> tuple[str, dict[str, tuple[float, float]]]:
    """The sha256 of the run's discrete outcomes, and per series its weighted checksum and size
    (the weighted sum of its finite values and of their magnitudes)."""
    discrete = hashlib.sha256()
    sums: dict[str, tuple[float, float]] = {}
    for name, array in _series(result).items():
        values = np.ascontiguousarray(array, np.float64).ravel()
        finite = np.isfinite(values)
        discrete.update(name.encode())
        discrete.update(np.nan_to_num(np.where(finite, 0.0, values), nan=2.0).tobytes())
        weights = np.random.default_rng(values.size).uniform(0.5, 1.5, values.size)
        kept = np.where(finite, values, 0.0)
        sums[name] = (float(kept @ weights), float(np.abs(kept) @ weights))
    discrete.update(str(len(result.trades)).encode())
    discrete.update("|".join(result.trades.reason.tolist()).encode())
    discrete.update("|".join(result.trading_state.tolist()).encode())
    return discrete.hexdigest(), sums


def run_figures(result: BacktestResult) -> dict[str, float | str]:
    """What a run is pinned by: ``discrete`` (a sha256) and each series' checksum."""
    discrete, sums = _measured(result)
    return {**{name: checksum for name, (checksum, _) in sums.items()}, "discrete": discrete}


def assert_pinned(result: BacktestResult, pinned: dict[str, float | str]) -> None:
    """The run's discrete outcomes exactly, each checksum to ``CHECKSUM_RTOL`` of its size."""
    discrete, sums = _measured(result)
    assert discrete == pinned["discrete"]
    for name, (found, size) in sums.items():
        expected = pinned[name]
        assert isinstance(expected, float)
        assert abs(found - expected) <= CHECKSUM_RTOL * size, (name, found, expected)


ACTIVE = DecisionConfig.from_dict(
    {
        "fuser": {"entry_threshold": 0.05},
        "sizing": {"kelly_fraction": 1.0, "target_annual_vol": 2.0, "max_leverage": 1.0},
        "risk": {"min_confidence": 0.0, "max_orders_per_day": 20, "halt_reset_days": 1},
    }
)


def test_random_run_digest_is_pinned() -> None:
    # Arrange: 3 symbols, 3,000 bars with gaps, stops, targets, funding and gate interventions
    inputs = random_inputs(2024, 3_000, 3, 0.02)
    # Act
    result = run_backtest(inputs, ACTIVE)
    # Assert: a run that exercises the execution paths, with the pinned figures
    assert len(result.trades) > 100
    assert set(result.trades.reason) >= {"STOP", "TAKE_PROFIT", "SIGNAL", "REVERSE"}
    assert result.funding_total != 0.0
    assert_pinned(result, RANDOM_FIGURES)


def test_bench_run_digest_is_pinned(shared_data: Path) -> None:
    # Arrange: the bench's 8 years × 2 symbols of real candles (benchmarks/backtest.py)
    from benchmarks.backtest import benchmark_inputs

    inputs = benchmark_inputs()
    assert inputs.index[0] > pd.Timestamp("2015-01-01", tz="UTC")
    # Act
    result = run_backtest(inputs, DecisionConfig())
    # Assert
    assert len(result.trades) > 0
    assert_pinned(result, BENCH_FIGURES)


if __name__ == "__main__":  # prints the figures to pin
    print(run_figures(run_backtest(random_inputs(2024, 3_000, 3, 0.02), ACTIVE)))
    from benchmarks.backtest import benchmark_inputs

    print(run_figures(run_backtest(benchmark_inputs(), DecisionConfig())))
