"""What the service needs of the explainer, so `serving` stays below `agents` (DESIGN.md).

The explainer (`agents.explain.service.ExplainService`) is built by the composition root
(`sextant serve`) and handed to `serving.app.create_app`; the app only knows this protocol.
Answers are plain JSON dicts: an ``agents.explain.schema.ExplanationRecord`` dumped in JSON
mode (``id``, ``subject``, ``subject_id``, ``question``, ``answer`` with ``summary``,
``drivers``, ``risk_notes``, ``citations``; ``model``, ``grounded``, ``failed_claims``,
``tool_calls``, tokens, ``latency_ms``, ``trace_id``, ``created_at``). Calls block (an LLM may
take seconds): the app runs them in a worker thread.
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

__all__ = ["ExplainSubject", "Explainer"]

ExplainSubject = Literal["decision", "anomaly", "market"]


class Explainer(Protocol):
    """Grounded explanations and the trade-review chat, as JSON-ready records."""

    def explain(
        self, subject: ExplainSubject, subject_id: str, question: str | None = None
    ) -> dict[str, Any]:
        """Explain a decision (by id), an anomaly (by id) or the market (by symbol); typed
        errors (``agents.tools.context.UnknownRecordError``, a ``DataValidationError``) for an
        unknown id or symbol."""
        ...

    def chat(self, session_id: str, message: str) -> dict[str, Any]:
        """Answer one message of a chat session (the session's history is kept by the
        explainer); the record's ``subject`` is ``chat``."""
        ...
