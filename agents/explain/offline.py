"""The offline explainer: a deterministic narrative of a decision, an anomaly or the market.

It needs no LLM and always works: it calls the read-only tools through ``Tool.run`` (each call
recorded as a ``ToolCall`` with ids ``offline-1``, ``offline-2``, ...) and writes the narrative
from their outputs only. Every number in the text is printed by ``format_number`` from a value a
tool returned, and every such value is cited (tool call id + dotted field path) in
``Explanation.citations``; symbols and times are printed as the tools returned them.

**Rounding rule** (what the grounding guard checks numbers against), ``format_number``:

- booleans are words, never numbers; ``None``/NaN print as ``n/a`` (not a number);
- integers (and floats with an integral value below 10^15) print exactly, without separators;
- other values with ``|x| >= 1000`` print with 2 decimals, fixed point (``46902.69``);
- every other value prints with 4 significant digits in Python's ``{:.4g}`` format, which
  switches to exponent notation below 10^-4 (``0.0001839``, ``1.839e-05``, ``-0.118``).

``rounded(x)`` is the float a printed number stands for (``float(format_number(x))``): a printed
number is grounded when it equals ``rounded(v)`` for some value ``v`` in a cited tool output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agents.explain.schema import Citation, Explanation
from agents.tools.base import ToolCall, field_value
from agents.tools.context import Evidence
from agents.tools.registry import tool_by_name
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "NEARBY_BARS",
    "ROUNDING_RULE",
    "CallLog",
    "explain_anomalies",
    "explain_anomaly",
    "explain_decision",
    "explain_market",
    "explain_models",
    "format_number",
    "render_text",
    "rounded",
]

ROUNDING_RULE = (
    "integers exactly; |x| >= 1000: 2 decimals fixed; otherwise 4 significant digits ({:.4g})"
)
NEARBY_BARS = 6  # anomalies of the symbol this many bars before a decision are "nearby"
TOP_DRIVERS = 5
_DIRECTIONS = {1: "up", -1: "down", 0: "flat"}


def format_number(value: Any) -> str:
    """The printed form of a tool output's number (the module docstring's rounding rule)."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value).lower()
    number = float(value)
    if not math.isfinite(number):
        return "n/a"
    if isinstance(value, int) or (number.is_integer() and abs(number) < 1e15):
        return str(int(number))
    if abs(number) >= 1000:
        return f"{number:.2f}"
    return f"{number:.4g}"


def rounded(value: Any) -> float:
    """The number ``format_number(value)`` prints, as a float (NaN when it prints none)."""
    text = format_number(value)
    try:
        return float(text)
    except ValueError:
        return math.nan


@dataclass
class CallLog:
    """The tool calls of one conversation, with ids ``offline-<n>``, and the citations made."""

    evidence: Evidence
    calls: list[ToolCall] = field(default_factory=list)
    start: int = 1

    def call(self, name: str, **args: Any) -> ToolCall:
        """Run the read-only tool ``name`` and record the call."""
        output = tool_by_name(name).run(self.evidence, args)
        call = ToolCall(
            id=f"offline-{self.start + len(self.calls)}",
            tool=name,
            args={k: _plain(v) for k, v in args.items()},
            output=output,
        )
        self.calls.append(call)
        return call


class _Writer:
    """Prints cited values: each ``num``/``text`` adds the citation of what it printed."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._cited: set[tuple[str, str]] = set()

    def _cite(self, call: ToolCall, path: str) -> Any:
        value = field_value(call.output, path)
        if (call.id, path) not in self._cited:
            self._cited.add((call.id, path))
            self.citations.append(Citation(tool_call_id=call.id, field=path))
        return value

    def num(self, call: ToolCall, path: str) -> str:
        """The number at ``path`` of the call's output, printed by the rounding rule."""
        return format_number(self._cite(call, path))

    def text(self, call: ToolCall, path: str) -> str:
        """The text (symbol, time, code) at ``path``, printed as returned."""
        value = self._cite(call, path)
        return "n/a" if value is None else str(value)

    def has(self, call: ToolCall, path: str) -> bool:
        try:
            return field_value(call.output, path) is not None
        except KeyError:
            return False


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


# --- decisions ------------------------------------------------------------------------------


def explain_decision(
    evidence: Evidence, decision_id: str, *, first_call: int = 1
) -> tuple[Explanation, list[ToolCall]]:
    """Why the decision was made: drivers, TA votes, models, fuser, sizing, risk, anomalies."""
    log = CallLog(evidence, start=first_call)
    decision = log.call("get_decision", decision_id=decision_id)
    contributions = log.call("decision_contributions", decision_id=decision_id, top=TOP_DRIVERS)
    risk = log.call("risk_checks", decision_id=decision_id)
    record = decision.output
    ts = datetime.fromisoformat(str(record["ts"]))
    bar = timeframe_to_timedelta(evidence.settings.timeframe)
    nearby = log.call(
        "anomalies",
        symbol=str(record["symbol"]),
        since=ts - NEARBY_BARS * bar,
        until=ts,
        limit=20,
    )
    w = _Writer()
    summary = _decision_summary(w, decision, risk)
    drivers = [
        *_contribution_lines(w, contributions),
        _ta_line(w, decision),
        _models_line(w, decision),
        _fuser_line(w, decision),
        _sizing_line(w, decision),
    ]
    risk_notes = [*_risk_lines(w, risk), *_anomaly_lines(w, nearby)]
    return (
        Explanation(
            summary=summary,
            drivers=[d for d in drivers if d],
            risk_notes=risk_notes,
            citations=w.citations,
        ),
        log.calls,
    )


def _decision_summary(w: _Writer, decision: ToolCall, risk: ToolCall) -> str:
    out = decision.output
    direction = _DIRECTIONS.get(int(out.get("direction") or 0), "flat")
    failed = list(risk.output.get("failed") or [])
    if out.get("risk_approved") and not failed:
        verdict = "the risk gate approved it, every check passing"
    elif out.get("risk_approved"):  # a flat target passes even while checks fail
        verdict = f"the risk gate approved this target although checks failed ({', '.join(failed)})"
    else:
        verdict = f"the risk gate refused it ({', '.join(failed) or 'no code'})"
    if failed or not out.get("risk_approved"):
        w._cite(risk, "failed")
    return (
        f"At {w.text(decision, 'ts')} the engine decided {w.text(decision, 'action')} on "
        f"{w.text(decision, 'symbol')} at price {w.num(decision, 'price')}: fused score "
        f"{w.num(decision, 'fused_score')} ({direction}, confidence "
        f"{w.num(decision, 'confidence')}), target {w.num(decision, 'target_fraction')} of equity "
        f"from {w.num(decision, 'current_fraction')}; {verdict}, trading state "
        f"{w.text(decision, 'trading_state')}."
    )


def _contribution_lines(w: _Writer, contributions: ToolCall) -> list[str]:
    out = contributions.output
    if not out.get("available"):
        return [f"XGBoost contributions are not available: {w.text(contributions, 'reason')}."]
    parts = []
    for i, _ in enumerate(out.get("contributions", [])):
        base = f"contributions.{i}"
        sign = "+" if float(out["contributions"][i]["contribution"]) >= 0 else ""
        parts.append(
            f"{w.text(contributions, base + '.feature')} = {w.num(contributions, base + '.value')}"
            f" ({sign}{w.num(contributions, base + '.contribution')})"
        )
    return [
        f"Top XGBoost drivers ({w.text(contributions, 'model')} version "
        f"{w.text(contributions, 'model_version')}, TreeSHAP in log-odds, bias "
        f"{w.num(contributions, 'bias')}, margin {w.num(contributions, 'margin')}, P(up) raw "
        f"{w.num(contributions, 'p_up_raw')}, calibrated {w.num(contributions, 'p_up')}): "
        + "; ".join(parts)
        + "."
    ]


def _ta_line(w: _Writer, decision: ToolCall) -> str:
    votes = decision.output.get("ta_votes") or {}
    parts = [f"{name} {w.num(decision, 'ta_votes.' + name)}" for name in votes]
    missing = decision.output.get("ta_missing") or []
    tail = f"; missing inputs: {', '.join(map(str, missing))}" if missing else ""
    if missing:
        w._cite(decision, "ta_missing")
    return (
        f"TA votes (positive: up, negative: down): {', '.join(parts) or 'none'}; TA score "
        f"{w.num(decision, 'ta_score')}{tail}."
    )


def _models_line(w: _Writer, decision: ToolCall) -> str:
    versions = decision.output.get("model_versions") or {}
    named = ", ".join(f"{f} v{w.text(decision, 'model_versions.' + f)}" for f in versions)
    return (
        f"Model outputs: XGBoost P(up) {w.num(decision, 'models.p_xgb')}, LSTM P(up) "
        f"{w.num(decision, 'models.p_lstm')}, GARCH next-bar variance "
        f"{w.num(decision, 'models.garch_variance')} (VaR quantile "
        f"{w.num(decision, 'models.var_quantile')}); versions: {named or 'none'}."
    )


def _fuser_line(w: _Writer, decision: ToolCall) -> str:
    weights = decision.output.get("ml_weights") or {}
    weighted = ", ".join(f"{f} {w.num(decision, 'ml_weights.' + f)}" for f in weights)
    direction = _DIRECTIONS.get(int(decision.output.get("direction") or 0), "flat")
    w._cite(decision, "direction")
    return (
        f"Fuser ({w.text(decision, 'fuser_mode')} mode): ML probability "
        f"{w.num(decision, 'ml_probability')} with weights {weighted or 'none'} gives ML score "
        f"{w.num(decision, 'ml_score')}; with TA score {w.num(decision, 'ta_score')} the fused "
        f"score is {w.num(decision, 'fused_score')}, direction {direction}, confidence "
        f"{w.num(decision, 'confidence')}."
    )


def _sizing_line(w: _Writer, decision: ToolCall) -> str:
    s = "sizing."
    stops = ""
    if w.has(decision, "stop_loss") or w.has(decision, "take_profit"):
        stops = (
            f"; stop loss {w.num(decision, 'stop_loss')}, take profit "
            f"{w.num(decision, 'take_profit')}"
        )
    return (
        f"Sizing: volatility target {w.num(decision, s + 'vol_target_fraction')}, Kelly raw "
        f"{w.num(decision, s + 'kelly_raw')} (risk fraction "
        f"{w.num(decision, s + 'kelly_risk_fraction')}, cap {w.num(decision, s + 'kelly_cap')}); "
        f"fraction {w.num(decision, s + 'fraction')}, bound by {w.text(decision, s + 'binding')}; "
        f"order {w.num(decision, 'order_units')} units, notional "
        f"{w.num(decision, 'order_notional')}{stops}."
    )


def _risk_lines(w: _Writer, risk: ToolCall) -> list[str]:
    lines = []
    for i, check in enumerate(risk.output.get("checks", [])):
        base = f"checks.{i}"
        status = "passed" if check.get("passed") else "FAILED"
        code = f" {w.text(risk, base + '.reason_code')}" if check.get("reason_code") else ""
        lines.append(
            f"{w.text(risk, base + '.name')}: {status}{code}, observed "
            f"{w.num(risk, base + '.observed')} vs limit {w.num(risk, base + '.limit')}."
        )
    return lines


def _anomaly_lines(w: _Writer, nearby: ToolCall) -> list[str]:
    found = nearby.output.get("anomalies", [])
    if not found:
        return [
            f"No anomaly recorded for {w.text(nearby, 'symbol')} from {w.text(nearby, 'since')} "
            f"until {w.text(nearby, 'until')} (the bars before the decision)."
        ]
    lines = []
    for i, _ in enumerate(found):
        base = f"anomalies.{i}"
        lines.append(
            f"Nearby anomaly {w.text(nearby, base + '.kind')} ({w.text(nearby, base + '.severity')})"
            f" at bar {w.text(nearby, base + '.bar_ts')}: {w.text(nearby, base + '.statistic')} "
            f"{w.num(nearby, base + '.value')} vs threshold {w.num(nearby, base + '.threshold')}."
        )
    return lines


# --- anomalies ------------------------------------------------------------------------------


def explain_anomaly(
    evidence: Evidence, anomaly_id: str, *, first_call: int = 1
) -> tuple[Explanation, list[ToolCall]]:
    """What the anomaly is: its statistic against the threshold, its evidence's figures, the
    market when its bar closed, and the decisions made on that symbol right after."""
    log = CallLog(evidence, start=first_call)
    anomaly = log.call("get_anomaly", anomaly_id=anomaly_id)
    out = anomaly.output
    w = _Writer()
    summary = (
        f"{w.text(anomaly, 'kind')} ({w.text(anomaly, 'category')}, "
        f"{w.text(anomaly, 'severity')}) on {w.text(anomaly, 'symbol')} at bar "
        f"{w.text(anomaly, 'bar_ts')}: {w.text(anomaly, 'statistic')} "
        f"{w.num(anomaly, 'value')} against threshold {w.num(anomaly, 'threshold')}, detected at "
        f"{w.text(anomaly, 'detected_at')}."
    )
    drivers = _evidence_lines(w, anomaly)
    notes: list[str] = []
    symbol = out.get("symbol")
    if symbol:
        bar = timeframe_to_timedelta(evidence.settings.timeframe)
        bar_ts = datetime.fromisoformat(str(out["bar_ts"]))
        market = log.call("market_context", symbol=str(symbol), at=bar_ts + bar, max_headlines=3)
        drivers.append(_market_line(w, market))
        after = log.call(
            "list_decisions",
            symbol=str(symbol),
            since=bar_ts + bar,
            until=bar_ts + 4 * bar,
            limit=3,
        )
        for i, _ in enumerate(after.output.get("decisions", [])):
            base = f"decisions.{i}"
            notes.append(
                f"Decision {w.text(after, base + '.id')} at {w.text(after, base + '.ts')}: "
                f"{w.text(after, base + '.action')}, confidence "
                f"{w.num(after, base + '.confidence')}, target "
                f"{w.num(after, base + '.target_fraction')} of equity."
            )
        if not notes:
            notes.append(
                f"No decision recorded for {w.text(after, 'symbol')} from "
                f"{w.text(after, 'since')} until {w.text(after, 'until')}."
            )
    return Explanation(summary=summary, drivers=drivers, risk_notes=notes, citations=w.citations), (
        log.calls
    )


def _evidence_lines(w: _Writer, anomaly: ToolCall) -> list[str]:
    """The evidence's scalar figures (lists of values are summarised by their length)."""
    evidence = anomaly.output.get("evidence") or {}
    parts = []
    for key, value in evidence.items():
        path = f"evidence.{key}"
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, int | float):
            parts.append(f"{key} {w.num(anomaly, path)}")
        elif isinstance(value, str) and not any(ch.isdigit() for ch in value):
            parts.append(f"{key} {w.text(anomaly, path)}")
    return [f"Evidence: {'; '.join(parts)}."] if parts else []


# --- the market -----------------------------------------------------------------------------


def explain_market(
    evidence: Evidence, symbol: str, at: datetime | None = None, *, first_call: int = 1
) -> tuple[Explanation, list[ToolCall]]:
    """How the market for ``symbol`` looks as of ``at`` (default now)."""
    log = CallLog(evidence, start=first_call)
    args: dict[str, Any] = {"symbol": symbol}
    if at is not None:
        args["at"] = at
    market = log.call("market_context", **args)
    w = _Writer()
    summary = (
        f"{w.text(market, 'symbol')} as of {w.text(market, 'at')}: last close "
        f"{w.num(market, 'last_bar.close')} at {w.text(market, 'last_bar.close_time')} "
        f"({w.num(market, 'last_bar.age_hours')} hours before)."
    )
    drivers = [_market_line(w, market)]
    notes = [_garch_line(w, market)]
    headlines = market.output.get("headlines", [])
    for i, _ in enumerate(headlines):
        base = f"headlines.{i}"
        drivers.append(
            f"Headline (data, not instructions) at {w.text(market, base + '.available_at')}: "
            f"\u201c{w.text(market, base + '.title')}\u201d, sentiment "
            f"{w.num(market, base + '.sentiment')}."
        )
    if not headlines:
        hours = w.num(market, "headlines_window_hours")
        drivers.append(f"No headline was known in the {hours} hours before.")
    return Explanation(summary=summary, drivers=drivers, risk_notes=notes, citations=w.citations), (
        log.calls
    )


def _market_line(w: _Writer, market: ToolCall) -> str:
    out = market.output
    parts = []
    for span in ("1_bar", "24h", "7d"):
        if (out.get("returns") or {}).get(span):
            parts.append(f"{span} {w.num(market, f'returns.{span}.return')}")
    vols = []
    for span in ("24h", "7d"):
        if w.has(market, f"realized_volatility.{span}.std_log_return_per_bar"):
            vols.append(
                f"{span} {w.num(market, f'realized_volatility.{span}.std_log_return_per_bar')}"
            )
    fng = ""
    if out.get("fear_greed"):
        fng = (
            f"; Fear & Greed {w.num(market, 'fear_greed.value')} "
            f"({w.text(market, 'fear_greed.classification')})"
        )
    return (
        f"Market for {w.text(market, 'symbol')}: returns (fractions) "
        f"{', '.join(parts) or 'n/a'}; realized volatility per bar {', '.join(vols) or 'n/a'}"
        f"{fng}."
    )


def _garch_line(w: _Writer, market: ToolCall) -> str:
    garch = market.output.get("garch") or {}
    if not garch.get("available"):
        return f"GARCH volatility unavailable: {w.text(market, 'garch.reason')}."
    return (
        f"GARCH next-bar volatility {w.num(market, 'garch.vol_next_bar')} (variance "
        f"{w.num(market, 'garch.variance_next_bar')}) as recorded by decision "
        f"{w.text(market, 'garch.decision_id')}."
    )


def explain_models(
    evidence: Evidence, family: str | None = None, *, first_call: int = 1
) -> tuple[Explanation, list[ToolCall]]:
    """Which model versions are live (champion) and how good they were on held-out spans."""
    log = CallLog(evidence, start=first_call)
    args: dict[str, Any] = {} if family is None else {"family": family}
    info = log.call("model_info", **args)
    w = _Writer()
    drivers, notes, live = [], [], []
    for i, fam in enumerate(info.output.get("families", [])):
        base = f"families.{i}"
        name = w.text(info, base + ".model")
        if fam.get("champion") is None:
            drivers.append(f"{name}: no champion, its output is unavailable to decisions.")
            continue
        live.append(f"{name} version {w.text(info, base + '.champion')}")
        index = next(
            (j for j, v in enumerate(fam.get("versions", [])) if v["version"] == fam["champion"]),
            None,
        )
        if index is None:
            continue
        version = f"{base}.versions.{index}"
        figures = []
        key = "qlike" if fam.get("family") == "garch" else "auc"
        for span in ("selection", "reported"):
            path = f"{version}.metrics.{span}.{key}"
            if w.has(info, path):
                figures.append(f"{span} {key} {w.num(info, path)}")
            baseline = f"{version}.baseline.{span}.{key}"
            if w.has(info, baseline):
                figures.append(
                    f"baseline {w.text(info, version + '.baseline.name')} {w.num(info, baseline)}"
                )
        drivers.append(f"{name} (champion): {', '.join(figures) or 'no metrics recorded'}.")
        promotions = fam.get("promotions", [])
        if promotions:
            last = f"{base}.promotions.{len(promotions) - 1}"
            notes.append(
                f"{name}: last promotion decision {w.text(info, last + '.reason')} at "
                f"{w.text(info, last + '.time')}."
            )
        else:
            notes.append(f"{name}: no promotion decision in the ledger.")
    summary = (
        f"Live models: {', '.join(live)}." if live else "No model is live (no champion alias)."
    )
    return Explanation(summary=summary, drivers=drivers, risk_notes=notes, citations=w.citations), (
        log.calls
    )


def explain_anomalies(
    evidence: Evidence,
    *,
    since: datetime | None = None,
    symbol: str | None = None,
    limit: int = 10,
    first_call: int = 1,
) -> tuple[Explanation, list[ToolCall]]:
    """The anomalies recorded since ``since`` (newest first), each with its figures."""
    log = CallLog(evidence, start=first_call)
    args: dict[str, Any] = {"limit": limit}
    if since is not None:
        args["since"] = since
    if symbol is not None:
        args["symbol"] = symbol
    found = log.call("anomalies", **args)
    w = _Writer()
    where = f" for {w.text(found, 'symbol')}" if symbol is not None else ""
    when = f" since {w.text(found, 'since')}" if since is not None else ""
    count = w.num(found, "count")
    summary = f"{count} anomalies recorded{where}{when} (newest first)."
    if not found.output.get("anomalies"):
        summary = f"No anomaly recorded{where}{when}."
    drivers = []
    for i, _ in enumerate(found.output.get("anomalies", [])):
        base = f"anomalies.{i}"
        drivers.append(
            f"{w.text(found, base + '.id')}: {w.text(found, base + '.kind')} on "
            f"{w.text(found, base + '.symbol')} at bar {w.text(found, base + '.bar_ts')} "
            f"({w.text(found, base + '.severity')}), {w.text(found, base + '.statistic')} "
            f"{w.num(found, base + '.value')} vs threshold {w.num(found, base + '.threshold')}."
        )
    return Explanation(summary=summary, drivers=drivers, citations=w.citations), log.calls


def render_text(explanation: Explanation) -> str:
    """The explanation as plain text for a terminal (summary, drivers, risk notes)."""
    lines = [explanation.summary]
    if explanation.drivers:
        lines += ["", "Drivers:", *(f"  - {d}" for d in explanation.drivers)]
    if explanation.risk_notes:
        lines += ["", "Risk:", *(f"  - {n}" for n in explanation.risk_notes)]
    return "\n".join(lines)
