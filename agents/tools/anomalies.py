"""Tools over the monitor's anomaly records: a filtered list, and one record with its evidence."""

from __future__ import annotations

from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, UnknownRecordError, utc_text

__all__ = [
    "ANOMALIES",
    "GET_ANOMALY",
    "AnomaliesArgs",
    "AnomalyArgs",
    "anomaly_summary",
    "find_anomaly",
]

MAX_LIST = 200


class AnomaliesArgs(BaseModel):
    """Filters of ``anomalies``; times are tz-aware (``since <= bar_ts < until``)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str | None = Field(None, description="a traded symbol or its base asset (BTC)")
    since: AwareDatetime | None = None
    until: AwareDatetime | None = None
    kind: str | None = Field(None, description="e.g. volume_spike, garch_residual, missing_bar")
    limit: int = Field(20, ge=1, le=MAX_LIST)


class AnomalyArgs(BaseModel):
    """One anomaly, by id."""

    model_config = ConfigDict(extra="forbid")

    anomaly_id: str = Field(min_length=1)


def anomaly_summary(record: dict[str, Any]) -> dict[str, Any]:
    """An anomaly without its evidence (lists carry this; ``get_anomaly`` has the evidence)."""
    return {k: v for k, v in record.items() if k != "evidence"}


def anomalies(evidence: Evidence, args: AnomaliesArgs) -> dict[str, Any]:
    """Anomalies newest bar first, filtered, without their evidence."""
    symbol = None if args.symbol is None else evidence.resolve_symbol(args.symbol)
    records = evidence.decisions.anomalies(
        args.limit, kind=args.kind, symbol=symbol, start=args.since, end=args.until
    )
    return {
        "symbol": symbol,
        "kind": args.kind,
        "since": None if args.since is None else utc_text(args.since),
        "until": None if args.until is None else utc_text(args.until),
        "count": len(records),
        "anomalies": [anomaly_summary(r) for r in records],
    }


def find_anomaly(evidence: Evidence, anomaly_id: str) -> dict[str, Any]:
    """The stored anomaly record with this id (``UnknownRecordError`` naming it otherwise)."""
    record = evidence.decisions.anomaly(anomaly_id)
    if record is not None:
        return record
    raise UnknownRecordError("anomaly", anomaly_id, "list anomalies to find ids (anomalies)")


def get_anomaly(evidence: Evidence, args: AnomalyArgs) -> dict[str, Any]:
    """One anomaly record as stored, evidence included."""
    return find_anomaly(evidence, args.anomaly_id)


ANOMALIES: Tool[Evidence] = Tool(
    name="anomalies",
    description=(
        "Anomalies the monitor found, newest bar first (at most 200), filtered by symbol, kind "
        "and bar time range [since, until) in UTC: id, kind, category, symbol, bar_ts, severity, "
        "statistic, value, threshold, detail, detected_at."
    ),
    args_schema=AnomaliesArgs,
    func=anomalies,
)
GET_ANOMALY: Tool[Evidence] = Tool(
    name="get_anomaly",
    description=(
        "One anomaly as stored, with its evidence (the window of values its statistic was "
        "computed from)."
    ),
    args_schema=AnomalyArgs,
    func=get_anomaly,
)
