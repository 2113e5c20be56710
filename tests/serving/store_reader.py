"""A process that reads the decisions store while another writes it, and reports what it saw.

Run as ``python -m tests.serving.store_reader --seconds S`` with ``SEXTANT_HOME`` set. It repeats ``consistent_read`` from its first decision seen for S seconds and prints one JSON line:
``{"reads": n, "counts": [first, last], "errors": [...]}``; an error is any exception (such as
"database is locked") or a read that saw part of a write.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from serving.decisions_store import DecisionsStore
from sextant.errors import ConfigError
from sextant.paths import StatePaths
from tests.serving.store_writer import ACCOUNT, SYMBOLS

__all__ = ["consistent_read", "open_when_created"]


def consistent_read(store: DecisionsStore) -> tuple[int, list[str]]:
    """Count, account state and newest records in one view; the count and what is wrong.

    A complete write stores one decision per symbol of a bar with the portfolio that counts
    them, so in any committed state: the portfolio counts every stored decision, the count is a
    whole number of bars, and the newest bar's decisions are all there, as of the state's bar.
    """
    problems: list[str] = []
    with store.snapshot():
        count = store.count(account=ACCOUNT)
        state = store.account_state(ACCOUNT)
        newest = store.latest(len(SYMBOLS), account=ACCOUNT)
    if state is None or state.portfolio is None:
        if count:
            problems.append(f"{count} decisions but no portfolio")
        return count, problems
    if state.portfolio["decisions_recorded"] != count:
        problems.append(f"portfolio counts {state.portfolio['decisions_recorded']}, store {count}")
    if count % len(SYMBOLS):
        problems.append(f"{count} decisions is not a whole number of bars")
    if sorted(r["symbol"] for r in newest) != sorted(SYMBOLS):
        problems.append(f"newest bar holds {[r['symbol'] for r in newest]}")
    if {r["ts"] for r in newest} != {state.as_of.isoformat()}:
        problems.append(f"newest decisions at {[r['ts'] for r in newest]}, state at {state.as_of}")
    if state.gate_state is None or state.trading_state is None:
        problems.append("no gate state beside the portfolio")
    return count, problems


def open_when_created(path: Path, timeout_s: float) -> DecisionsStore:
    """Open the store read-only once its writer has created it (a reader may start first)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return DecisionsStore.open(path, readonly=True)
        except ConfigError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    home = StatePaths(Path(os.environ["SEXTANT_HOME"]))
    errors: list[str] = []
    counts: list[int] = []
    reads = 0
    # the window opens at the first decision seen (the writer may still be starting up)
    deadline = time.monotonic() + 60.0
    started = False
    with open_when_created(home.decisions_db, timeout_s=60) as store:
        while time.monotonic() < deadline:
            try:
                count, problems = consistent_read(store)
            except Exception as exc:  # report every failure, do not stop at the first
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            reads += 1
            counts.append(count)
            errors.extend(problems)
            if count and not started:
                started, deadline = True, time.monotonic() + args.seconds
    print(json.dumps({"reads": reads, "counts": counts[:1] + counts[-1:], "errors": errors[:20]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
