"""Prefect flow ``explain``: explain the paper account's latest decision of each symbol.

Runs after ``trade`` and ``monitor`` (so nearby anomalies are in the evidence). The explainer is
`agents.explain.service.ExplainService` (the LLM when OPENAI_BASE_URL or OPENAI_API_KEY is set,
the offline narrative otherwise); every answer is stored with its grounding result, and the flow
returns one row per decision for the summary `sextant run` prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from agents.explain.service import ExplainService
from sextant.settings import load_settings

__all__ = ["explain_flow", "explain_latest"]


@task(name="explain-latest", cache_policy=NO_CACHE)
def explain_latest(home: str | None = None) -> list[dict[str, Any]]:
    """Explain the account's newest decision of each configured symbol; one row per answer."""
    settings = load_settings(**({"home": Path(home)} if home else {}))
    rows: list[dict[str, Any]] = []
    with ExplainService(settings) as service:
        for symbol in settings.symbols:
            latest = service.evidence.decisions.latest(
                1, account=settings.paper_account, symbol=symbol
            )
            if not latest:
                continue
            record = service.explain("decision", str(latest[0]["id"]))
            rows.append(
                {
                    "decision": record["subject_id"],
                    "symbol": symbol,
                    "model": record["model"],
                    "grounded": record["grounded"],
                    "citations": len(record["answer"]["citations"]),
                    "summary": record["answer"]["summary"],
                }
            )
    return rows


@flow(name="explain")
def explain_flow(home: str | None = None) -> list[dict[str, Any]]:
    """Explain the latest decisions (after `trade` and `monitor`)."""
    return explain_latest(home)
