"""Request and response models of the decision service's HTTP API (`serving.app`).

Requests are strict (unknown fields are errors, 422); responses describe what the service
returns so that ``/docs`` documents it. Decision records are the decisions store's records
(`Decision.as_record()` with ``id`` and ``account``); JSON has no NaN, so an unknown figure (a
missing model output, an infinite feature age) is ``null``. Record models allow extra fields: a
field the record format gains later is passed through rather than dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from sextant.decision import Action, TradingState

__all__ = [
    "ACCOUNT_PATTERN",
    "MAX_BATCH_SYMBOLS",
    "MAX_PAGE",
    "AccountName",
    "AdminResetRequest",
    "BatchDecisionRequest",
    "BatchDecisionResponse",
    "ChatRequest",
    "DecisionFields",
    "DecisionPage",
    "DecisionRecord",
    "DecisionRequest",
    "DecisionResponse",
    "ErrorResponse",
    "ExplainRequest",
    "ExplanationAnswer",
    "ExplanationResponse",
    "GateResponse",
    "GateStatusOut",
    "HealthResponse",
    "KillSwitchRequest",
    "LatestMark",
    "ModelFamilyOut",
    "ModelOutputsOut",
    "ModelsResponse",
    "PortfolioResponse",
    "PositionOut",
    "ReadinessResponse",
    "ReloadRequest",
    "ReloadResponse",
    "RiskCheckOut",
    "SignalResponse",
    "SizingOut",
]

ACCOUNT_PATTERN = r"^[A-Za-z0-9_.-]{1,64}$"
# An account name: 1-64 characters of letters, digits, '_', '.', '-' (it keys stored books).
AccountName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=ACCOUNT_PATTERN)
]
# A symbol as the settings spell it ("BTC/USDT"); whether this home trades it is the engine's
# answer (404 naming it), the length bound only keeps junk out of messages and logs.
Symbol = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MAX_BATCH_SYMBOLS = 256  # a batch names distinct symbols of the settings; this bounds the parse
MAX_PAGE = 500  # the most records one page of GET /v1/decisions holds
Float = float | None  # null where the figure is unknown (NaN) or infinite


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecisionRequest(_Request):
    """Decide one symbol at the latest bar close (default account: SEXTANT_PAPER_ACCOUNT)."""

    symbol: Symbol
    account: AccountName | None = None


class BatchDecisionRequest(_Request):
    """Decide several distinct symbols in one engine call (one online read, one run per model)."""

    symbols: Annotated[list[Symbol], Field(min_length=1, max_length=MAX_BATCH_SYMBOLS)]
    account: AccountName | None = None

    @field_validator("symbols")
    @classmethod
    def _distinct(cls, symbols: list[str]) -> list[str]:
        repeated = sorted({s for s in symbols if symbols.count(s) > 1})
        if repeated:
            raise ValueError(f"symbols must be distinct; repeated: {', '.join(repeated)}")
        return symbols


class ReloadRequest(_Request):
    """Reload the registry's champions; ``force`` reloads even when no alias moved."""

    force: bool = False


class KillSwitchRequest(_Request):
    """Engage (``true``) or release (``false``) an account's kill switch."""

    engaged: bool
    account: AccountName | None = None


class AdminResetRequest(_Request):
    """Operator reset of an account's risk gate (ends a drawdown episode or breaker halt)."""

    account: AccountName | None = None


class ExplainRequest(_Request):
    """Explain a decision or an anomaly (``id``: its id) or the market (``id``: a symbol)."""

    subject: Literal["decision", "anomaly", "market"]
    id: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    question: Annotated[str, StringConstraints(min_length=1, max_length=2000)] | None = None


class ChatRequest(_Request):
    """One message of a trade-review chat; the same ``session_id`` continues a conversation."""

    session_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    message: Annotated[str, StringConstraints(min_length=1, max_length=2000)]


class _Record(BaseModel):
    model_config = ConfigDict(extra="allow")


class ModelOutputsOut(_Record):
    p_xgb: Float
    p_lstm: Float
    garch_variance: Float
    var_quantile: Float


class SizingOut(_Record):
    probability: Float
    vol_target_fraction: Float
    kelly_raw: Float
    kelly_risk_fraction: Float
    kelly_cap: Float
    fraction: Float
    binding: str | None
    stop_distance: Float
    take_profit_distance: Float


class RiskCheckOut(_Record):
    name: str
    passed: bool
    reason_code: str | None
    observed: Float
    limit: Float


class DecisionFields(_Record):
    """One decision's components: TA votes, model outputs, fused score, sizing, every check."""

    ts: datetime
    symbol: str
    price: Float
    action: Action
    features: dict[str, Float]
    models: ModelOutputsOut
    ta_votes: dict[str, Float]
    ta_missing: list[str]
    ta_score: Float
    ml_score: Float
    ml_probability: Float
    ml_weights: dict[str, Float]
    fuser_mode: str
    fused_score: Float
    direction: int
    confidence: Float
    sizing: SizingOut
    risk_checks: list[RiskCheckOut]
    risk_approved: bool
    trading_state: TradingState
    equity: Float
    current_fraction: Float
    proposed_fraction: Float
    target_fraction: Float
    order_notional: Float
    order_units: Float
    stop_loss: Float
    take_profit: Float
    feature_age_bars: Float
    config_hash: str
    model_versions: dict[str, str]


class DecisionRecord(DecisionFields):
    """A recorded decision: its components plus its stable id and account."""

    id: str
    account: str


class DecisionResponse(BaseModel):
    """A decision and who served it: ``stored`` is true when the bar was already decided for
    the account and the stored record is the answer (nothing new was decided or submitted)."""

    decision: DecisionRecord
    stored: bool
    model_versions: dict[str, str] = Field(description="the champions that served this call")
    feature_age_bars: Float = Field(description="the features' age by the clock, in bars")


class BatchDecisionResponse(BaseModel):
    """One bar's decisions, in the request's order."""

    ts: datetime
    account: str
    model_versions: dict[str, str]
    decisions: list[DecisionResponse]


class DecisionPage(BaseModel):
    """A page of decisions, newest bar first; pass ``next_cursor`` as ``cursor`` for the next."""

    decisions: list[DecisionRecord]
    next_cursor: str | None


class AnomalyRecord(BaseModel):
    """One anomaly the monitor stored: the statistic, the threshold it crossed, the evidence."""

    model_config = ConfigDict(extra="allow")

    id: str
    kind: str
    category: str
    symbol: str | None
    bar_ts: datetime
    severity: str
    detected_at: datetime
    statistic: str
    value: Float
    threshold: Float
    detail: str
    evidence: dict[str, Any]


class AnomalyPage(BaseModel):
    """Anomalies, newest bar first."""

    anomalies: list[AnomalyRecord]


class ExplanationAnswer(_Record):
    """The structured answer: each citation names a tool call id and a field of its output."""

    summary: str
    drivers: list[str]
    risk_notes: list[str]
    citations: list[dict[str, str]]


class ExplanationResponse(_Record):
    """An explainer's answer as stored: who answered (``offline`` without an LLM), whether every
    number and name was grounded in a tool's output (else ``failed_claims``), the trace id."""

    id: str
    subject: Literal["decision", "anomaly", "market", "chat"]
    subject_id: str
    question: str
    answer: ExplanationAnswer
    model: str
    grounded: bool
    failed_claims: list[str]
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    trace_id: str | None
    created_at: str


class SignalResponse(BaseModel):
    """What a decision would be now, computed and not recorded (nothing is submitted)."""

    account: str
    recorded: Literal[False] = False
    signal: DecisionFields


class ModelFamilyOut(BaseModel):
    """A family's champion as served, or ``present: false`` without one."""

    family: str
    registered_model: str
    present: bool
    alias: str | None = None
    version: str | None = None
    feature_service: str | None = None
    features: list[str] | None = None
    reported_metrics: dict[str, Any] | None = None
    selection_metrics: dict[str, Any] | None = None


class ModelsResponse(BaseModel):
    families: list[ModelFamilyOut]


class GateStatusOut(BaseModel):
    """The risk gate between decisions (`sextant.decision.GateStatus`)."""

    state: TradingState
    halt_reasons: list[str]
    kill_switch: bool
    peak_equity: Float
    day_start_equity: Float
    orders_today: int
    consecutive_errors: int


class PositionOut(BaseModel):
    symbol: str
    units: float
    pending_order_units: float | None = Field(
        description="target units of the order waiting for the next open (null: none)"
    )


class LatestMark(BaseModel):
    """The paper book after the latest bar it processed."""

    bar_open: datetime
    equity: Float
    cash: Float
    realized: Float
    unrealized: Float
    fees: Float
    funding: Float


class PortfolioResponse(BaseModel):
    """An account's paper book: ``opened`` is false before its first decision."""

    account: str
    opened: bool
    last_bar_open: datetime | None
    equity: Float
    cash: Float
    realized: Float
    unrealized: Float
    positions: list[PositionOut]
    latest_mark: LatestMark | None
    trading_state: TradingState
    gate: GateStatusOut


class GateResponse(BaseModel):
    account: str
    gate: GateStatusOut


class ReloadResponse(BaseModel):
    changed: bool
    versions: dict[str, str]
    previous: dict[str, str]


class HealthResponse(BaseModel):
    status: Literal["ok"] = "ok"


class ReadinessResponse(BaseModel):
    """Ready: a champion is loaded and every symbol's features are fresh by the clock."""

    ready: bool
    reasons: list[str]
    model_versions: dict[str, str]
    feature_age_bars: dict[str, Float]
    max_feature_age_bars: float


class ErrorResponse(BaseModel):
    """Every error: ``detail`` says what was wrong and what to do."""

    detail: str
