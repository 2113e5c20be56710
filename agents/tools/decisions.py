"""Tools over the decision log: one decision as stored, a filtered list, and its risk checks."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, utc_text

__all__ = [
    "GET_DECISION",
    "LIST_DECISIONS",
    "RISK_CHECKS",
    "DecisionArgs",
    "ListDecisionsArgs",
    "decision_summary",
]

MAX_LIST = 200


class DecisionArgs(BaseModel):
    """One decision, by id."""

    model_config = ConfigDict(extra="forbid")

    decision_id: str = Field(min_length=1, description="the decision's id, e.g. 20240110T230000Z-…")


class ListDecisionsArgs(BaseModel):
    """Filters of ``list_decisions``; times are tz-aware (``since <= ts < until``)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = Field(None, description="a traded symbol or its base asset (BTC)")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    action: str | None = Field(None, description="BUY, SELL, HOLD, CLOSE or REDUCE")
    account: str | None = Field(None, description="paper account (default: the service's)")
    limit: int = Field(20, ge=1, le=MAX_LIST)


def get_decision(evidence: Evidence, args: DecisionArgs) -> dict[str, Any]:
    """The decision record exactly as stored, with its id."""
    record = evidence.decision(args.decision_id)
    return {"id": args.decision_id, **record}


def decision_summary(record: dict[str, Any]) -> dict[str, Any]:
    """The short form of a record that lists carry (id, time, symbol, what was done and why)."""
    return {
        "id": record.get("id"),
        "ts": record.get("ts"),
        "symbol": record.get("symbol"),
        "account": record.get("account"),
        "action": record.get("action"),
        "direction": record.get("direction"),
        "confidence": record.get("confidence"),
        "fused_score": record.get("fused_score"),
        "target_fraction": record.get("target_fraction"),
        "trading_state": record.get("trading_state"),
        "risk_approved": record.get("risk_approved"),
        "price": record.get("price"),
    }


def list_decisions(evidence: Evidence, args: ListDecisionsArgs) -> dict[str, Any]:
    """Decisions newest first, filtered, each in short form (``get_decision`` has the rest)."""
    symbol = None if args.symbol is None else evidence.resolve_symbol(args.symbol)
    action = None if args.action is None else args.action.strip().upper()
    account = args.account or evidence.account
    records = evidence.decisions.latest(
        args.limit, account=account, symbol=symbol, start=args.since, end=args.until, action=action
    )
    return {
        "account": account,
        "symbol": symbol,
        "since": None if args.since is None else utc_text(args.since),
        "until": None if args.until is None else utc_text(args.until),
        "action": action,
        "count": len(records),
        "decisions": [decision_summary(r) for r in records],
    }


def risk_checks(evidence: Evidence, args: DecisionArgs) -> dict[str, Any]:
    """Each risk check of the decision (name, passed, reason code, observed, limit) and the
    gate's verdict."""
    record = evidence.decision(args.decision_id)
    checks = [
        {
            "name": c.get("name"),
            "passed": c.get("passed"),
            "reason_code": c.get("reason_code"),
            "observed": c.get("observed"),
            "limit": c.get("limit"),
        }
        for c in record.get("risk_checks", [])
    ]
    failed = [c["reason_code"] for c in checks if c["passed"] is False]
    return {
        "decision_id": args.decision_id,
        "ts": record.get("ts"),
        "symbol": record.get("symbol"),
        "approved": record.get("risk_approved"),
        "trading_state": record.get("trading_state"),
        "proposed_fraction": record.get("proposed_fraction"),
        "target_fraction": record.get("target_fraction"),
        "failed": failed,
        "checks": checks,
    }


GET_DECISION: Tool[Evidence] = Tool(
    name="get_decision",
    description=(
        "The decision record as stored: time (UTC), symbol, price, action, TA features and votes, "
        "each model's output (p_xgb, p_lstm: P(up); garch_variance: next-bar variance of log "
        "returns), fused score, direction, confidence, sizing, risk checks, target fraction of "
        "equity, stop loss and take profit (prices), model versions."
    ),
    args_schema=DecisionArgs,
    func=get_decision,
)
LIST_DECISIONS: Tool[Evidence] = Tool(
    name="list_decisions",
    description=(
        "Decisions newest first (at most 200), filtered by symbol, time range [since, until) in "
        "UTC, action and account; each with id, ts, symbol, action, direction, confidence, fused "
        "score, target fraction of equity, trading state, price."
    ),
    args_schema=ListDecisionsArgs,
    func=list_decisions,
)
RISK_CHECKS: Tool[Evidence] = Tool(
    name="risk_checks",
    description=(
        "The risk gate's checks of one decision: name, passed, reason_code (UPPER_SNAKE), "
        "observed value and limit; whether the gate approved, the trading state, the proposed "
        "and target fractions of equity, and the reason codes that failed."
    ),
    args_schema=DecisionArgs,
    func=risk_checks,
)
