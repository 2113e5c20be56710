"""Pinned digests of whole backtest runs: the execution code may move, its numbers may not.

The digests were taken before the fills, stops, funding and accounting moved out of the bar loop
into ``sextant.execution``; any change to a figure of these runs (equity, cash, positions, fees,
funding, decisions, trades) changes the digest. A deliberate change of the execution rules
re-pins them in the same commit, saying why.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from sextant.backtest import BacktestResult, run_backtest
from sextant.decision import DecisionConfig
from tests.sextant.backtest.test_engine import random_inputs

RANDOM_DIGEST = "2a8922452b1f024bd9cc6580e1925ee227f23dbeb43380534883064bf22ea151"
BENCH_DIGEST = "38073e8749647d7d0d7fa061bb47c8bdd84504f48b3c7518bde3dddf9d1f7b17"


def run_digest(result: BacktestResult) -> str:
    """sha256 over every per-bar series, the decisions and the numeric trade columns."""
    digest = hashlib.sha256()
    arrays = [
        result.equity.to_numpy(),
        result.cash.to_numpy(),
        result.realized.to_numpy(),
        result.unrealized.to_numpy(),
        result.positions.to_numpy(),
        result.fees.to_numpy(),
        result.funding.to_numpy(),
        result.decisions,
        result.trades.select_dtypes("number").to_numpy(dtype=np.float64),
    ]
    for array in arrays:
        # NaN payloads are not part of the contract: one sentinel for all of them
        digest.update(np.nan_to_num(np.ascontiguousarray(array, np.float64), nan=-7.0).tobytes())
    digest.update("|".join(result.trades.reason.tolist()).encode())
    digest.update("|".join(result.trading_state.tolist()).encode())
    return digest.hexdigest()


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
    assert run_digest(result) == RANDOM_DIGEST


def test_bench_run_digest_is_pinned(shared_data: Path) -> None:
    # Arrange: the bench's 8 years × 2 symbols of real candles (benchmarks/backtest.py)
    from benchmarks.backtest import benchmark_inputs

    inputs = benchmark_inputs()
    assert inputs.index[0] > pd.Timestamp("2015-01-01", tz="UTC")
    # Act
    result = run_backtest(inputs, DecisionConfig())
    # Assert
    assert len(result.trades) > 0
    assert run_digest(result) == BENCH_DIGEST


if __name__ == "__main__":  # prints the digests to pin
    print(run_digest(run_backtest(random_inputs(2024, 3_000, 3, 0.02), ACTIVE)))
    from benchmarks.backtest import benchmark_inputs

    print(run_digest(run_backtest(benchmark_inputs(), DecisionConfig())))
