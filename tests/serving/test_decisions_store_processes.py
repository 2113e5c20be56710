"""The decisions store across processes: readers beside a writer, and a writer killed with -9."""

from __future__ import annotations

import json
import time
from pathlib import Path

from serving.decisions_store import DecisionsStore
from sextant.decision import TradingState
from sextant.paths import StatePaths
from tests.serving.processes import Child
from tests.serving.store_reader import consistent_read
from tests.serving.store_writer import ACCOUNT, CONFIG, SYMBOLS, acks, bars, digest

WRITER = "tests.serving.store_writer"
READER = "tests.serving.store_reader"


def test_readers_in_two_processes_see_only_whole_writes(tmp_path: Path) -> None:
    # Arrange: a writer recording bars as fast as it can, and a reader process
    home = tmp_path / "home"
    writer = Child.start(WRITER, home=home)
    reader = Child.start(READER, "--seconds", "1", home=home)
    try:
        writer.wait_for(lambda lines: len(bars(lines)) >= 5, timeout_s=60)

        # Act: both read while it writes
        counts: list[int] = []
        problems: list[str] = []
        with DecisionsStore.open(StatePaths(home).decisions_db, readonly=True) as store:
            deadline = time.monotonic() + 1.0
            while time.monotonic() < deadline:
                count, wrong = consistent_read(store)
                counts.append(count)
                problems.extend(wrong)
        assert reader.finish(timeout_s=60) == 0, reader.stderr()
    finally:
        writer.kill9()
        reader.kill9()  # a no-op once it has finished
    written = bars(writer.lines)

    # Assert: no error, no partial write seen, and the writer kept going meanwhile
    report = json.loads(reader.lines[-1])
    assert report["errors"] == [] and problems == []
    assert report["reads"] > 10 and len(counts) > 10
    assert counts[-1] > counts[0] and report["counts"][-1] > report["counts"][0]
    assert len(written) > 10 and written[-1][1] == "ACTIVE"


def test_kill_9_loses_no_acknowledged_decision_and_a_halted_gate_stays_halted(
    tmp_path: Path,
) -> None:
    # Arrange: a writer whose gate goes HALTED at bar 5 and that keeps recording after it
    home = tmp_path / "home"
    writer = Child.start(WRITER, "--halt-at-bar", "5", home=home)
    lines = writer.wait_for(
        lambda lines: sum(state == "HALTED" for _, state, _ in bars(lines)) >= 20, timeout_s=60
    )

    # Act: kill -9 mid-run, then reopen the store as a restarted process would
    writer.kill9()
    acknowledged = acks(writer.lines)
    with DecisionsStore.open(StatePaths(home).decisions_db) as store:
        stored = {ident: store.get(ident) for ident in acknowledged}
        state = store.account_state(ACCOUNT)
        count = store.count(account=ACCOUNT)

    # Assert: every acknowledged decision is there, byte for byte; the gate is HALTED
    assert [state for _, state, _ in bars(lines)][4:6] == ["ACTIVE", "HALTED"]
    assert len(acknowledged) >= 2 * 25
    missing = [ident for ident, record in stored.items() if record is None]
    assert missing == []
    changed = [i for i, record in stored.items() if digest(record or {}) != acknowledged[i]]
    assert changed == []
    assert count >= len(acknowledged) and count % len(SYMBOLS) == 0
    assert state is not None and state.portfolio is not None
    assert state.portfolio["decisions_recorded"] == count
    gate = state.risk_gate(CONFIG.risk)
    assert gate is not None and gate.state is TradingState.HALTED
    assert "MAX_DRAWDOWN" in gate.status().halt_reasons

    # Act: restart the writer; it resumes after the last stored bar from the stored state
    resumed = Child.start(WRITER, "--resume", "--bars", "3", home=home)
    assert resumed.finish(timeout_s=60) == 0, resumed.stderr()

    # Assert: still HALTED from its first decision on, and flat
    first_bar = state.portfolio["bar"] + 1
    assert resumed.lines[0] == f"START {first_bar} HALTED"
    assert bars(resumed.lines) == [(first_bar + i, "HALTED", count + 2 * (i + 1)) for i in range(3)]
    with DecisionsStore.open(StatePaths(home).decisions_db, readonly=True) as store:
        newest = store.latest(len(SYMBOLS), account=ACCOUNT)
    assert {r["target_fraction"] for r in newest} == {0.0}
    assert {r["trading_state"] for r in newest} == {"HALTED"}
