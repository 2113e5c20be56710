"""A child process that decides one symbol for an account when told to (``go`` file appears).

``python -m tests.serving.engine_worker ACCOUNT SYMBOL NOW_ISO GO_FILE WORKERS`` prints ``ready``
once its engine is loaded, then, after ``GO_FILE`` exists, one JSON line: the symbols it decided,
the ids it answered with, and how many times it had to decide again. Every worker waits, after
reading the account's state, until all ``WORKERS`` have read it: so all of them decide from the
same state and every writer but the first finds it changed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from serving.engine import DecisionEngine
from sextant.decision import DecisionConfig, RiskConfig, SizingConfig
from sextant.settings import load_settings

# permissive limits, so that the sample's quick models' signals become orders
PERMISSIVE = RiskConfig(min_confidence=0.0, var_limit=1.0, max_feature_age_bars=1)


class RacingEngine(DecisionEngine):
    """The engine, held after its state read until every worker has read the same state."""

    go: Path
    workers: int
    reads = 0

    def _book(self, account: str) -> Any:
        book = super()._book(account)
        self.reads += 1
        (self.go.parent / f"read-{os.getpid()}-{self.reads}").touch()
        while len(list(self.go.parent.glob("read-*-1"))) < self.workers:
            time.sleep(0.0005)
        return book


def main(account: str, symbol: str, now: str, go: Path, workers: int) -> None:
    settings = load_settings()
    config = DecisionConfig(sizing=SizingConfig(timeframe=settings.timeframe), risk=PERMISSIVE)
    loaded = DecisionEngine.from_settings(settings, account=account, config=config)
    engine = RacingEngine(
        settings,
        loaded.champions,
        loaded.feast,
        loaded.store,
        account=account,
        config=config,
        execution=loaded.execution,
    )
    engine.go, engine.workers = go, workers
    print("ready", flush=True)
    deadline = time.monotonic() + 60
    while not go.exists():
        if time.monotonic() > deadline:
            raise SystemExit("no go signal within 60 s")
        time.sleep(0.0005)
    batch = engine.decide([symbol], now=datetime.fromisoformat(now))
    made = [d.symbol for d in batch.made]
    ids = [r["id"] for r in batch.records]
    print(json.dumps({"made": made, "ids": ids, "retries": engine.reads - 1}), flush=True)
    engine.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4]), int(sys.argv[5]))
