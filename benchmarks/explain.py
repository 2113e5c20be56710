"""The explainer's cost: the offline explanation of a decision, and the agent's own overhead.

**Offline** (`agents.explain.service.ExplainService` with no LLM): on the serving bench home
(`benchmarks.bench_home`, 50 symbols, champions of the three families), the engine decides the 50
symbols at the home's last bar for an account of this bench (untimed); each timed call is
``explain("decision", id)`` end to end: the tools' reads (decision, XGBoost contributions,
risk checks, nearby anomalies), the narrative, the grounding guard and the store's write. The
first explanation of a decision computes its contributions (the booster is loaded once per
version, untimed by a warm-up decision); the second finds its answer stored.

**Agent** (`LLMExplainer` through the real ``ChatOpenAI`` against a loopback OpenAI-compatible
server started here that answers at once): per question the model asks for ``get_decision``,
``decision_contributions`` and ``risk_checks``, then answers with a grounded summary. The model
costs nothing, so the figures are the bridge's own overhead: the whole question's wall time
(HTTP round trips on loopback, LangChain, the tools, the guard), the tools' time and the guard's
time as the agent measures them, and the size of what is sent to the model (characters of the
last request's messages and tool schemas: the prompt a real model would be billed for, in
characters, since no tokenizer ships with the project).
"""

from __future__ import annotations

import json
import statistics
from datetime import timedelta
from typing import Any

from benchmarks.bench_home import SYMBOLS, bench_home
from benchmarks.common import Figure
from benchmarks.loadgen import percentile

__all__ = ["run"]

ACCOUNT = "explain-bench"
AGENT_QUESTIONS = 20


def _ms(seconds: list[float]) -> tuple[float, float]:
    return percentile(seconds, 50) * 1e3, percentile(seconds, 99) * 1e3


def run() -> list[Figure]:
    """Offline latency (first and repeated explanation) and the agent's overhead per question."""
    import time

    from agents.explain.service import ExplainService
    from serving.engine import DecisionEngine

    home = bench_home()
    settings = home.settings
    engine = DecisionEngine.from_settings(settings, account=ACCOUNT)
    try:
        batch = engine.decide(SYMBOLS, now=home.last_close + timedelta(minutes=5))
    finally:
        engine.close()
    ids = [str(record["id"]) for record in batch.records]
    first: list[float] = []
    again: list[float] = []
    with ExplainService(settings, llm=None, account=ACCOUNT) as service:
        service.explain("decision", ids[0])  # warm-up: the booster of the version, the stores
        for ident in ids[1:]:
            began = time.perf_counter()
            record = service.explain("decision", ident)
            first.append(time.perf_counter() - began)
            if not record["grounded"]:
                raise RuntimeError(f"offline explanation of {ident} not grounded: {record}")
        for ident in ids[1:]:
            began = time.perf_counter()
            service.explain("decision", ident)
            again.append(time.perf_counter() - began)
    figures = [
        Figure("explain_offline_first_p50", _ms(first)[0], "ms", "reference"),
        Figure("explain_offline_first_p99", _ms(first)[1], "ms", "< 50 ms"),
        Figure("explain_offline_repeat_p50", _ms(again)[0], "ms", "reference"),
        Figure("explain_offline_repeat_p99", _ms(again)[1], "ms", "< 50 ms"),
    ]
    return figures + _agent_figures(settings, ids)


def _agent_figures(settings: Any, ids: list[str]) -> list[Figure]:
    from pydantic import SecretStr

    from agents.explain.llm_agent import LLMConfig, LLMExplainer
    from agents.explain.offline import explain_decision
    from agents.tools.context import Evidence
    from agents.tools.registry import READ_ONLY_TOOLS
    from tests.agents.explain.openai_loopback import Answer, ToolCalls, loopback_openai

    totals: list[float] = []
    tools: list[float] = []
    guards: list[float] = []
    prompt_chars: list[int] = []
    with loopback_openai() as server, Evidence(settings, account=ACCOUNT) as evidence:
        config = LLMConfig(
            model=server.model, base_url=server.base_url, api_key=SecretStr("bench"), timeout_s=30
        )
        agent = LLMExplainer(READ_ONLY_TOOLS, evidence, config)
        for ident in ids[1 : AGENT_QUESTIONS + 1]:
            record = evidence.decision(ident)
            answer = {
                "summary": (
                    f"The engine decided {record['action']} on {record['symbol']} at price "
                    f"{float(record['price']):.2f}."
                ),
                "drivers": [],
                "risk_notes": [],
                "citations": [{"tool_call_id": "c1", "field": "price"}],
            }
            server.script(
                ToolCalls(
                    (
                        ("c1", "get_decision", {"decision_id": ident}),
                        ("c2", "decision_contributions", {"decision_id": ident}),
                        ("c3", "risk_checks", {"decision_id": ident}),
                    )
                ),
                Answer(answer),
            )
            got = agent.explain(
                f"Why {record['action']} on {record['symbol']}?",
                fallback=lambda ident=ident: explain_decision(evidence, ident),  # type: ignore[misc]
                symbols=(str(record["symbol"]),),
                known_symbols=settings.symbols,
            )
            if not got.grounded or got.fell_back:
                raise RuntimeError(f"the scripted grounded answer was refused: {got.failed_claims}")
            totals.append(got.latency_ms / 1e3)
            tools.append(got.tool_ms / 1e3)
            guards.append(got.guard_ms / 1e3)
            last = server.requests[-1]
            prompt_chars.append(len(json.dumps(last["messages"])) + len(json.dumps(last["tools"])))
    return [
        Figure("agent_question_overhead_p50", _ms(totals)[0], "ms", "reference"),
        Figure("agent_question_overhead_p99", _ms(totals)[1], "ms", "reference"),
        Figure("agent_tool_time_p50", _ms(tools)[0], "ms", "reference"),
        Figure("agent_guard_time_p50", _ms(guards)[0], "ms", "reference"),
        Figure(
            "agent_prompt_chars_per_question_p50",
            statistics.median(prompt_chars),
            "chars",
            "reference",
        ),
    ]
