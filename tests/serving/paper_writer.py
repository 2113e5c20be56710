"""A paper-trading process: ``serving.paper.replay_recorded`` over a fixed window, saying each bar.

Run as ``python -m tests.serving.paper_writer [--pause-ms M]`` with ``SEXTANT_HOME`` set. It
paper-trades ``inputs()`` (two symbols, 400 random bars; model calls fail at bars ``ERRORS``, so
the circuit breaker halts the gate there, sticky) with ``CONFIG`` through the decisions store of
the home, resuming from what the store holds. It prints, flushed:

- ``START <first bar> <trading state>``;
- ``BAR <bar> <trading state> <id> ...`` after each bar's transaction committed (acknowledged);
- ``END <equity>`` after the final liquidation.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from pathlib import Path

import numpy as np

from serving.decisions_store import DecisionsStore, Recorded
from serving.paper import PaperStep, replay_recorded
from sextant.backtest import BacktestInputs
from sextant.decision import DecisionConfig
from sextant.execution import ExecutionConfig
from sextant.paths import StatePaths
from tests.sextant.backtest.test_engine import random_inputs

__all__ = ["ACCOUNT", "CONFIG", "ERRORS", "EXECUTION", "inputs"]

ACCOUNT = "paper"
ERRORS = (120, 121)  # two symbols: the third model error in a row (bar 121) halts the gate
CONFIG = DecisionConfig.from_dict(
    {
        "fuser": {"entry_threshold": 0.05},
        "sizing": {"kelly_fraction": 1.0, "target_annual_vol": 2.0, "max_leverage": 1.0},
        "risk": {
            "min_confidence": 0.0,
            "max_orders_per_day": 20,
            "soft_drawdown": 0.9,
            "hard_drawdown": 0.95,
            "daily_loss_limit": 0.9,
            "halt_reset_days": 0,
        },
    }
)
EXECUTION = ExecutionConfig()


def inputs() -> BacktestInputs:
    """The fixed window: 400 random bars of two symbols, model errors at ``ERRORS``."""
    window = random_inputs(5, 400, 2, 0.02)
    errors = np.zeros(window.close.shape, dtype=bool)
    errors[list(ERRORS)] = True
    return dataclasses.replace(window, model_error=errors)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pause-ms", type=float, default=0.0, help="sleep after each bar")
    args = parser.parse_args(argv)
    window = inputs()
    home = StatePaths(Path(os.environ["SEXTANT_HOME"]))
    with DecisionsStore.open(home.decisions_db) as store:
        state = store.account_state(ACCOUNT)
        first = 0
        if state is not None and state.portfolio is not None:
            first = int(window.bar_close.searchsorted(state.as_of, side="right"))
        trading = state.trading_state if state is not None else None
        print(f"START {first} {trading.value if trading else 'ACTIVE'}", flush=True)

        def acknowledged(step: PaperStep, recorded: Recorded) -> None:
            ids = " ".join(recorded.ids)
            print(f"BAR {step.bar} {step.gate.state.value} {ids}", flush=True)
            if args.pause_ms:
                time.sleep(args.pause_ms / 1e3)

        final = replay_recorded(
            window, CONFIG, EXECUTION, store, account=ACCOUNT, acknowledged=acknowledged
        )
    assert final is not None
    print(f"END {final.equity!r}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
