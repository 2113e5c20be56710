"""The explainer every interface uses, on a home with recorded evidence: offline answers checked
and stored once, typed errors, the chat, and the LLM path through a loopback OpenAI-compatible
server (grounded answers cached, refused ones asked again), plus the CLI commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from agents.explain.llm_agent import LLMConfig
from agents.explain.service import ExplainService
from agents.tools.context import UnknownRecordError
from serving.decisions_store import DecisionsStore
from sextant.errors import DataValidationError, UnknownSymbolError
from tests.agents.explain.openai_loopback import (
    Answer,
    LoopbackOpenAI,
    ToolCalls,
    loopback_openai,
)
from tests.agents.tools.evidence_home import ACCOUNT, EvidenceHome, evidence_home

__all__ = ["evidence_home"]

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture
def service(evidence_home: EvidenceHome) -> Iterator[ExplainService]:
    with ExplainService(evidence_home.settings, llm=None, account=ACCOUNT) as running:
        yield running


def _latest_btc(home: EvidenceHome) -> str:
    return home.decisions[("BTC/USDT", home.last_close)]


def _stored(home: EvidenceHome, subject_id: str) -> list[dict[str, object]]:
    with DecisionsStore.open(home.settings.paths.decisions_db, readonly=True) as store:
        return store.explanations(subject_id=subject_id, n=100)


def test_an_offline_explanation_is_grounded_stored_once_and_cites_real_calls(
    evidence_home: EvidenceHome, service: ExplainService
) -> None:
    decision = _latest_btc(evidence_home)

    first = service.explain("decision", decision)
    again = service.explain("decision", decision)

    assert first["model"] == "offline" and first["grounded"] is True
    assert first["failed_claims"] == []
    assert first["subject"] == "decision" and first["subject_id"] == decision
    assert first["question"] == "Why was this decision made?"
    call_ids = {call["id"] for call in first["tool_calls"]}  # type: ignore[union-attr]
    citations = first["answer"]["citations"]  # type: ignore[index]
    assert citations and {c["tool_call_id"] for c in citations} <= call_ids
    assert "BTC/USDT" in first["answer"]["summary"]  # type: ignore[index]
    # the same evidence gives the same answer: stored once, returned as stored
    assert again == first
    assert [r["id"] for r in _stored(evidence_home, decision)] == [first["id"]]


def test_unknown_ids_and_symbols_are_typed_errors_naming_them(service: ExplainService) -> None:
    with pytest.raises(UnknownRecordError, match="no-such-decision"):
        service.explain("decision", "no-such-decision")
    with pytest.raises(UnknownRecordError, match="no-such-anomaly"):
        service.explain("anomaly", "no-such-anomaly")
    with pytest.raises(UnknownSymbolError, match="DOGE"):
        service.explain("market", "DOGE")
    with pytest.raises(DataValidationError, match="portfolio"):
        service.explain("portfolio", "x")  # type: ignore[arg-type]


def test_anomaly_and_market_explanations(
    evidence_home: EvidenceHome, service: ExplainService
) -> None:
    anomaly = service.explain("anomaly", evidence_home.anomaly_id)
    market = service.explain("market", "btc", "How is BTC?")

    assert anomaly["grounded"] is True and anomaly["subject_id"] == evidence_home.anomaly_id
    assert "volume_spike" in anomaly["answer"]["summary"]  # type: ignore[index]
    assert market["subject_id"] == "BTC/USDT" and market["question"] == "How is BTC?"
    assert market["grounded"] is True


def test_the_offline_chat_answers_why_on_btc_and_follow_ups(
    evidence_home: EvidenceHome, service: ExplainService
) -> None:
    why = service.chat("s1", "why did you do that on BTC?")
    follow = service.chat("s1", "and ETH?")
    other = service.chat("s2", "what will the price be next year?")

    assert why["subject"] == "chat" and why["subject_id"] == "s1" and why["grounded"] is True
    cited = {c["output"].get("id") for c in why["tool_calls"]}  # type: ignore[union-attr]
    assert _latest_btc(evidence_home) in cited
    assert "ETH/USDT" in follow["answer"]["summary"]  # type: ignore[index]
    assert "cannot" in other["answer"]["summary"].lower()  # type: ignore[index]
    # a reply that answers nothing claims nothing: it passes the guard like any answer
    assert other["grounded"] is True and other["failed_claims"] == []
    unknown = service.chat("s3", "why did you do that on DOGE?")
    assert "DOGE" in unknown["answer"]["summary"] and unknown["grounded"] is True  # type: ignore[index]
    no_date = service.chat("s4", "anomalies since yesterday")
    assert no_date["grounded"] is True, no_date["failed_claims"]
    with pytest.raises(DataValidationError, match="message"):
        service.chat("s1", "   ")


@pytest.fixture
def server() -> Iterator[LoopbackOpenAI]:
    with loopback_openai() as running:
        yield running


def _llm_service(home: EvidenceHome, server: LoopbackOpenAI) -> ExplainService:
    config = LLMConfig(
        model=server.model,
        base_url=server.base_url,
        api_key=SecretStr("sk-loopback-service-key"),
        timeout_s=20.0,
    )
    return ExplainService(home.settings, llm=config, trace=False, account=ACCOUNT)


def test_the_llm_answer_is_checked_stored_and_cached_when_grounded(
    evidence_home: EvidenceHome, server: LoopbackOpenAI
) -> None:
    decision = _latest_btc(evidence_home)
    with DecisionsStore.open(evidence_home.settings.paths.decisions_db, readonly=True) as store:
        record = store.get(decision)
    assert record is not None
    price = float(record["price"])
    grounded = {
        "summary": f"The engine decided {record['action']} on BTC/USDT at price {price:.2f}.",
        "drivers": [],
        "risk_notes": [],
        "citations": [{"tool_call_id": "call_1", "field": "price"}],
    }
    server.script(ToolCalls((("call_1", "get_decision", {"decision_id": decision}),)),
                  Answer(grounded))  # fmt: skip
    with _llm_service(evidence_home, server) as service:
        first = service.explain("decision", decision, "Why BTC?")
        requests = len(server.requests)
        cached = service.explain("decision", decision, "Why BTC?")

    assert first["grounded"] is True and first["model"] == server.model
    assert first["answer"]["summary"] == grounded["summary"]  # type: ignore[index]
    assert cached == first and len(server.requests) == requests  # no model call the second time
    assert "get_decision" in server.offered_tools(0)
    assert "sk-loopback-service-key" not in json.dumps(first)


def test_a_refused_llm_answer_falls_back_flagged_and_is_asked_again(
    evidence_home: EvidenceHome, server: LoopbackOpenAI
) -> None:
    decision = _latest_btc(evidence_home)
    invented = {
        "summary": "BTC/USDT was bought because RSI was 97.31 and volume rose 412%.",
        "drivers": [],
        "risk_notes": [],
        "citations": [],
    }
    call = ("call_1", "get_decision", {"decision_id": decision})
    server.script(ToolCalls((call,)), Answer(invented), Answer(invented))
    with _llm_service(evidence_home, server) as service:
        refused = service.explain("decision", decision, "Why BTC, really?")
        server.script(ToolCalls((call,)), Answer(invented), Answer(invented))
        asked = len(server.requests)
        again = service.explain("decision", decision, "Why BTC, really?")

    assert refused["grounded"] is False
    assert any("97.31" in claim for claim in refused["failed_claims"])  # type: ignore[union-attr]
    # the fallback is the offline narrative, not the invented text
    assert "97.31" not in json.dumps(refused["answer"])
    assert len(server.requests) > asked and again["id"] != refused["id"]


def _cli(home: EvidenceHome, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "SEXTANT_HOME": str(home.settings.paths.home),
        "SEXTANT_PAPER_ACCOUNT": ACCOUNT,
    }
    for name in ("OPENAI_BASE_URL", "OPENAI_API_KEY"):
        env[name] = ""  # offline (an empty variable also hides a .env value)
    return subprocess.run(
        [sys.executable, "-m", "sextant.cli", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.mark.slow
def test_the_cli_explains_a_decision_and_chats_offline(evidence_home: EvidenceHome) -> None:
    decision = _latest_btc(evidence_home)

    explained = _cli(evidence_home, "explain", decision, "--json")
    chatted = _cli(evidence_home, "chat", "-m", "why did you do that on BTC?", "--json")
    text = _cli(evidence_home, "explain", decision)
    neither = _cli(evidence_home, "explain")

    assert explained.returncode == 0, explained.stderr
    record = json.loads(explained.stdout)
    assert record["grounded"] is True and record["subject_id"] == decision
    assert chatted.returncode == 0, chatted.stderr
    answer = json.loads(chatted.stdout)
    assert answer["subject"] == "chat" and answer["grounded"] is True
    assert text.returncode == 0 and "offline, grounded" in text.stdout
    assert neither.returncode != 0 and "exactly one" in neither.stderr


@pytest.mark.slow
def test_with_openai_base_url_the_cli_answers_through_the_agent_and_traces_in_mlflow(
    evidence_home: EvidenceHome, server: LoopbackOpenAI
) -> None:
    import mlflow

    decision = evidence_home.decisions[("ETH/USDT", evidence_home.last_close)]
    with DecisionsStore.open(evidence_home.settings.paths.decisions_db, readonly=True) as store:
        record = store.get(decision)
    assert record is not None
    answer = {
        "summary": f"ETH/USDT: {record['action']} at price {float(record['price']):.2f}.",
        "drivers": [],
        "risk_notes": [],
        "citations": [{"tool_call_id": "call_7", "field": "price"}],
    }
    server.script(ToolCalls((("call_7", "get_decision", {"decision_id": decision}),)),
                  Answer(answer))  # fmt: skip
    env = {
        **os.environ,
        "SEXTANT_HOME": str(evidence_home.settings.paths.home),
        "OPENAI_BASE_URL": server.base_url,
        "OPENAI_API_KEY": "sk-loopback-cli-key",
        "SEXTANT_LLM_MODEL": server.model,
    }

    done = subprocess.run(
        [sys.executable, "-m", "sextant.cli", "explain", decision, "--question", "Why ETH?",
         "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip

    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["model"] == server.model and got["grounded"] is True
    assert got["answer"]["summary"] == answer["summary"] and got["trace_id"]
    assert "sk-loopback-cli-key" not in done.stdout + done.stderr
    assert server.headers[0].get("authorization") == "Bearer sk-loopback-cli-key"
    client = mlflow.MlflowClient(tracking_uri=evidence_home.settings.tracking_uri)
    trace = client.get_trace(got["trace_id"])
    names = [span.name for span in trace.data.spans]
    assert "sextant.explain" in names and any("get_decision" in n for n in names)
