"""A small explainer for the review page's tests: answers built from the real stored records.

It implements `serving.explain_port.Explainer` without an LLM or the agents package: an answer
names the stored decision's action, symbol and price (or the anomaly's statistic and detail), so a
test can check that the page shows the record it asked about. Unknown ids raise the real
``agents.tools.context.UnknownRecordError`` (the app must answer 404 for it).
"""

from __future__ import annotations

import re
import threading
import uuid
from datetime import UTC, datetime
from typing import Any

from agents.tools.context import UnknownRecordError
from serving.decisions_store import DecisionsStore
from serving.explain_port import ExplainSubject
from sextant.errors import UnknownSymbolError
from sextant.settings import Settings

__all__ = ["MODEL", "StoreExplainer"]

MODEL = "review-test-explainer"
_DECISION_ID = re.compile(r"\b\d{8}T\d{6}Z-[0-9a-f]{16}\b")


class StoreExplainer:
    """Explains from the decisions store; chat sessions remember their decision and turns."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.calls: list[tuple[str, str, str | None]] = []
        self.sessions: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def _store(self) -> DecisionsStore:
        return DecisionsStore.open(self.settings.paths.decisions_db, readonly=True)

    def _decision(self, decision_id: str) -> dict[str, Any]:
        with self._store() as store:
            record = store.get(decision_id)
        if record is None:
            raise UnknownRecordError("decision", decision_id)
        return record

    def explain(
        self, subject: ExplainSubject, subject_id: str, question: str | None = None
    ) -> dict[str, Any]:
        with self._lock:
            self.calls.append((subject, subject_id, question))
        if subject == "decision":
            d = self._decision(subject_id)
            failed = [c for c in d["risk_checks"] if not c["passed"]]
            answer = {
                "summary": f"{d['action']} {d['symbol']} at {d['price']} (bar closing {d['ts']}).",
                "drivers": [f"TA score {d['ta_score']}", f"ML probability {d['ml_probability']}"],
                "risk_notes": [
                    f"{c['reason_code']}: observed {c['observed']} vs limit {c['limit']}"
                    for c in failed
                ],
                "citations": [{"tool_call_id": "t-1", "field": "price"}],
            }
        elif subject == "anomaly":
            with self._store() as store:
                found = [a for a in store.anomalies(10_000) if a["id"] == subject_id]
            if not found:
                raise UnknownRecordError("anomaly", subject_id)
            a = found[0]
            answer = {
                "summary": f"{a['kind']} on {a['symbol']}: {a['statistic']} {a['value']}. "
                f"{a['detail']}",
                "drivers": [],
                "risk_notes": [],
                "citations": [{"tool_call_id": "t-1", "field": "value"}],
            }
        else:
            if subject_id not in self.settings.symbols:
                raise UnknownSymbolError(f"unknown symbol {subject_id!r}", symbol=subject_id)
            with self._store() as store:
                latest = store.latest(1, symbol=subject_id)
            answer = {
                "summary": f"market for {subject_id}: {len(latest)} recent decision(s)",
                "drivers": [],
                "risk_notes": [],
                "citations": [],
            }
        return _record(subject, subject_id, question or f"explain {subject}", answer)

    def chat(self, session_id: str, message: str) -> dict[str, Any]:
        with self._lock:
            session = self.sessions.setdefault(session_id, {"turns": 0, "decision": None})
            session["turns"] += 1
            turn = session["turns"]
        named = _DECISION_ID.search(message)
        if named is not None:
            session["decision"] = named.group(0)
        if session["decision"] is None:
            summary = "name a decision id so that I know which decision you mean"
        else:
            d = self._decision(session["decision"])
            summary = (
                f"turn {turn}: decision {d['id']} was {d['action']} {d['symbol']} at {d['price']}"
            )
        answer = {"summary": summary, "drivers": [], "risk_notes": [], "citations": []}
        return _record("chat", session_id, message, answer)


def _record(subject: str, subject_id: str, question: str, answer: dict[str, Any]) -> dict[str, Any]:
    """An ``ExplanationRecord`` as JSON (the shape the real explainer returns)."""
    return {
        "id": uuid.uuid4().hex,
        "subject": subject,
        "subject_id": subject_id,
        "question": question,
        "answer": answer,
        "model": MODEL,
        "grounded": True,
        "failed_claims": [],
        "tool_calls": [],
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "latency_ms": 1.5,
        "trace_id": None,
        "created_at": datetime.now(UTC).isoformat(),
    }
