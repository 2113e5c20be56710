"""The fixed set of read-only tools: nothing outside ``READ_ONLY_TOOLS`` can be called.

The set is a tuple in code, not a plugin point: the LLM agent and the offline explainer both
take their tools from here, and a test asserts what it holds. No tool writes or places orders.
"""

from __future__ import annotations

from typing import Final

from agents.tools.anomalies import ANOMALIES, GET_ANOMALY
from agents.tools.base import Tool
from agents.tools.context import Evidence
from agents.tools.contributions import DECISION_CONTRIBUTIONS
from agents.tools.decisions import GET_DECISION, LIST_DECISIONS, RISK_CHECKS
from agents.tools.market import MARKET_CONTEXT
from agents.tools.models_info import MODEL_INFO
from agents.tools.portfolio import PORTFOLIO
from sextant.errors import DataValidationError

__all__ = ["READ_ONLY_TOOLS", "TOOL_NAMES", "UnknownToolError", "tool_by_name"]

READ_ONLY_TOOLS: Final[tuple[Tool[Evidence], ...]] = (
    GET_DECISION,
    LIST_DECISIONS,
    DECISION_CONTRIBUTIONS,
    RISK_CHECKS,
    MODEL_INFO,
    ANOMALIES,
    GET_ANOMALY,
    MARKET_CONTEXT,
    PORTFOLIO,
)
TOOL_NAMES: Final = tuple(tool.name for tool in READ_ONLY_TOOLS)
_BY_NAME: Final = {tool.name: tool for tool in READ_ONLY_TOOLS}


class UnknownToolError(DataValidationError):
    """A tool name outside the read-only set (the message names it and lists the set)."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"no read-only tool named {name!r}; the tools are {', '.join(TOOL_NAMES)}",
            field="tool",
        )


def tool_by_name(name: str) -> Tool[Evidence]:
    """The read-only tool called ``name`` (``UnknownToolError`` for any other name)."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise UnknownToolError(name) from None
