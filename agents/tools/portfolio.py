"""Tool over the paper account: positions, equity and the risk gate's trading state."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, UnknownRecordError
from serving.paper_account import account_report

__all__ = ["PORTFOLIO", "PortfolioArgs", "portfolio"]


class PortfolioArgs(BaseModel):
    """A paper account (default: the service's)."""

    model_config = ConfigDict(extra="forbid")

    account: str | None = Field(None, min_length=1)


def portfolio(evidence: Evidence, args: PortfolioArgs) -> dict[str, Any]:
    """The account's stored book and gate, as `sextant paper status --json` reports them."""
    account = args.account or evidence.account
    report = account_report(evidence.settings, evidence.decisions, account)
    if report is None:
        raise UnknownRecordError("account", account, "nothing was recorded for it")
    return report.to_json()


PORTFOLIO: Tool[Evidence] = Tool(
    name="portfolio",
    description=(
        "The paper account after its latest bar: equity, cash, realized and unrealized PnL (in "
        "the quote currency), positions (units, last close, notional, pending order units), "
        "trading state (ACTIVE, REDUCING, HALTED) with the gate's halt reasons and kill switch."
    ),
    args_schema=PortfolioArgs,
    func=portfolio,
)
