"""The chat with no LLM routes the common questions to the tools, remembers the subject of the
conversation, and says plainly what it cannot answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from agents.explain.offline_chat import CAPABILITIES, Intent, OfflineChat
from agents.tools.base import field_value
from agents.tools.context import Evidence
from tests.agents.tools.evidence_home import (  # noqa: F401  (the session fixture)
    ACCOUNT,
    EvidenceHome,
    evidence_home,
)

pytestmark = pytest.mark.slow

BTC, ETH = "BTC/USDT", "ETH/USDT"


@pytest.fixture
def chat(evidence_home: EvidenceHome) -> Iterator[OfflineChat]:  # noqa: F811
    with Evidence(evidence_home.settings, account=ACCOUNT) as evidence:
        yield OfflineChat(evidence)


def test_why_questions_follow_ups_and_times_are_routed_to_the_decisions(
    chat: OfflineChat,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    last = evidence_home.last_close
    earlier = last.replace(hour=(last.hour - 2) % 24)

    why_btc = chat.ask("why did you do that on BTC?")
    and_eth = chat.ask("and ETH?")
    why = chat.ask("why?")
    at_time = chat.ask(f"why did it buy ETH at {earlier:%H:%M}?")
    latest = chat.ask("latest decision for btc")

    assert why_btc.intent == Intent.WHY and why_btc.answered
    assert why_btc.decision_id == evidence_home.decisions[(BTC, last)]
    assert and_eth.decision_id == evidence_home.decisions[(ETH, last)] and ETH in and_eth.text
    assert why.decision_id == and_eth.decision_id  # the decision talked about last
    assert at_time.decision_id == evidence_home.decisions[(ETH, earlier)]
    assert latest.intent == Intent.LATEST and latest.decision_id == why_btc.decision_id
    # call ids run on through the conversation and every citation resolves against them
    ids = [call.id for call in chat.tool_calls]
    assert ids == [f"offline-{i}" for i in range(1, len(ids) + 1)]
    calls = {call.id: call for call in chat.tool_calls}
    for reply in (why_btc, and_eth, why, at_time, latest):
        assert reply.explanation is not None and reply.explanation.citations
        for citation in reply.explanation.citations:
            field_value(calls[citation.tool_call_id].output, citation.field)


def test_anomalies_models_and_market_questions_are_answered(
    chat: OfflineChat,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    since = evidence_home.anomaly_bar.date().isoformat()

    anomalies = chat.ask(f"anomalies since {since}")
    models = chat.ask("Which models are live and how good are they?")
    market = chat.ask("how is the market for ETH?")
    follow = chat.ask("and BTC?")

    assert anomalies.intent == Intent.ANOMALIES and evidence_home.anomaly_id in anomalies.text
    assert anomalies.tool_calls[0].args["since"].startswith(since)
    assert models.intent == Intent.MODELS and "sextant-lstm version 1" in models.text
    assert market.intent == Intent.MARKET and market.text.startswith(ETH)
    assert follow.intent == Intent.MARKET and follow.text.startswith(BTC)
    one = chat.ask(f"what is anomaly {evidence_home.anomaly_id}?")
    assert one.intent == Intent.ANOMALY and "volume_spike" in one.text


def test_what_it_cannot_answer_is_said_plainly(chat: OfflineChat) -> None:
    unknown_symbol = chat.ask("latest decision for SOL")
    unsupported = chat.ask("what will the price be tomorrow?")
    no_such_time = chat.ask("why did it buy ETH at 03:17?")
    bad_id = chat.ask("why 20240110T230000Z-0000000000000000?")

    assert not unknown_symbol.answered and "SOL" in unknown_symbol.text
    assert "BTC/USDT, ETH/USDT" in unknown_symbol.text
    assert unsupported.intent == Intent.UNSUPPORTED and not unsupported.answered
    assert "cannot answer" in unsupported.text
    assert all(capability in unsupported.text for capability in CAPABILITIES)
    assert not no_such_time.answered and "03:17" in no_such_time.text
    assert not bad_id.answered and "20240110T230000Z-0000000000000000" in bad_id.text
    assert chat.tool_calls == ()  # nothing was called for any of them
