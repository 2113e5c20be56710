"""Backtest: the live decision kernels replayed over history, with fills, fees and funding."""

from __future__ import annotations

from sextant.backtest.engine import (
    DECISION_FIELDS,
    STRATEGIES,
    BacktestInputs,
    BacktestResult,
    run_backtest,
    run_buy_and_hold,
    run_strategies,
)

__all__ = [
    "DECISION_FIELDS",
    "STRATEGIES",
    "BacktestInputs",
    "BacktestResult",
    "run_backtest",
    "run_buy_and_hold",
    "run_strategies",
]
