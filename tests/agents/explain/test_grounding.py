"""The grounding guard: numbers, symbols, dates and citations of an answer against tool outputs."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import pytest

from agents.explain.grounding import check_grounding, evidence_symbols, written_numbers
from agents.explain.schema import Citation, Explanation
from agents.tools.base import ToolCall

DECISION = {
    "id": "20240110T140000Z-5f1c2d3e4a5b6c7d",
    "ts": "2024-01-10T14:00:00.000000+00:00",
    "symbol": "ETH/USDT",
    "action": "BUY",
    "size": 0.2537,
    "equity": 104_250.5,
    "fused_score": 0.6134,
    "confidence": 0.72,
    "pnl_pct": -0.0321,
    "tiny": 1.234e-05,
    "model_versions": {"xgb": "3"},
    "votes": {"rsi_14": 1, "ema_cross_12_26": -1},
    "risk_checks": [
        {
            "name": "var",
            "passed": True,
            "reason_code": "VAR_LIMIT",
            "observed": 0.0123,
            "limit": 0.02,
        }
    ],
    "headline": "ETH to hit 9999 says analyst",
    "flag": True,
}
CALLS = [ToolCall("call_1", "get_decision", {"decision_id": DECISION["id"]}, DECISION)]
SYMBOLS = {"ETH/USDT"}


def grounded(text: str, *, dates: set[date | datetime] | None = None, **kw: Any) -> list[str]:
    answer = Explanation(summary=text, **kw)
    result = check_grounding(answer, CALLS, symbols=SYMBOLS, dates=dates or set())
    assert result.grounded is (not result.failed_claims)
    return result.failed_claims


def numbers(text: str) -> list[str]:
    return [n.text for n in written_numbers(text)]


@pytest.mark.parametrize(
    "text",
    [
        "Bought ETH/USDT with confidence 0.72 and a fused score of 0.6134.",
        "Fused score 0.61, size 0.25, 0.254 and 0.2537 (all rounded from the tool).",
        "Equity was 104,250.5, about 104,250 or 104250.50.",
        "VAR_LIMIT observed 1.23% against a limit of 2%; observed 0.0123 vs 0.02.",
        "The position fell 3.2% (pnl -3.21%); unsigned prose matches by size.",
        "A tiny figure of 1.23e-05, or 1.2e-5.",
        "xgb model version 3 voted with rsi_14 and ema_cross_12_26.",
        "Decision 20240110T140000Z-5f1c2d3e4a5b6c7d on 2024-01-10 at 14:00 UTC.",
        "At 2024-01-10T14:00:00Z the field risk_checks.0.observed was 0.0123.",
        "Over the last 24h and the 14-day window, nothing else.",
    ],
)
def test_values_the_tools_returned_pass_in_any_stated_rounding(text: str) -> None:
    assert grounded(text) == []


@pytest.mark.parametrize(
    ("text", "claim"),
    [
        ("Confidence was 0.73.", "0.73"),  # off by one in the last written digit
        ("Confidence was 0.7201.", "0.7201"),  # more precision than the tool gave
        ("The fused score of 61.34 led.", "61.34"),  # a percent without the % sign
        ("It fell -5.5% overnight.", "-5.5%"),
        ("Size grew to 1.2M.", "1.2"),  # a unit glued on does not hide the number
        ("It rose +3.21%.", "+3.21%"),  # a written sign must match
        ("Analyst says 9999.", "9999"),  # numbers inside a headline are not values
        ("Two drivers and 7 votes.", "7"),  # a count no tool returned is a claim too
        ("Equity 104,252.", "104252"),  # 104,250 and 104,251 round from 104,250.5; not this
    ],
)
def test_numbers_no_tool_returned_are_failed_claims(text: str, claim: str) -> None:
    assert grounded(text) == [f"summary: number {claim} matches no value the tools returned"]


def test_every_text_field_is_checked_and_named() -> None:
    failed = grounded("ok 0.72", drivers=["fine 0.61", "bad 0.5"], risk_notes=["bad 42"])

    assert failed == [
        "drivers[1]: number 0.5 matches no value the tools returned",
        "risk_notes[0]: number 42 matches no value the tools returned",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-10 14:00 BTC/USDT rsi_14 VAR_LIMIT ema_cross_12_26 v3 2nd 24h", []),
        ("checks.2.observed 20240110T140000Z-0123456789012345", []),
        ("ratio 10/20 and 3-5 bars", ["10", "20", "3", "5"]),
        ("-0.5, +2, (−1.5), - 4 dash", ["-0.5", "+2", "−1.5", "4"]),
        ("1,234,567.8 and 12,34", ["1234567.8", "12", "34"]),
        ("3.2% 4 percent 1.2e+05 7e-3 version 1.2.3", ["3.2%", "4%", "1.2e+05", "7e-3"]),
        ("0.50. End", ["0.50"]),
    ],
)
def test_which_tokens_are_read_as_numbers(text: str, expected: list[str]) -> None:
    assert numbers(text) == expected


def test_precision_is_the_written_numbers_own() -> None:
    (n,) = written_numbers("1.20e-05")
    (m,) = written_numbers("104,250")

    assert n.value == pytest.approx(1.2e-05) and n.tolerance == pytest.approx(5e-08)
    assert m.value == 104_250 and m.tolerance == 0.5


@pytest.mark.parametrize(
    ("text", "claim"),
    [
        ("Bought BTC/USDT.", "summary: symbol BTC/USDT is not one the tools were asked about"),
        ("BTC moved first.", "summary: asset BTC is not one the tools were asked about"),
        ("SOL was quiet.", "summary: asset SOL is not one the tools were asked about"),
        ("On 2024-01-11 it bought.", "summary: date 2024-01-11 is not in the evidence"),
        ("At 2024-01-10T15:00:00Z.", "summary: date 2024-01-10T15:00:00Z is not in the evidence"),
        ("On 2024-02-30.", "summary: date 2024-02-30 is not in the evidence"),
    ],
)
def test_symbols_and_dates_outside_the_evidence_fail(text: str, claim: str) -> None:
    assert grounded(text) == [claim]


def test_symbols_and_dates_in_the_evidence_pass() -> None:
    text = "ETH and ETH/USDT on 2024-01-10, at 2024-01-10 14:00 and 2024-01-10T15:00:00+01:00."

    assert grounded(text) == []
    assert grounded("As of 2024-03-01.", dates={date(2024, 3, 1)}) == []
    assert grounded("At 2024-03-01T09:00Z.", dates={datetime(2024, 3, 1, 9, tzinfo=UTC)}) == []


def test_a_bare_base_asset_of_the_configured_universe_counts_as_a_symbol() -> None:
    answer = Explanation(summary="PEPE rallied while ETH held.")

    plain = check_grounding(answer, CALLS, symbols=SYMBOLS, dates=())
    known = check_grounding(answer, CALLS, symbols=SYMBOLS, dates=(), known_symbols={"PEPE/USDT"})

    assert plain.grounded
    assert known.failed_claims == ["summary: asset PEPE is not one the tools were asked about"]


def test_citations_must_name_a_call_that_happened_and_a_field_that_resolves() -> None:
    citations = [
        Citation(tool_call_id="call_1", field="risk_checks.0.observed"),
        Citation(tool_call_id="call_9", field="confidence"),
        Citation(tool_call_id="call_1", field="risk_checks.3.observed"),
    ]

    failed = grounded("Confidence 0.72.", citations=citations)

    assert failed == [
        "citation call_9/confidence: no such tool call was made",
        "citation call_1/risk_checks.3.observed: no field 'risk_checks.3.observed' in the output"
        " of get_decision",
    ]


def test_without_tool_calls_no_number_is_grounded() -> None:
    answer = Explanation(summary="Confidence 0.72 on ETH/USDT.")

    result = check_grounding(answer, [], symbols=SYMBOLS, dates=())

    assert not result.grounded
    assert result.failed_claims == ["summary: number 0.72 matches no value the tools returned"]


def test_a_headline_quoted_in_full_is_a_quote_but_its_figures_alone_are_claims() -> None:
    quoted = grounded("The feed said: ETH to hit 9999 says analyst.")
    figure = grounded("Analysts expect ETH to hit 9999.")

    assert quoted == []
    assert figure == ["summary: number 9999 matches no value the tools returned"]


def test_booleans_are_not_numbers() -> None:
    call = ToolCall("c", "t", {}, {"passed": True, "n": None})
    answer = Explanation(summary="1 check passed.")

    assert not check_grounding(answer, [call], symbols=(), dates=()).grounded


def test_evidence_symbols_are_whole_pair_values_not_text() -> None:
    calls = [
        ToolCall("a", "t", {"symbol": "BTC/USDT"}, {"s": "ETH/USDT", "headline": "SOL/USDT soars"})
    ]

    assert evidence_symbols(calls) == {"BTC/USDT", "ETH/USDT"}


@pytest.mark.parametrize(
    "spec", [".2f", ".4f", ",.2f", ".1%", ".2%", ".3g", ".4g", ".2e", "+.3f", ".0f"]
)
@pytest.mark.parametrize("value", [0.0123, -0.0321, 0.6134, 61.25, 104_250.5, -3.5e-06, 12.0])
def test_whatever_fixed_decimals_or_significant_digits_print_is_grounded(
    spec: str, value: float
) -> None:
    call = ToolCall("c", "t", {}, {"value": value})
    answer = Explanation(summary=f"The value was {value:{spec}} at the time.")

    result = check_grounding(answer, [call], symbols=(), dates=())

    assert result.grounded, (f"{value:{spec}}", result.failed_claims)
