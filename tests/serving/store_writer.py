"""A process that records decisions in the decisions store, bar after bar, and says so.

Run as ``python -m tests.serving.store_writer [options]`` with ``SEXTANT_HOME`` set. Each bar
(one minute apart from ``START``) decides every symbol through ``sextant.decision.decide`` with
one ``RiskGate`` and records the batch with a portfolio snapshot and the gate in one
transaction. Only after ``record`` returned does it print, one line each and flushed:

- ``ACK <id> <digest>`` per decision: the id and a digest of the record as stored (``digest``);
- ``BAR <bar> <trading state> <decisions recorded so far>``.

It starts with ``START <first bar> <trading state>``. ``--halt-at-bar K``: equity drops 3 % at
bar K, past ``CONFIG``'s 1 % daily loss and 2 % hard drawdown, so the gate goes HALTED (sticky:
a drawdown halt waits for an operator reset). ``--resume``: continue after the latest stored bar
from the stored gate and portfolio, as a restarted service does. The kill -9 tests kill it at
any point and check what it printed against the store.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

from serving.decisions_store import DecisionsStore
from sextant.decision import (
    Decision,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    decide,
)
from sextant.paths import StatePaths
from tests.sextant.decision.conftest import BULLISH

__all__ = [
    "ACCOUNT",
    "CONFIG",
    "EQUITY",
    "FEATURES",
    "MODELS",
    "START",
    "SYMBOLS",
    "acks",
    "bar_ts",
    "bars",
    "digest",
    "snapshot",
]

ACCOUNT = "paper"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
START = datetime(2024, 3, 1, tzinfo=UTC)
EQUITY = 100_000.0
CONFIG = DecisionConfig.from_dict(
    {"risk": {"daily_loss_limit": 0.01, "soft_drawdown": 0.01, "hard_drawdown": 0.02}}
)
# every TA vote long but mean reversion, both models up: a BUY while the gate is ACTIVE
FEATURES = BULLISH
MODELS = ModelOutputs(p_xgb=0.6, p_lstm=0.6, garch_variance=4e-5, var_quantile=2.6)
PRICES = {"BTC/USDT": 60_000.0, "ETH/USDT": 3_000.0}


def bar_ts(bar: int) -> datetime:
    """Close time of bar ``bar`` (one-minute bars: a run stays inside one UTC day)."""
    return START + timedelta(minutes=bar)


def digest(record: Mapping[str, Any]) -> str:
    """Digest of a stored record's JSON (a record read back hashes the same: NaN is null)."""
    return hashlib.blake2b(orjson.dumps(record), digest_size=16).hexdigest()


def snapshot(
    bar: int,
    equity: float,
    positions: Mapping[str, float],
    recorded: int,
    decisions: list[Decision],
) -> dict[str, Any]:
    """The portfolio as this writer keeps it; ``decisions_recorded`` counts the store's rows."""
    return {
        "bar": bar,
        "cash": equity,
        "positions": dict(positions),
        "pending_orders": [
            {"symbol": d.symbol, "units": d.order_units, "stop_loss": d.stop_loss}
            for d in decisions
            if d.order_units != 0.0
        ],
        "decisions_recorded": recorded,
    }


def acks(lines: Sequence[str]) -> dict[str, str]:
    """Acknowledged decision id -> digest of its record, from a writer's output."""
    return {
        ident: value
        for _, ident, value in (line.split()[:3] for line in lines if line.startswith("ACK "))
    }


def bars(lines: Sequence[str]) -> list[tuple[int, str, int]]:
    """(bar, trading state, decisions recorded) per acknowledged bar."""
    return [
        (int(bar), state, int(recorded))
        for _, bar, state, recorded in (line.split() for line in lines if line.startswith("BAR "))
    ]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=0, help="stop after this many bars (0: never)")
    parser.add_argument("--halt-at-bar", type=int, default=-1, help="equity drops 3%% here")
    parser.add_argument("--resume", action="store_true", help="continue from the stored state")
    parser.add_argument("--pause-ms", type=float, default=0.0, help="sleep between bars")
    args = parser.parse_args(argv)

    home = StatePaths(Path(os.environ["SEXTANT_HOME"]))
    store = DecisionsStore.open(home.decisions_db)
    gate, first, recorded, positions = RiskGate(CONFIG.risk), 0, 0, dict.fromkeys(SYMBOLS, 0.0)
    state = store.account_state(ACCOUNT) if args.resume else None
    if state is not None and state.portfolio is not None:
        gate = state.risk_gate(CONFIG.risk) or gate
        first = state.portfolio["bar"] + 1
        recorded = state.portfolio["decisions_recorded"]
        positions = dict(state.portfolio["positions"])
    print(f"START {first} {gate.state}", flush=True)

    bar = first
    while args.bars <= 0 or bar < first + args.bars:
        halted = 0 <= args.halt_at_bar <= bar
        equity = EQUITY * (0.97 if halted else 1.0)
        portfolio = PortfolioState(equity, positions)
        decisions = [
            decide(
                symbol,
                bar_ts(bar),
                FEATURES,
                MODELS,
                portfolio,
                CONFIG,
                gate,
                price=PRICES[symbol],
                model_versions={"xgb": "1", "lstm": "1"},
            )
            for symbol in SYMBOLS
        ]
        for d in decisions:
            positions[d.symbol] = d.target_notional
        recorded += len(decisions)
        written = store.record(
            decisions,
            account=ACCOUNT,
            portfolio=snapshot(bar, equity, positions, recorded, decisions),
            gate=gate,
        )
        # acknowledged: record() returned after the commit
        lines = [
            f"ACK {ident} {digest({'id': ident, 'account': ACCOUNT, **d.as_record()})}"
            for ident, d in zip(written.ids, decisions, strict=True)
        ]
        lines.append(f"BAR {bar} {gate.state} {recorded}")
        print("\n".join(lines), flush=True)
        bar += 1
        if args.pause_ms:
            time.sleep(args.pause_ms / 1000)
    store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
