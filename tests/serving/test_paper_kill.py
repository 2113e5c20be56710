"""A paper-trading process killed with SIGKILL mid-run and restarted ends where the backtest ends."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from serving.decisions_store import DecisionsStore
from sextant.backtest import run_backtest
from sextant.decision import TradingState
from sextant.paths import StatePaths
from tests.serving.paper_writer import ACCOUNT, CONFIG, ERRORS, EXECUTION, inputs
from tests.serving.processes import Child

MODULE = "tests.serving.paper_writer"


def bar_lines(lines: Sequence[str]) -> list[list[str]]:
    return [line.split() for line in lines if line.startswith("BAR ")]


def test_kill_9_mid_paper_run_loses_no_bar_and_the_halted_gate_stays_halted(
    tmp_path: Path,
) -> None:
    # Arrange: the uninterrupted run, as the backtest computes it
    window = inputs()
    backtest = run_backtest(window, CONFIG, EXECUTION)
    halted_from = ERRORS[-1]
    assert backtest.trading_state.iloc[halted_from - 1] == "ACTIVE"
    assert (backtest.trading_state.iloc[halted_from:] == "HALTED").all()
    assert len(backtest.trades) > 5  # it traded before the halt
    kill_after = halted_from + 30
    # Act 1: paper-trade, SIGKILL once the bar after the halt is acknowledged
    first = Child.start(MODULE, "--pause-ms", "4", home=tmp_path)
    first.wait_for(lambda lines: any(int(b[1]) >= kill_after for b in bar_lines(lines)), 120)
    first.kill9()
    acknowledged = bar_lines(first.lines)
    # Assert 1: every acknowledged bar's decisions are stored; the stored gate is HALTED
    with DecisionsStore.open(StatePaths(tmp_path).decisions_db, readonly=True) as store:
        for bar in acknowledged:
            for ident in bar[3:]:
                assert store.get(ident) is not None, f"acknowledged {ident} lost"
        state = store.account_state(ACCOUNT)
    assert state is not None and state.trading_state is TradingState.HALTED
    assert acknowledged[-1][2] == "HALTED"
    assert first.lines[-1].startswith("BAR ")  # killed before the end
    # Act 2: restart; it resumes after the last committed bar
    second = Child.start(MODULE, home=tmp_path)
    second.wait_for(lambda lines: any(line.startswith("END ") for line in lines), 120)
    assert second.finish(timeout_s=30) == 0
    # Assert 2: resumed HALTED, right after what was acknowledged, and ends as the backtest does
    start = second.lines[0].split()
    assert start[0] == "START" and start[2] == "HALTED"
    assert int(start[1]) >= int(acknowledged[-1][1]) + 1
    assert {bar[2] for bar in bar_lines(second.lines)} == {"HALTED"}  # the restored gate's
    end = float(second.lines[-1].split()[1])
    assert end == pytest.approx(backtest.equity.iloc[-1], rel=1e-9)
    decided = int(np.sum(~np.isnan(backtest.decision_frame("approved").to_numpy())))
    with DecisionsStore.open(StatePaths(tmp_path).decisions_db, readonly=True) as store:
        assert store.count(account=ACCOUNT) == decided
