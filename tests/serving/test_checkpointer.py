"""The background checkpointer folds the WAL into the database while a writer keeps writing."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from serving.checkpointer import Checkpointer
from serving.decisions_store import DecisionsStore
from sextant.decision import RiskGate
from sextant.paths import StatePaths
from tests.serving.store_writer import ACCOUNT, CONFIG
from tests.serving.test_decisions_store import make_decision


def test_the_wal_is_folded_in_the_background_and_every_write_stays_readable(
    tmp_path: Path,
) -> None:
    db = StatePaths(tmp_path / "home").decisions_db
    with DecisionsStore.open(db) as store:
        gate = RiskGate(CONFIG.risk)
        store.record([make_decision("BTC/USDT", 0, gate)], account=ACCOUNT, gate=gate)
        store.checkpoint()
        folded = db.stat().st_size
        # well under SQLite's own checkpoint threshold: these stay in the WAL
        for bar in range(1, 40):
            store.record([make_decision("BTC/USDT", bar, gate)], account=ACCOUNT, gate=gate)
        assert db.stat().st_size == folded

        with Checkpointer(db, interval_s=0.05) as checkpointer:
            deadline = time.monotonic() + 10
            bar = 100
            while checkpointer.rounds < 2 and time.monotonic() < deadline:
                # the writer goes on meanwhile (a checkpoint blocks no writer)
                bar += 1
                store.record(
                    [make_decision("ETH/USDT", bar, gate)], account=f"{ACCOUNT}-2", gate=gate
                )
                time.sleep(0.01)
        assert checkpointer.rounds >= 2
        assert db.stat().st_size > folded  # the decisions' pages are in the database file now
        assert store.count(account=ACCOUNT) == 40


def test_the_interval_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="interval_s"):
        Checkpointer(tmp_path / "decisions.sqlite", interval_s=0)
