"""The explainer every interface uses: LLM when configured, the offline narrative otherwise.

`ExplainService` answers the three kinds of question (`explain` a decision, an anomaly or the
market) and the trade-review chat (`chat`), and stores every answer in the decisions store with
its model, tokens, latency, grounding result and trace id (`serving.decisions_store`,
``explanations``). The CLI (`sextant explain`, `sextant chat`), the service's ``POST
/v1/explain`` and ``/v1/chat`` and the review page all go through it (the service knows it only
as `serving.explain_port.Explainer`).

- **No LLM configured** (neither ``OPENAI_BASE_URL`` nor ``OPENAI_API_KEY``): the offline
  explainer (`agents.explain.offline`) and the offline chat router. The answer is checked by the
  same grounding guard as an LLM's, so ``grounded`` is measured, not assumed. An offline answer
  is recomputed on every question (it is cheap, and evidence such as a later anomaly can change
  it); identical answers are stored once (the record id is a hash of the answer).
- **LLM configured**: `agents.explain.llm_agent.LLMExplainer` over the fixed read-only tool set,
  with the offline explanation as its fallback. Grounded answers are cached by (subject id,
  question, model): asking again returns the stored record without a model call. An answer the
  guard refused is stored (flagged ``grounded=False`` with the failed claims) but not served
  from the cache, so the question is asked again next time. Each run is traced into MLflow.

The LLM explains; it never acts: the tools are read-only and nothing here writes anything but
the explanation record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

from agents.explain import offline
from agents.explain.grounding import check_grounding, evidence_symbols
from agents.explain.offline_chat import OfflineChat
from agents.explain.schema import OFFLINE_MODEL, Explanation, ExplanationRecord, Subject
from agents.tools.anomalies import find_anomaly
from agents.tools.base import ToolCall
from agents.tools.context import Evidence
from agents.tools.registry import READ_ONLY_TOOLS
from serving.decisions_store import DecisionsStore
from sextant.errors import DataValidationError
from sextant.settings import Settings

if TYPE_CHECKING:  # langchain loads in seconds: only an LLM-backed service imports it
    from agents.explain.llm_agent import LLMConfig, LLMExplainer

__all__ = ["DEFAULT_QUESTIONS", "ExplainService", "new_session_id"]

log = logging.getLogger(__name__)

DEFAULT_QUESTIONS: dict[str, str] = {
    "decision": "Why was this decision made?",
    "anomaly": "What was this anomaly?",
    "market": "How is the market right now?",
}
MAX_CHAT_SESSIONS = 256  # chat histories kept in memory (least recently started dropped)
MAX_HISTORY_TURNS = 12  # the latest turns of a chat the LLM sees
_Offline = Callable[[], tuple[Explanation, list[ToolCall]]]


@dataclass
class _Session:
    chat: OfflineChat
    history: list[tuple[Literal["user", "assistant"], str]] = field(default_factory=list)


@dataclass(frozen=True)
class _Question:
    """What the guard needs to know of a question: the symbols and dates it is about."""

    offline: _Offline
    symbols: tuple[str, ...]
    dates: tuple[date | datetime, ...]


class ExplainService:
    """Explanations and chat over one home's recorded evidence (thread-safe; one LLM call at a
    time per service). ``llm``: the settings' LLM (default), a given one, or None (offline);
    ``account``: the paper account chat questions and the portfolio default to."""

    def __init__(
        self,
        settings: Settings,
        *,
        llm: LLMConfig | Literal["settings"] | None = "settings",
        trace: bool = True,
        account: str | None = None,
    ) -> None:
        self.settings = settings
        self.evidence = Evidence(settings, account=account)
        configured = settings.openai_base_url is not None or settings.openai_api_key is not None
        self.llm_config: LLMConfig | None = None
        if llm != "settings":
            self.llm_config = llm
        elif configured:
            from agents.explain.llm_agent import LLMConfig

            self.llm_config = LLMConfig.from_settings(settings)
        self._llm: LLMExplainer[Evidence] | None = None
        if self.llm_config is not None:
            from agents.explain.llm_agent import LLMExplainer, enable_tracing

            if trace:
                enable_tracing(settings.tracking_uri)
            self._llm = LLMExplainer(READ_ONLY_TOOLS, self.evidence, self.llm_config)
        self._sessions: dict[str, _Session] = {}
        self._lock = threading.Lock()
        # one read-write connection for the answers, opened once (an open creates the schema in
        # a transaction); it also brings an older store to the current schema (explanations,
        # and the anomalies the tools read), so the lazy read-only reads find every table
        self._answers = DecisionsStore.open(settings.paths.decisions_db)

    @property
    def model(self) -> str:
        """Who answers: the LLM's model name, or ``offline``."""
        return OFFLINE_MODEL if self.llm_config is None else self.llm_config.model

    # -- questions ----------------------------------------------------------------------------

    def explain(
        self,
        subject: Literal["decision", "anomaly", "market"],
        subject_id: str,
        question: str | None = None,
    ) -> dict[str, Any]:
        """The stored record of the answer about a decision or anomaly (by id) or the market of
        a symbol (``BTC/USDT`` or ``BTC``); typed errors name an unknown id or symbol."""
        if subject not in DEFAULT_QUESTIONS:
            raise DataValidationError(
                f"cannot explain a {subject!r}: expected decision, anomaly or market",
                field="subject",
            )
        asked = (question or "").strip() or DEFAULT_QUESTIONS[subject]
        if subject == "market":
            subject_id = self.evidence.resolve_symbol(subject_id)
        kind = Subject(subject)
        if self._llm is not None:
            cached = self.evidence.decisions.cached_explanation(
                kind.value, subject_id, asked, self.model, grounded_only=True
            )
            if cached is not None:
                return cached
        about = self._question(kind, subject_id)
        record = self._answer(kind, subject_id, asked, about)
        return self._stored(record)

    def chat(self, session_id: str, message: str) -> dict[str, Any]:
        """One turn of a chat session: offline routing without an LLM, the agent with one (its
        fallback: the offline router's answer to the same message)."""
        text = message.strip()
        if not session_id.strip() or not text:
            raise DataValidationError(
                "a chat turn needs a session id and a non-empty message", field="message"
            )
        session = self._session(session_id)
        began = time.perf_counter()
        reply = session.chat.ask(text)
        calls = list(reply.tool_calls)
        answer = reply.explanation or Explanation(summary=reply.text)
        # what the question is about: the symbol it resolved to, the tickers and dates it names
        # (a reply may repeat them: "no decision at 14:00 on 2024-01-05"), and, for a reply
        # that answers nothing, the symbols this home trades (it lists them)
        symbols = {*_tickers(text), *([reply.symbol] if reply.symbol else [])}
        if not reply.answered:
            symbols |= set(self.evidence.symbols)
        dates = _dates(text)
        if self._llm is None:
            record = self._offline_record(
                Subject.CHAT,
                session_id,
                text,
                answer,
                calls,
                symbols=tuple(sorted(symbols)),
                dates=dates,
                latency_ms=(time.perf_counter() - began) * 1e3,
            )
        else:
            history = session.history[-MAX_HISTORY_TURNS:]
            got = self._llm.explain(
                text,
                fallback=lambda: (answer, calls),
                symbols=symbols,
                dates=dates,
                known_symbols=self.evidence.symbols,
                history=history,
            )
            record = got.record(subject=Subject.CHAT, subject_id=session_id, question=text)
        session.history += [("user", text), ("assistant", _plain_text(record.answer))]
        return self._stored(record)

    # -- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        """Release the stores."""
        self.evidence.close()
        self._answers.close()

    def __enter__(self) -> ExplainService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers ------------------------------------------------------------------------------

    def _question(self, kind: Subject, subject_id: str) -> _Question:
        """The offline explanation of the subject and what the guard checks names against."""
        evidence = self.evidence
        if kind is Subject.DECISION:
            record = evidence.decision(subject_id)
            return _Question(
                lambda: offline.explain_decision(evidence, subject_id),
                (str(record["symbol"]),),
                (datetime.fromisoformat(str(record["ts"])),),
            )
        if kind is Subject.ANOMALY:
            found = find_anomaly(evidence, subject_id)
            symbols = (str(found["symbol"]),) if found.get("symbol") else ()
            dates = (datetime.fromisoformat(str(found["bar_ts"])),)
            return _Question(lambda: offline.explain_anomaly(evidence, subject_id), symbols, dates)
        return _Question(lambda: offline.explain_market(evidence, subject_id), (subject_id,), ())

    def _answer(
        self,
        kind: Subject,
        subject_id: str,
        question: str,
        about: _Question,
    ) -> ExplanationRecord:
        if self._llm is None:
            began = time.perf_counter()
            answer, calls = about.offline()
            return self._offline_record(
                kind,
                subject_id,
                question,
                answer,
                calls,
                symbols=about.symbols,
                dates=about.dates,
                latency_ms=(time.perf_counter() - began) * 1e3,
            )
        got = self._llm.explain(
            question,
            fallback=about.offline,
            symbols=about.symbols,
            dates=about.dates,
            known_symbols=self.evidence.symbols,
        )
        return got.record(subject=kind, subject_id=subject_id, question=question)

    def _offline_record(
        self,
        kind: Subject,
        subject_id: str,
        question: str,
        answer: Explanation,
        calls: list[ToolCall],
        *,
        symbols: tuple[str, ...],
        dates: tuple[date | datetime, ...],
        latency_ms: float,
    ) -> ExplanationRecord:
        """An offline answer, checked by the guard like any other; its id hashes the content,
        so asking again with the same evidence stores nothing new."""
        checked = check_grounding(
            answer,
            calls,
            symbols={*symbols, *evidence_symbols(calls)},
            dates=dates,
            known_symbols=self.evidence.symbols,
        )
        content = {
            "subject": kind.value,
            "subject_id": subject_id,
            "question": question,
            "answer": answer.model_dump(mode="json"),
            "tool_calls": [c.as_dict() for c in calls],
        }
        digest = hashlib.blake2b(
            json.dumps(content, sort_keys=True, default=str).encode(), digest_size=12
        ).hexdigest()
        return ExplanationRecord(
            id=f"offline-{digest}",
            subject=kind,
            subject_id=subject_id,
            question=question,
            answer=answer,
            model=OFFLINE_MODEL,
            grounded=checked.grounded,
            failed_claims=list(checked.failed_claims),
            tool_calls=[c.as_dict() for c in calls],
            latency_ms=round(latency_ms, 3),
            created_at=datetime.now(UTC).isoformat(timespec="microseconds"),
        )

    def _stored(self, record: ExplanationRecord) -> dict[str, Any]:
        """Store the record (an offline answer already stored is returned as stored)."""
        payload = record.model_dump(mode="json")
        if record.model == OFFLINE_MODEL:
            existing = self._answers.explanation(record.id)
            if existing is not None:
                return existing
        self._answers.record_explanation(payload)
        if not record.grounded:
            log.warning(
                "explanation %s of %s %s is not grounded: %s",
                record.id,
                record.subject.value,
                record.subject_id,
                "; ".join(record.failed_claims)[:500],
            )
        return payload

    def _session(self, session_id: str) -> _Session:
        with self._lock:
            session = self._sessions.get(session_id)
            if session is None:
                if len(self._sessions) >= MAX_CHAT_SESSIONS:
                    del self._sessions[next(iter(self._sessions))]
                session = _Session(OfflineChat(self.evidence))
                self._sessions[session_id] = session
            return session


def new_session_id() -> str:
    """A fresh chat session id."""
    return uuid.uuid4().hex


_TICKER = re.compile(r"(?<![\w/])[A-Z][A-Z0-9]{1,9}(?:/[A-Z]{2,10})?(?![\w/])")
_ISO_DATE = re.compile(r"(?<!\d)\d{4}-\d{2}-\d{2}(?!\d)")


def _tickers(text: str) -> set[str]:
    """Upper-case tickers or pairs a message names (BTC, ETH/USDT; a lower-case word is not)."""
    return {match.group() for match in _TICKER.finditer(text)}


def _dates(text: str) -> tuple[date, ...]:
    """The ISO dates a message names (an impossible one is left out)."""
    found = []
    for match in _ISO_DATE.finditer(text):
        try:
            found.append(date.fromisoformat(match.group()))
        except ValueError:
            continue
    return tuple(found)


def _plain_text(answer: Explanation) -> str:
    return "\n".join([answer.summary, *answer.drivers, *answer.risk_notes])
