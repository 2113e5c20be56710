"""What an explanation is: the structured answer and the record kept of producing it.

``Explanation`` is the structured output the LLM must return and the offline explainer builds:
a summary, the drivers, the risk notes and citations. Each citation names the id of a tool call
made in this conversation and a dotted field of its output (`agents.tools.base.field_value`).
``ExplanationRecord`` is what is stored for every answer: which model answered (``offline`` for
the deterministic explainer), tokens, latency, the grounding result and the trace id.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["OFFLINE_MODEL", "Citation", "Explanation", "ExplanationRecord", "Subject"]

OFFLINE_MODEL = "offline"


class Subject(StrEnum):
    """What was asked about."""

    DECISION = "decision"
    ANOMALY = "anomaly"
    MARKET = "market"
    CHAT = "chat"


class Citation(BaseModel):
    """A value the answer relies on: ``field`` of the output of tool call ``tool_call_id``."""

    model_config = ConfigDict(extra="forbid")

    tool_call_id: str = Field(description="id of a tool call made in this conversation")
    field: str = Field(description="dotted path in that call's output, e.g. risk_checks.2.observed")


class Explanation(BaseModel):
    """The answer: every number in it must be a value some tool returned in this conversation."""

    model_config = ConfigDict(extra="forbid")

    summary: str = Field(description="two or three sentences answering the question")
    drivers: list[str] = Field(default_factory=list, description="what drove it, strongest first")
    risk_notes: list[str] = Field(
        default_factory=list, description="risk checks, their reason codes and figures"
    )
    citations: list[Citation] = Field(default_factory=list)


class ExplanationRecord(BaseModel):
    """One stored answer, with how it was produced and whether it passed the grounding guard."""

    model_config = ConfigDict(extra="forbid")

    id: str
    subject: Subject
    subject_id: str = Field(description="decision id, anomaly id, symbol, or chat session id")
    question: str
    answer: Explanation
    model: str = Field(description="the LLM's model name, or 'offline'")
    grounded: bool
    failed_claims: list[str] = Field(default_factory=list)
    tool_calls: list[dict[str, Any]] = Field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    trace_id: str | None = None
    created_at: str = Field(description="ISO-8601 UTC")
