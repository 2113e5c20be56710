"""The grounding guard: is every number, symbol, date and citation of an answer backed by evidence?

An explanation may only state what the tools returned in this conversation (DESIGN.md,
"Contracts"). ``check_grounding`` reads the answer's text (summary, drivers, risk notes) and
its citations and returns the claims that no tool call supports:

- **Numbers.** Every number written (``42``, ``-0.73``, ``1,234.5``, ``3.2%``, ``1.2e-05``) must
  equal a numeric value found anywhere in the tool outputs, *rounded to the written number's own
  precision*: a number written with ``k`` decimals matches ``v`` when ``|v - written| <= 0.5 *
  10**-k`` (``round(v, k) == written``, with ties either way; for scientific notation the
  precision is that of the mantissa's last digit). A percent (``3.2%``, ``3.2 percent``) also
  matches a fraction ``v`` by ``v * 100``. A number written without a sign may match a value of
  either sign ("fell 3.2%" for ``-0.032``); a written sign must match. Numeric strings in the
  outputs (``"version": "3"``) count as values; numbers inside other text (a headline) do not.
  So anything that prints a tool value with fixed decimals or significant digits (the offline
  explainer does) passes, and a number that was never returned fails, counts included.
- **Not numbers.** Dates and datetimes (``2024-01-10``, ``2024-01-10T14:00:00Z``), clock times
  (``14:00``), symbols (``BTC/USDT``), ids (``20240110T140000Z-…`` and any id a tool returned),
  verbatim quotes of a whole text value a tool returned (a headline quoted in full),
  identifiers (``VAR_LIMIT``, ``rsi_14``, ``ema_cross_12_26``, ``checks.2.observed``), windows
  (``24h``, ``7d``) and ordinals (``2nd``) are taken out before numbers are read. A number glued to
  other letters (``1.2M``, ``10x``) is still read as a number, so a unit cannot hide a claim.
- **Symbols and dates.** A pair (``ETH/USDT``) or a bare base asset of a known symbol
  (``ETH``) must be one of ``symbols``; a date or datetime must be one of ``dates`` or appear in
  the tool calls' arguments or outputs (a date alone matches any datetime on that UTC day; a
  datetime without an offset is read as UTC). Clock times alone are not checked.
- **Citations.** Each must name a tool call that happened and a field that resolves in its output
  (``agents.tools.base.field_value``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, Final

from agents.explain.schema import Explanation
from agents.tools.base import ToolCall, field_value

__all__ = [
    "COMMON_BASE_ASSETS",
    "GroundingResult",
    "check_grounding",
    "claim_kind",
    "evidence_symbols",
    "written_numbers",
]

# well-known base assets: naming one that the tools were not asked about is a wrong-symbol claim
# even when the configured universe does not hold it
COMMON_BASE_ASSETS: Final = frozenset(
    {"BTC", "ETH", "SOL", "XRP", "BNB", "ADA", "DOGE", "DOT", "AVAX", "LTC", "LINK", "TRX"}
)

_DATETIME: Final = re.compile(
    r"(?<![\w-])(\d{4})-(\d{2})-(\d{2})"
    r"(?:[T ](\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?(Z|[+-]\d{2}:?\d{2}|\s?UTC)?)?(?![\w-])"
)
_CLOCK: Final = re.compile(r"(?<![\w:.])\d{1,2}:\d{2}(?::\d{2})?(?![\w:])")
# BASE/QUOTE[:SETTLE] with a letter in the base, so a ratio like 10/20 is not a pair
_PAIR: Final = re.compile(
    r"(?<![\w/])(?=[A-Z0-9]{2,10}/)[A-Z0-9]*[A-Z][A-Z0-9]*/[A-Z]{2,10}(?::[A-Z]{2,10})?(?![\w/])"
)
_BARE_ASSET: Final = re.compile(r"(?<![\w/])[A-Z][A-Z0-9]{1,9}(?![\w/])")
_DECISION_ID: Final = re.compile(r"\d{8}T\d{6}Z[\w./-]*")
# a "chunk": word characters joined by '.', '-' or an exponent's '+' (``1.2e+05``)
_CHUNK: Final = re.compile(r"[\w]+(?:(?:[.\-]|(?<=[eE])\+)[\w]+)*")
_NUMBER: Final = re.compile(r"(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?")
_WINDOW: Final = re.compile(
    r"\d+(?:ms|s|m|min|h|d|w|mo|y|st|nd|rd|th)"
    r"|\d+-(?:second|minute|hour|day|week|month|year|bar|period)s?",
    re.IGNORECASE,
)
_RANGE: Final = re.compile(r"\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)+")
_THOUSANDS: Final = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
_PERCENT_AFTER: Final = re.compile(r"\s?(%|percent\b|pct\b)", re.IGNORECASE)
_SIGNS: Final = {"-": -1, "\u2212": -1, "+": 1}


@dataclass(frozen=True, slots=True)
class GroundingResult:
    """Whether the answer is grounded, and each unsupported claim in words."""

    grounded: bool
    failed_claims: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class WrittenNumber:
    """A number as written: its value, the half-unit of its last digit, and its form."""

    text: str
    value: float
    tolerance: float
    percent: bool
    signed: bool


@dataclass(slots=True)
class _Evidence:
    numbers: list[float]
    instants: set[datetime]
    days: set[date]
    strings: set[str]


def check_grounding(
    answer: Explanation,
    calls: Sequence[ToolCall],
    *,
    symbols: Collection[str],
    dates: Collection[date | datetime],
    known_symbols: Collection[str] = (),
) -> GroundingResult:
    """Check ``answer`` against the tool calls of its conversation (rules: module docstring).

    ``symbols``: the symbols the tools were asked about (pairs like ``BTC/USDT``); ``dates``:
    dates or datetimes the question was about, besides those in the calls. ``known_symbols``:
    the configured universe, whose bare base assets (``ETH``) count as naming that symbol.
    """
    evidence = _collect(calls)
    for item in dates:
        _add_moment(evidence, item)
    allowed_symbols = {s.upper() for s in symbols}
    bases = {s.split("/")[0].upper() for s in (*symbols, *known_symbols)} | COMMON_BASE_ASSETS
    allowed_bases = {s.split("/")[0].upper() for s in symbols}
    failed: list[str] = []
    for where, text in _texts(answer):
        failed.extend(_check_text(where, text, evidence, allowed_symbols, bases, allowed_bases))
    failed.extend(_check_citations(answer, calls))
    return GroundingResult(grounded=not failed, failed_claims=failed)


def claim_kind(claim: str) -> str:
    """Which rule a failed claim broke: ``number``, ``entity`` (a symbol, asset or date) or
    ``citation`` (from the wording `check_grounding` writes its claims in)."""
    if claim.startswith("citation "):
        return "citation"
    if ": number " in claim:
        return "number"
    if any(f": {word} " in claim for word in ("date", "symbol", "asset")):
        return "entity"
    raise ValueError(f"not a claim check_grounding writes: {claim!r}")


def evidence_symbols(calls: Sequence[ToolCall]) -> set[str]:
    """The symbols the calls were asked about or returned: string values that are a pair."""
    return {
        value.upper()
        for call in calls
        for node in (call.args, call.output)
        for value in _leaves(node)
        if isinstance(value, str) and _PAIR.fullmatch(value.strip())
    }


def written_numbers(text: str, *, ids: Collection[str] = ()) -> list[WrittenNumber]:
    """The numbers a text states, after dates, times, symbols, ids and identifiers are removed."""
    cleaned = text
    for ident in sorted(ids, key=len, reverse=True):
        if ident in cleaned:
            cleaned = re.sub(rf"(?<![\w-]){re.escape(ident)}(?![\w-])", " ", cleaned)
    cleaned = _DECISION_ID.sub(" ", cleaned)
    cleaned = _DATETIME.sub(" ", cleaned)
    cleaned = _CLOCK.sub(" ", cleaned)
    cleaned = _PAIR.sub(" ", cleaned)
    cleaned = _THOUSANDS.sub("", cleaned)
    found: list[WrittenNumber] = []
    for chunk in _CHUNK.finditer(cleaned):
        token = chunk.group()
        if not token[0].isdigit() or _WINDOW.fullmatch(token):
            continue  # an identifier (rsi_14, VAR_LIMIT, v3, checks.2.observed) or a window
        if _RANGE.fullmatch(token):  # 3-5, 0.5-0.7: each end is a claim
            parts = [(m, chunk.start() + m.start()) for m in _NUMBER.finditer(token)]
        else:
            number = _NUMBER.match(token)
            if number is None:  # pragma: no cover - a chunk starting with a digit matches
                continue
            if number.end() < len(token) and token[number.end()] in "._":
                continue  # a dotted or underscored name that starts with digits (1.2.3)
            parts = [(number, chunk.start())]
        for k, (number, start) in enumerate(parts):
            sign_char = ""
            if k == 0 and start > 0 and cleaned[start - 1] in _SIGNS:
                before = cleaned[start - 2] if start > 1 else " "
                if not (before.isalnum() or before in ".%)"):
                    sign_char = cleaned[start - 1]  # a sign, not a range dash or a hyphen
            end = start + number.end() - number.start()
            percent = _PERCENT_AFTER.match(cleaned, end) is not None
            found.append(_written(number, sign_char, percent))
    return found


def _written(number: re.Match[str], sign_char: str, percent: bool) -> WrittenNumber:
    whole, decimals, exponent = number.group(1), number.group(2) or "", number.group(3)
    mantissa = float(f"{whole}.{decimals}" if decimals else whole)
    power = int(exponent) if exponent else 0
    sign = _SIGNS.get(sign_char, 1)
    text = f"{sign_char}{number.group()}{'%' if percent else ''}"
    return WrittenNumber(
        text=text,
        value=sign * mantissa * 10.0**power,
        tolerance=0.5 * 10.0 ** (power - len(decimals)),
        percent=percent,
        signed=bool(sign_char),
    )


def _matches(written: WrittenNumber, values: Sequence[float]) -> bool:
    """``written`` equals some value rounded to its precision (module docstring)."""
    slack = written.tolerance * (1 + 1e-9) + 1e-12 * abs(written.value)
    for value in values:
        candidates = (value, value * 100.0) if written.percent else (value,)
        for candidate in candidates:
            if not written.signed:
                candidate = abs(candidate)
                target = abs(written.value)
            else:
                target = written.value
            if abs(candidate - target) <= slack:
                return True
    return False


def _check_text(
    where: str,
    text: str,
    evidence: _Evidence,
    allowed_symbols: set[str],
    bases: set[str],
    allowed_bases: set[str],
) -> Iterator[str]:
    for moment in _DATETIME.finditer(text):
        if not _date_supported(moment, evidence):
            yield f"{where}: date {moment.group().strip()} is not in the evidence"
    without_dates = _DATETIME.sub(" ", text)
    for pair in _PAIR.finditer(without_dates):
        if pair.group().upper() not in allowed_symbols:
            yield f"{where}: symbol {pair.group()} is not one the tools were asked about"
    for word in _BARE_ASSET.finditer(_PAIR.sub(" ", without_dates)):
        if word.group() in bases and word.group() not in allowed_bases:
            yield f"{where}: asset {word.group()} is not one the tools were asked about"
    for number in written_numbers(text, ids=evidence.strings):
        if not _matches(number, evidence.numbers):
            yield f"{where}: number {number.text} matches no value the tools returned"


def _date_supported(moment: re.Match[str], evidence: _Evidence) -> bool:
    year, month, day, hour, minute, second, fraction, offset = moment.groups()
    try:
        day_value = date(int(year), int(month), int(day))
        if hour is None:
            return day_value in evidence.days
        zone = (offset or "").strip()
        tz = (
            UTC
            if zone in {"", "Z", "UTC"}
            else datetime.strptime(zone.replace(":", ""), "%z").tzinfo
        )
        micros = int((fraction or ".")[1:7].ljust(6, "0"))  # a written fraction must match too
        aware = datetime(
            int(year),
            int(month),
            int(day),
            int(hour),
            int(minute),
            int(second or 0),
            micros,
            tzinfo=tz,
        )
    except ValueError:
        return False  # not a real calendar date or offset: never supported
    return aware.astimezone(UTC) in evidence.instants


def _check_citations(answer: Explanation, calls: Sequence[ToolCall]) -> Iterator[str]:
    by_id = {call.id: call for call in calls}
    for citation in answer.citations:
        call = by_id.get(citation.tool_call_id)
        if call is None:
            yield f"citation {citation.tool_call_id}/{citation.field}: no such tool call was made"
            continue
        try:
            field_value(call.output, citation.field)
        except KeyError:
            yield (
                f"citation {citation.tool_call_id}/{citation.field}: no field {citation.field!r}"
                f" in the output of {call.tool}"
            )


def _texts(answer: Explanation) -> Iterator[tuple[str, str]]:
    yield "summary", answer.summary
    for i, text in enumerate(answer.drivers):
        yield f"drivers[{i}]", text
    for i, text in enumerate(answer.risk_notes):
        yield f"risk_notes[{i}]", text


def _collect(calls: Sequence[ToolCall]) -> _Evidence:
    evidence = _Evidence(numbers=[], instants=set(), days=set(), strings=set())
    for call in calls:
        for value in _leaves(call.args):
            _add_leaf(evidence, value, numbers=False)
        for value in _leaves(call.output):
            _add_leaf(evidence, value, numbers=True)
        evidence.strings.add(call.id)
    return evidence


def _leaves(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _leaves(value)
    elif isinstance(node, list | tuple):
        for value in node:
            yield from _leaves(value)
    else:
        yield node


def _add_leaf(evidence: _Evidence, value: Any, *, numbers: bool) -> None:
    if isinstance(value, bool) or value is None:
        return
    if isinstance(value, int | float):
        if numbers and math.isfinite(value):
            evidence.numbers.append(float(value))
        return
    if isinstance(value, datetime | date):
        _add_moment(evidence, value)
        return
    if not isinstance(value, str):
        return
    text = value.strip()
    if numbers and _NUMBER.fullmatch(text.lstrip("+-")):
        evidence.numbers.append(float(text))
        return
    moment = _parse_moment(text)
    if moment is not None:
        _add_moment(evidence, moment)
    elif _looks_like_id(text) or _looks_like_quote(text):
        evidence.strings.add(text)  # an id the tools returned (a run id, a decision id)


def _looks_like_id(text: str) -> bool:
    """One word of letters and digits (a run id, a decision id, a model version tag)."""
    return (
        len(text) >= 4
        and " " not in text
        and any(c.isdigit() for c in text)
        and any(c.isalpha() for c in text)
    )


def _looks_like_quote(text: str) -> bool:
    """A whole text value with figures in it (a headline): quoting it verbatim claims nothing."""
    return len(text) >= 12 and " " in text and any(c.isdigit() for c in text)


def _parse_moment(text: str) -> date | datetime | None:
    if not _DATETIME.fullmatch(text):
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text.replace(" UTC", "+00:00"))
    except ValueError:
        return None


def _add_moment(evidence: _Evidence, moment: date | datetime) -> None:
    if isinstance(moment, datetime):
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        instant = aware.astimezone(UTC)
        evidence.instants.add(instant)
        evidence.days.add(instant.date())
    else:
        evidence.days.add(moment)
