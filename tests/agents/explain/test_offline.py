"""The offline explainer on a real home: every number printed is a cited tool value, rounded by
the documented rule; every citation resolves; the symbols and times are the ones asked about."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest

from agents.explain.offline import (
    explain_anomalies,
    explain_anomaly,
    explain_decision,
    explain_market,
    explain_models,
    format_number,
    render_text,
    rounded,
)
from agents.explain.schema import Explanation
from agents.tools.base import ToolCall, field_value
from agents.tools.context import Evidence, UnknownRecordError
from tests.agents.tools.evidence_home import (  # noqa: F401  (the session fixture)
    ACCOUNT,
    EvidenceHome,
    evidence_home,
)

pytestmark = pytest.mark.slow

BTC, ETH = "BTC/USDT", "ETH/USDT"
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[+-]\d{2}:\d{2}|Z)?")
# a number standing alone: not part of a word (rsi_14, v1, 24h) nor of a longer number
NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?(?!\w)(?!\.\d)")


@pytest.fixture(scope="module")
def evidence(evidence_home: EvidenceHome) -> Iterator[Evidence]:  # noqa: F811
    with Evidence(evidence_home.settings, account=ACCOUNT) as opened:
        yield opened


def full_text(explanation: Explanation) -> str:
    return "\n".join([explanation.summary, *explanation.drivers, *explanation.risk_notes])


def cited_values(explanation: Explanation, calls: list[ToolCall]) -> list[Any]:
    """Every citation resolves to a value of the output of a call made in this conversation."""
    by_id = {call.id: call for call in calls}
    values = []
    for citation in explanation.citations:
        assert citation.tool_call_id in by_id, citation
        values.append(field_value(by_id[citation.tool_call_id].output, citation.field))
    return values


def assert_grounded(explanation: Explanation, calls: list[ToolCall]) -> list[str]:
    """Each printed number equals ``rounded(v)`` for a cited value ``v`` (or is a cited text,
    e.g. a version "1"); each printed time is a cited text. Returns the numbers found."""
    values = cited_values(explanation, calls)
    texts = {v for v in values if isinstance(v, str)}
    numbers = {rounded(v) for v in values if isinstance(v, int | float) and not isinstance(v, bool)}
    numbers |= {float(t) for t in texts if re.fullmatch(r"-?\d+(\.\d+)?", t)}
    text = full_text(explanation)
    for time_text in ISO_TIME.findall(text):
        assert time_text in texts, f"time {time_text} is not a cited value"
    for long_text in sorted((t for t in texts if len(t) > 3), key=len, reverse=True):
        text = text.replace(long_text, " ")  # ids, times, titles: cited texts, not numbers
    found = NUMBER.findall(ISO_TIME.sub(" ", text))
    for number in found:
        assert float(number) in numbers, f"{number} is not a cited value after rounding"
    return found


def test_format_number_follows_the_documented_rounding_rule() -> None:
    assert format_number(46902.69) == "46902.69" and format_number(2547.6) == "2547.60"
    assert format_number(0.31687005162239074) == "0.3169"
    assert format_number(-0.0921134) == "-0.09211"
    assert format_number(0.00018387468739782515) == "0.0001839"
    assert format_number(1.8387e-05) == "1.839e-05"
    assert format_number(3) == "3" and format_number(24.0) == "24" and format_number(-1.0) == "-1"
    assert format_number(None) == "n/a" and format_number(math.nan) == "n/a"
    assert format_number(True) == "true"
    assert rounded(0.31687005162239074) == 0.3169 and math.isnan(rounded(None))


def test_a_decision_is_explained_from_its_evidence_with_every_number_cited(
    evidence: Evidence,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    ident = evidence_home.decisions[(BTC, evidence_home.last_close)]

    explanation, calls = explain_decision(evidence, ident)

    assert [c.id for c in calls] == ["offline-1", "offline-2", "offline-3", "offline-4"]
    assert [c.tool for c in calls] == [
        "get_decision",
        "decision_contributions",
        "risk_checks",
        "anomalies",
    ]
    numbers = assert_grounded(explanation, calls)
    assert len(numbers) > 40
    record, contributions, risk = (c.output for c in calls[:3])
    text = full_text(explanation)
    assert BTC in text and ETH not in text and record["ts"] in explanation.summary
    assert record["action"] in explanation.summary
    # the top drivers by contribution, each with its value and contribution
    for driver in contributions["contributions"]:
        assert f"{driver['feature']} = {format_number(driver['value'])}" in text
        assert format_number(driver["contribution"]) in text
    # TA votes, each model's output, the fuser's reasoning, sizing
    for vote in record["ta_votes"]:
        assert f"{vote} {format_number(record['ta_votes'][vote])}" in text
    for key in ("p_xgb", "p_lstm", "garch_variance"):
        assert format_number(record["models"][key]) in text
    assert f"Fuser ({record['fuser_mode']} mode)" in text
    for key in ("ml_score", "ta_score", "fused_score", "confidence", "ml_probability"):
        assert format_number(record[key]) in text
    assert f"bound by {record['sizing']['binding']}" in text
    # each risk check with its figures, and the planted anomaly two bars before
    assert len(explanation.risk_notes) == len(risk["checks"]) + 1
    for note, check in zip(explanation.risk_notes, risk["checks"], strict=False):
        assert note.startswith(check["name"])
        assert f"observed {format_number(check['observed'])} vs limit" in note
    assert "volume_spike" in explanation.risk_notes[-1]
    assert evidence_home.anomaly_bar.isoformat() in explanation.risk_notes[-1]


def test_a_refused_decision_names_the_failed_reason_codes(
    evidence: Evidence,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    explanation, calls = explain_decision(evidence, evidence_home.no_xgb_decision)

    assert_grounded(explanation, calls)
    contributions, risk = calls[1].output, calls[2].output
    assert contributions["available"] is False
    assert "XGBoost contributions are not available" in explanation.drivers[0]
    for code in risk["failed"]:
        assert code in explanation.summary
        assert any(code in note and "FAILED" in note for note in explanation.risk_notes)


def test_an_anomaly_is_explained_with_its_figures_and_the_market_then(
    evidence: Evidence,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    explanation, calls = explain_anomaly(evidence, evidence_home.anomaly_id)

    assert [c.tool for c in calls] == ["get_anomaly", "market_context", "list_decisions"]
    assert_grounded(explanation, calls)
    assert "12.5 against threshold 8" in explanation.summary
    assert "volume 1250" in explanation.drivers[0] and "median_volume 100" in explanation.drivers[0]
    market_at = datetime.fromisoformat(calls[1].output["at"])
    assert market_at == evidence_home.anomaly_bar + timedelta(hours=1)  # the bar's close
    # the decisions made on BTC at the closes after the anomalous bar (the data ends at the second)
    after = [evidence_home.anomaly_bar + timedelta(hours=h) for h in (2, 1)]
    assert [note.split()[1] for note in explanation.risk_notes] == [
        evidence_home.decisions[(BTC, close)] for close in after
    ]
    with pytest.raises(UnknownRecordError, match="nope"):
        explain_anomaly(evidence, "nope")


def test_the_market_models_and_anomaly_list_are_explained_with_cited_numbers(
    evidence: Evidence,
    evidence_home: EvidenceHome,  # noqa: F811
) -> None:
    at = evidence_home.last_close + timedelta(minutes=30)
    market, market_calls = explain_market(evidence, "eth", at)
    models, model_calls = explain_models(evidence)
    listed, list_calls = explain_anomalies(evidence, since=evidence_home.anomaly_bar)

    for explanation, calls in (
        (market, market_calls),
        (models, model_calls),
        (listed, list_calls),
    ):
        assert_grounded(explanation, calls)
        assert render_text(explanation).startswith(explanation.summary)
    assert ETH in market.summary and BTC not in full_text(market)
    assert at.isoformat() in market.summary
    assert "sextant-lstm version 1" in models.summary and "sextant-xgb" not in models.summary
    assert any("ALREADY_CHAMPION" in note for note in models.risk_notes)
    assert evidence_home.anomaly_id in listed.drivers[0]
