"""A paper account as ``sextant paper status`` and ``sextant paper history`` show it (read-only).

Everything comes from the decisions store (opened read-only, so the service keeps writing): the
stored paper book (`PaperBroker` snapshot), the risk gate's state and the book's equity marks
per bar. Position notionals are marked at the latest close the market store holds for the book's
last bar (`serving.market.latest_closes`); while an ingest holds the market store they are
unknown (None) rather than an error.

Trades: the stored snapshot carries the book's *open* trades only (closed trades and fills are
reported bar by bar and not kept, `sextant.execution.PaperBroker`), so the history lists those;
realized PnL, fees and funding of closed trades are in the equity marks.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from serving.decisions_store import BookMark, DecisionsStore
from serving.market import latest_closes
from sextant.decision import DecisionConfig, RiskGate, SizingConfig
from sextant.execution import ExecutionConfig, PaperBroker
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["AccountReport", "PositionReport", "account_report", "history_report"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PositionReport:
    """One symbol of the book: units held, their value at the latest close, the pending order."""

    symbol: str
    units: float
    last_close: float | None
    notional: float | None
    pending_units: float | None  # target units of the order waiting for the next open

    def to_json(self) -> dict[str, Any]:
        """The `sextant paper status --json` row."""
        return {
            "symbol": self.symbol,
            "units": self.units,
            "last_close": self.last_close,
            "notional": self.notional,
            "pending_units": self.pending_units,
        }


@dataclass(frozen=True, slots=True)
class AccountReport:
    """An account's book and gate as stored after its latest bar."""

    account: str
    last_bar_close: datetime | None  # the close of the last bar the book processed
    equity: float
    cash: float
    realized: float
    unrealized: float
    positions: tuple[PositionReport, ...]
    gate: dict[str, Any]
    decisions: int

    def to_json(self) -> dict[str, Any]:
        """The `sextant paper status --json` record."""
        return {
            "account": self.account,
            "last_bar_close": None
            if self.last_bar_close is None
            else self.last_bar_close.isoformat(),
            "equity": self.equity,
            "cash": self.cash,
            "realized": self.realized,
            "unrealized": self.unrealized,
            "trading_state": self.gate["state"],
            "gate": self.gate,
            "decisions": self.decisions,
            "positions": [p.to_json() for p in self.positions],
        }


def _gate_json(gate: RiskGate) -> dict[str, Any]:
    status = gate.status()
    return {
        "state": str(status.state),
        "halt_reasons": list(status.halt_reasons),
        "kill_switch": status.kill_switch,
        "peak_equity": status.peak_equity,
        "day_start_equity": status.day_start_equity,
        "orders_today": status.orders_today,
        "consecutive_errors": status.consecutive_errors,
    }


def account_report(
    settings: Settings,
    store: DecisionsStore,
    account: str,
    *,
    config: DecisionConfig | None = None,
    execution: ExecutionConfig | None = None,
) -> AccountReport | None:
    """The account's stored book and gate (None when nothing was recorded for it).

    ``config`` and ``execution`` must be the ones the service runs with (its defaults here).
    """
    config = config or DecisionConfig(sizing=SizingConfig(timeframe=settings.timeframe))
    execution = execution or ExecutionConfig()
    with store.snapshot():
        state = store.account_state(account)
        decisions = store.count(account=account)
    if state is None:
        return None
    gate = state.risk_gate(config.risk) or RiskGate(config.risk)
    if state.portfolio is None:  # a gate change before the first decision: no book yet
        return AccountReport(
            account, None, execution.initial_equity, execution.initial_equity, 0.0, 0.0, (),
            _gate_json(gate), decisions,
        )  # fmt: skip
    broker = PaperBroker.from_snapshot(state.portfolio, execution)
    bar = timeframe_to_timedelta(settings.timeframe)
    last_close = None if broker.last_bar_open is None else broker.last_bar_open + bar
    closes = _closes(settings, broker.symbols, last_close)
    units, pending = broker.units(), broker.pending_orders()
    positions = tuple(
        PositionReport(
            symbol=symbol,
            units=units[symbol],
            last_close=closes.get(symbol),
            notional=None if symbol not in closes else units[symbol] * closes[symbol],
            pending_units=pending.get(symbol),
        )
        for symbol in broker.symbols
    )
    snapshot = state.portfolio
    return AccountReport(
        account=account,
        last_bar_close=last_close,
        equity=broker.equity,
        cash=float(snapshot["cash"]),
        realized=float(snapshot["realized"]),
        unrealized=float(snapshot["unrealized"]),
        positions=positions,
        gate=_gate_json(gate),
        decisions=decisions,
    )


def history_report(
    store: DecisionsStore,
    account: str,
    *,
    limit: int | None = None,
    execution: ExecutionConfig | None = None,
) -> tuple[list[BookMark], list[dict[str, Any]]]:
    """The account's equity marks (oldest first, the latest ``limit``) and its open trades."""
    with store.snapshot():
        marks = store.marks(account, limit=limit)
        state = store.account_state(account)
    trades: list[dict[str, Any]] = []
    if state is not None and state.portfolio is not None:
        broker = PaperBroker.from_snapshot(state.portfolio, execution or ExecutionConfig())
        frame = broker.trades()
        for row in frame.to_dict(orient="records"):
            trades.append({str(k): _plain(v) for k, v in row.items()})
    return marks, trades


def _closes(
    settings: Settings, symbols: tuple[str, ...], last_close: datetime | None
) -> dict[str, float]:
    if last_close is None:
        return {}
    try:
        return latest_closes(settings, symbols, last_close)
    except Exception:  # duckdb refuses readers while an ingest writes: notionals are unknown
        log.warning("market store %s unreadable: notionals unknown", settings.paths.market_db)
        return {}


def _plain(value: Any) -> Any:
    """A trade frame cell as a JSON value (timestamps ISO text, NaT/NaN None)."""
    if hasattr(value, "isoformat"):
        return None if value != value else value.isoformat()
    if isinstance(value, float) and math.isnan(value):
        return None
    if hasattr(value, "item"):
        return value.item()
    return value
