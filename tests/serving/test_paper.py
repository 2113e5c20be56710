"""Paper trading through ``PaperBroker`` and ``decide`` equals the backtest over the same window."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from serving.paper import PaperStep, replay
from sextant.backtest import BacktestInputs, BacktestResult, run_backtest
from sextant.decision import DecisionConfig, RiskGate
from sextant.execution import ExecutionConfig, PaperBroker
from tests.sextant.backtest.test_digest import ACTIVE
from tests.sextant.backtest.test_engine import random_inputs

EXECUTION = ExecutionConfig(taker_fee=0.0006, maker_fee=0.0001, slippage_size_k=0.5)
TOL = 1e-9


@pytest.fixture(scope="module")
def inputs() -> BacktestInputs:
    """3 symbols × 1,500 bars with gaps, funding, NaN model outputs and features."""
    return random_inputs(77, 1_500, 3, 0.02)


@pytest.fixture(scope="module")
def backtest(inputs: BacktestInputs) -> BacktestResult:
    return run_backtest(inputs, ACTIVE, EXECUTION)


def paper_run(
    inputs: BacktestInputs, config: DecisionConfig = ACTIVE
) -> tuple[PaperBroker, list[PaperStep]]:
    broker = PaperBroker(inputs.symbols, inputs.timeframe, EXECUTION)
    steps: list[PaperStep] = []
    replay(inputs, config, broker, RiskGate(config.risk), on_bar=steps.append)
    return broker, steps


def assert_frames_close(paper: pd.DataFrame, backtest: pd.DataFrame) -> None:
    assert list(paper.columns) == list(backtest.columns) and len(paper) == len(backtest)
    for column in paper.columns:
        left, right = paper[column], backtest[column]
        if pd.api.types.is_float_dtype(right):
            assert np.allclose(left, right, rtol=TOL, atol=TOL, equal_nan=True), column
        else:
            assert left.tolist() == right.tolist(), column


def test_a_paper_run_equals_the_backtest_order_for_order(
    inputs: BacktestInputs, backtest: BacktestResult
) -> None:
    # Act
    broker, steps = paper_run(inputs)
    # Assert: a run that trades, stops out, takes profit, pays funding and meets the gate
    assert len(backtest.trades) > 50 and backtest.funding_total != 0.0
    assert set(backtest.trades.reason) >= {"STOP", "TAKE_PROFIT", "SIGNAL", "REVERSE"}
    assert sum(backtest.rejections.values()) > 0
    # the same fills (bar, symbol, units, price, fee, kind) and the same trades
    assert_frames_close(broker.fills(), backtest.fills)
    assert_frames_close(broker.trades(), backtest.trades)
    # the same equity, cash, fees and funding at every bar close
    equity = np.array([step.report.equity for step in steps])
    cash = np.array([step.report.cash for step in steps])
    fees = np.array([[step.report.fees[s] for s in inputs.symbols] for step in steps])
    funding = np.array([[step.report.funding[s] for s in inputs.symbols] for step in steps])
    assert np.allclose(equity[:-1], backtest.equity.to_numpy()[:-1], rtol=TOL, atol=0)
    assert np.allclose(cash[:-1], backtest.cash.to_numpy()[:-1], rtol=TOL, atol=0)
    assert np.allclose(fees[:-1], backtest.fees.to_numpy()[:-1], rtol=TOL, atol=TOL)
    assert np.allclose(funding, backtest.funding.to_numpy(), rtol=TOL, atol=TOL)
    # after the last bar both sell what is open at its close
    assert broker.equity == pytest.approx(backtest.equity.iloc[-1], rel=TOL)
    # and the same decisions: every approved target and action
    approved = backtest.decision_frame("approved").to_numpy()
    for step in steps:
        for decision in step.decisions:
            s = inputs.symbols.index(decision.symbol)
            assert decision.target_fraction == pytest.approx(
                approved[step.bar, s], rel=TOL, abs=TOL
            )


def test_a_paper_run_resumed_from_a_snapshot_continues_identically(
    inputs: BacktestInputs, backtest: BacktestResult
) -> None:
    # Arrange: stop after bar 700, keep only what a store keeps (JSON), start again
    first = PaperBroker(inputs.symbols, inputs.timeframe, EXECUTION)
    gate = RiskGate(ACTIVE.risk)
    kept: list[PaperStep] = []
    replay(inputs.truncated(701), ACTIVE, first, gate, on_bar=kept.append, close_at_end=False)
    stored_books = json.loads(json.dumps(first.to_snapshot(), allow_nan=False))
    stored_gate = json.loads(json.dumps(gate.state_vector()))
    # Act
    broker = PaperBroker.from_snapshot(stored_books, EXECUTION)
    resumed = RiskGate.restore(ACTIVE.risk, stored_gate)
    steps: list[PaperStep] = []
    replay(inputs, ACTIVE, broker, resumed, start=701, on_bar=steps.append)
    # Assert: the later bars' equity and the final equity are the uninterrupted run's
    equity = np.array([step.report.equity for step in steps])
    assert np.allclose(equity[:-1], backtest.equity.to_numpy()[701:-1], rtol=TOL, atol=0)
    assert broker.equity == pytest.approx(backtest.equity.iloc[-1], rel=TOL)
    later = backtest.fills[backtest.fills.bar_ts > inputs.index[700]].reset_index(drop=True)
    assert_frames_close(broker.fills(), later)
