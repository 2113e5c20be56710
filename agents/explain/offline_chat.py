"""Chat with no LLM: common questions routed to the read-only tools and the offline narrative.

``OfflineChat.ask`` recognises a handful of questions by their words (no model involved):

- "why did you do that on BTC?", "why did it buy ETH at 14:00?", "why?" (a decision: the one at
  that time of day, the latest for the symbol, or the one talked about last) and a decision id;
- "latest decision for ETH";
- "anomalies since 2024-01-01" (optionally for a symbol), "anomaly <id>";
- "which models are live and how good are they?";
- "how is the market (for ETH)?".

It remembers the last symbol, decision and question kind, so "and ETH?" repeats the last question
for ETH and "why?" explains the decision just shown. A symbol this home does not trade, an
unknown id, or a question it does not recognise gets a plain answer saying so (and what it can
answer). Tool call ids run on through the conversation (``offline-1``, ``offline-2``, ...), so
every citation of every answer resolves against this conversation's calls.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from agents.explain.offline import (
    explain_anomalies,
    explain_anomaly,
    explain_decision,
    explain_market,
    explain_models,
    render_text,
)
from agents.explain.schema import Explanation
from agents.tools.base import ToolCall
from agents.tools.context import Evidence, UnknownRecordError
from sextant.errors import DataValidationError, UnknownSymbolError

__all__ = ["CAPABILITIES", "ChatReply", "Intent", "OfflineChat"]

# placeholders, not examples: a reply that answers nothing states no symbol, date or number
# (the grounding guard checks every reply, this one included)
CAPABILITIES = (
    "why a decision was made (\u201cwhy did you do that on <symbol>?\u201d, \u201cwhy did it buy "
    "<symbol> at <hh:mm>?\u201d, or a decision id)",
    "the latest decision for a symbol (\u201clatest decision for <symbol>\u201d)",
    "anomalies since a date (\u201canomalies since <yyyy-mm-dd>\u201d) or one anomaly by id",
    "which models are live and how good they are",
    "how the market is for a symbol (\u201chow is the market for <symbol>?\u201d)",
)
_DECISION_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{16}\b")
_ANOMALY_ID = re.compile(r"\b\d{8}T\d{6}Z-[a-z0-9_]+-[0-9a-f]{12}\b")
_TIME_OF_DAY = re.compile(r"\b(?:at\s+)?([01]?\d|2[0-3]):([0-5]\d)\b")
_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2})?)?(?:Z|[+-]\d{2}:?\d{2})?)")
_TICKER = re.compile(r"\b([A-Za-z]{2,6}(?:/[A-Za-z]{2,6})?)\b")
# upper-case words that are not tickers
_NOT_TICKERS = frozenset(
    {"TA", "ML", "AI", "UTC", "LSTM", "XGB", "GARCH", "VAR", "OK", "PNL", "USD", "ID", "API", "LLM"}
)


class Intent(StrEnum):
    """What a question asks for."""

    WHY = "why"
    LATEST = "latest_decision"
    ANOMALIES = "anomalies"
    ANOMALY = "anomaly"
    MODELS = "models"
    MARKET = "market"
    HELP = "help"
    UNSUPPORTED = "unsupported"


@dataclass(frozen=True)
class ChatReply:
    """One answer: its text, the explanation (None when nothing was explained) and the calls."""

    text: str
    intent: Intent
    answered: bool
    explanation: Explanation | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    symbol: str | None = None
    decision_id: str | None = None


@dataclass
class _Memory:
    symbol: str | None = None
    decision_id: str | None = None
    intent: Intent | None = None
    calls: list[ToolCall] = field(default_factory=list)


class OfflineChat:
    """A multi-turn chat over one home's evidence, with no LLM."""

    def __init__(self, evidence: Evidence) -> None:
        self.evidence = evidence
        self._memory = _Memory()

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """Every tool call of the conversation so far (what citations refer to)."""
        return tuple(self._memory.calls)

    def ask(self, question: str) -> ChatReply:
        """Answer ``question`` from the tools, or say plainly why it cannot."""
        text = question.strip()
        try:
            return self._route(text)
        except UnknownSymbolError as exc:
            return self._plain(
                f"I cannot answer for {exc.symbol!r}: this home trades "
                f"{', '.join(self.evidence.symbols)}.",
                Intent.UNSUPPORTED,
            )
        except UnknownRecordError as exc:
            return self._plain(f"I found nothing for that: {exc}.", Intent.UNSUPPORTED)
        except DataValidationError as exc:
            return self._plain(f"I cannot answer that: {exc}.", Intent.UNSUPPORTED)

    # -- routing ---------------------------------------------------------------------------

    def _route(self, text: str) -> ChatReply:
        lower = text.lower()
        symbol = self._symbol(text)
        follow_up = re.fullmatch(r"(and|what about|how about)\b.*", lower) is not None
        if decision := _DECISION_ID.search(text):
            return self._why(decision.group(0))
        if anomaly := _ANOMALY_ID.search(text):
            return self._answer(Intent.ANOMALY, explain_anomaly, anomaly.group(0))
        if re.search(r"\b(help|what can you)\b", lower):
            return self._plain(_capabilities("I can answer these offline:"), Intent.HELP)
        if "anomal" in lower or "spike" in lower:
            return self._anomalies(lower, symbol)
        if re.search(r"\bmodels?\b|\blive\b|\bchampion", lower):
            return self._answer(Intent.MODELS, explain_models)
        if "market" in lower:
            return self._market(symbol)
        if re.search(r"\b(latest|last|recent)\b.*\bdecision", lower):
            return self._latest(symbol)
        if lower.startswith("why") or re.search(r"\bwhy\b", lower):
            return self._why_question(text, symbol)
        if follow_up and symbol is not None and self._memory.intent is not None:
            return self._repeat(symbol)
        return self._plain(
            _capabilities("I cannot answer that offline (no language model is configured). I can:"),
            Intent.UNSUPPORTED,
        )

    def _symbol(self, text: str) -> str | None:
        """The symbol the question names (``UnknownSymbolError`` for a ticker not traded)."""
        known = {s.upper(): s for s in self.evidence.symbols}
        known |= {s.split("/")[0].upper(): s for s in self.evidence.symbols}
        for token in _TICKER.findall(text):
            if token.upper() in known:
                return known[token.upper()]
        for token in _TICKER.findall(text):
            if token.isupper() and token not in _NOT_TICKERS:
                return self.evidence.resolve_symbol(token)  # raises, naming the ticker
        return None

    def _repeat(self, symbol: str) -> ChatReply:
        intent = self._memory.intent
        if intent == Intent.MARKET:
            return self._market(symbol)
        if intent == Intent.ANOMALIES:
            return self._anomalies("", symbol)
        return self._latest(symbol) if intent == Intent.LATEST else self._why_question("", symbol)

    def _why_question(self, text: str, symbol: str | None) -> ChatReply:
        symbol = symbol or self._memory.symbol
        when = _TIME_OF_DAY.search(text)
        if symbol is None and when is None and self._memory.decision_id is not None:
            return self._why(self._memory.decision_id)
        if when is not None:
            hour, minute = int(when.group(1)), int(when.group(2))
            day = _date(text)
            found = self._decision_at(symbol, hour, minute, day)
            if found is None:
                where = f" for {symbol}" if symbol else ""
                return self._plain(
                    f"No decision{where} is recorded at {hour:02d}:{minute:02d} UTC"
                    f"{' on ' + day.date().isoformat() if day else ''}.",
                    Intent.WHY,
                    answered=False,
                )
            return self._why(found)
        return self._latest(symbol, intent=Intent.WHY)

    def _decision_at(
        self, symbol: str | None, hour: int, minute: int, day: datetime | None
    ) -> str | None:
        """The latest decision at that time of day (on ``day`` when given)."""
        records = self.evidence.decisions.latest(2000, account=self.evidence.account, symbol=symbol)
        for record in records:
            ts = datetime.fromisoformat(str(record["ts"])).astimezone(UTC)
            if (ts.hour, ts.minute) == (hour, minute) and (day is None or ts.date() == day.date()):
                return str(record["id"])
        return None

    def _latest(self, symbol: str | None, *, intent: Intent = Intent.LATEST) -> ChatReply:
        symbol = symbol or self._memory.symbol
        found = self.evidence.decisions.latest(1, account=self.evidence.account, symbol=symbol)
        if not found:
            where = f" for {symbol}" if symbol else ""
            return self._plain(
                f"No decision is recorded{where} in account {self.evidence.account}.",
                intent,
                answered=False,
            )
        return self._why(str(found[0]["id"]), intent=intent)

    def _why(self, decision_id: str, *, intent: Intent = Intent.WHY) -> ChatReply:
        reply = self._answer(intent, explain_decision, decision_id)
        record = reply.tool_calls[0].output if reply.tool_calls else {}
        self._memory.symbol = str(record.get("symbol") or self._memory.symbol or "") or None
        self._memory.decision_id = decision_id
        return ChatReply(
            reply.text,
            reply.intent,
            reply.answered,
            reply.explanation,
            reply.tool_calls,
            self._memory.symbol,
            decision_id,
        )

    def _anomalies(self, lower: str, symbol: str | None) -> ChatReply:
        since = _date(lower)
        if "since" in lower and since is None:
            return self._plain(
                "Give the date as YYYY-MM-DD (UTC): \u201canomalies since <yyyy-mm-dd>\u201d.",
                Intent.ANOMALIES,
                answered=False,
            )
        return self._answer(Intent.ANOMALIES, explain_anomalies, since=since, symbol=symbol)

    def _market(self, symbol: str | None) -> ChatReply:
        symbol = symbol or self._memory.symbol or self.evidence.symbols[0]
        reply = self._answer(Intent.MARKET, explain_market, symbol)
        self._memory.symbol = symbol
        return reply

    # -- answers ---------------------------------------------------------------------------

    def _answer(self, intent: Intent, explain: Any, *args: Any, **kwargs: Any) -> ChatReply:
        first = len(self._memory.calls) + 1
        explanation, calls = explain(self.evidence, *args, first_call=first, **kwargs)
        self._memory.calls.extend(calls)
        self._memory.intent = intent
        return ChatReply(
            text=render_text(explanation),
            intent=intent,
            answered=True,
            explanation=explanation,
            tool_calls=tuple(calls),
            symbol=self._memory.symbol,
            decision_id=self._memory.decision_id,
        )

    def _plain(self, text: str, intent: Intent, *, answered: bool = False) -> ChatReply:
        return ChatReply(text=text, intent=intent, answered=answered, symbol=self._memory.symbol)


def _capabilities(intro: str) -> str:
    return "\n".join([intro, *(f"  - {c}" for c in CAPABILITIES)])


def _date(text: str) -> datetime | None:
    found = _DATE.search(text)
    if found is None:
        return None
    raw = found.group(1).replace(" ", "T").replace("Z", "+00:00")
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
