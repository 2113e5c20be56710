"""``decide``: features + model outputs + portfolio → one auditable Decision.

The serving layer calls exactly this; the backtest loop calls the same ``decide_kernel``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

import numpy as np

from sextant.decision import _kernels as layout
from sextant.decision._kernels import decide_kernel
from sextant.decision.config import DecisionConfig
from sextant.decision.fuser import FusedSignal, fused_signal_from
from sextant.decision.risk import (
    PortfolioState,
    RiskDecision,
    RiskGate,
    risk_decision_from,
    utc_day,
)
from sextant.decision.signals import (
    FEATURES_USED,
    MlSignal,
    TaSignal,
    feature_vector,
    ml_signal_from,
    ta_signal_from,
)
from sextant.decision.sizing import PositionSize, position_size_from
from sextant.errors import ConfigError, DataValidationError
from sextant.ta._jit import FloatArray

__all__ = ["Action", "Decision", "ModelOutputs", "PortfolioState", "decide"]


class Action(StrEnum):
    """The order a decision implies for one symbol."""

    BUY = "BUY"  # target above the current position (open or add long, or long from short)
    SELL = "SELL"  # target below the current position (open or add short, or short from long)
    HOLD = "HOLD"  # no order
    CLOSE = "CLOSE"  # target 0
    REDUCE = "REDUCE"  # same side, smaller


@dataclass(frozen=True, slots=True)
class ModelOutputs:
    """What the models said at this bar, as the decision reads it.

    ``p_xgb``/``p_lstm``: calibrated P(up) per family (NaN: unavailable); ``garch_variance``:
    one-step variance of the log return per bar; ``var_quantile``: the unit-variance innovation
    quantile for VaR (Student-t at 99 %, scaled to unit variance, as ``models.garch`` gives it).
    """

    p_xgb: float
    p_lstm: float
    garch_variance: float
    var_quantile: float


@dataclass(frozen=True, slots=True)
class Decision:
    """Everything a decision record needs: inputs, each component, the gate's checks, the order.

    Fractions are signed fractions of equity; notionals are in the quote currency. Stop and
    take profit are set for an entry or a reversal (NaN otherwise: an open position keeps
    its levels), around ``price``; the executor anchors the distances at its fill price.
    """

    symbol: str
    ts: datetime
    price: float
    action: Action
    features: Mapping[str, float]
    models: ModelOutputs
    ta: TaSignal
    ml: MlSignal
    fused: FusedSignal
    sizing: PositionSize
    risk: RiskDecision
    equity: float
    current_fraction: float
    target_fraction: float
    order_notional: float
    order_units: float
    stop_loss: float
    take_profit: float
    feature_age_bars: float
    config_hash: str
    model_versions: Mapping[str, str]

    @property
    def target_notional(self) -> float:
        """Signed target position in the quote currency."""
        return self.target_fraction * self.equity

    def as_record(self) -> dict[str, Any]:
        """Flat, JSON-friendly fields for the decision log (NaN stays NaN)."""
        return {
            "ts": self.ts.isoformat(),
            "symbol": self.symbol,
            "price": self.price,
            "action": str(self.action),
            "features": dict(self.features),
            "models": {
                "p_xgb": self.models.p_xgb,
                "p_lstm": self.models.p_lstm,
                "garch_variance": self.models.garch_variance,
                "var_quantile": self.models.var_quantile,
            },
            "ta_votes": dict(self.ta.votes),
            "ta_missing": list(self.ta.missing),
            "ta_score": self.ta.score,
            "ml_score": self.ml.score,
            "ml_probability": self.ml.probability,
            "ml_weights": dict(self.ml.weights),
            "fuser_mode": self.fused.mode,
            "fused_score": self.fused.score,
            "direction": self.fused.direction,
            "confidence": self.fused.confidence,
            "sizing": {
                "probability": self.sizing.probability,
                "vol_target_fraction": self.sizing.vol_target_fraction,
                "kelly_raw": self.sizing.kelly_raw,
                "kelly_risk_fraction": self.sizing.kelly_risk_fraction,
                "kelly_cap": self.sizing.kelly_cap,
                "fraction": self.sizing.fraction,
                "binding": self.sizing.binding,
                "stop_distance": self.sizing.stop_distance,
                "take_profit_distance": self.sizing.take_profit_distance,
            },
            "risk_checks": self.risk.check_records(),
            "risk_approved": self.risk.approved,
            "trading_state": str(self.risk.state),
            "equity": self.equity,
            "current_fraction": self.current_fraction,
            "proposed_fraction": self.risk.proposed,
            "target_fraction": self.target_fraction,
            "order_notional": self.order_notional,
            "order_units": self.order_units,
            "stop_loss": self.stop_loss,
            "take_profit": self.take_profit,
            "feature_age_bars": self.feature_age_bars,
            "config_hash": self.config_hash,
            "model_versions": dict(self.model_versions),
        }


_ACTIONS: tuple[Action, ...] = tuple(Action(name) for name in layout.ACTION_NAMES)
# per config object (configs are frozen): its fuser and sizing kernel arrays and its hash, which
# cost more than the decision kernel itself to build on every call; the kernels only read them
_KERNEL_CONFIGS: dict[int, tuple[DecisionConfig, FloatArray, FloatArray, str]] = {}
_MAX_KERNEL_CONFIGS = 64


def _kernel_config(config: DecisionConfig) -> tuple[FloatArray, FloatArray, str]:
    """``config``'s fuser and sizing arrays and its hash, built once per config object."""
    kept = _KERNEL_CONFIGS.get(id(config))
    if kept is None or kept[0] is not config:
        kept = (config, config.fuser.to_array(), config.sizing.to_array(), config.config_hash())
        if len(_KERNEL_CONFIGS) >= _MAX_KERNEL_CONFIGS:
            _KERNEL_CONFIGS.clear()
        _KERNEL_CONFIGS[id(config)] = kept
    return kept[1], kept[2], kept[3]


def decide(
    symbol: str,
    ts: datetime,
    features: Mapping[str, float | None],
    model_outputs: ModelOutputs,
    portfolio: PortfolioState,
    config: DecisionConfig,
    gate: RiskGate,
    *,
    price: float,
    feature_age_bars: float = 0.0,
    model_error: bool = False,
    model_versions: Mapping[str, str] | None = None,
) -> Decision:
    """One decision for ``symbol`` at the close ``ts`` (tz-aware) of the bar priced ``price``.

    ``features`` must hold ``FEATURES_USED`` (None or NaN: unknown); ``model_error`` says a
    model call failed (it counts toward the circuit breaker); ``model_versions`` (family →
    registry version) go into the record as given. ``gate`` must enforce ``config.risk``; its
    state advances.
    """
    if gate.config is not config.risk and gate.config != config.risk:
        raise ConfigError(
            f"decide({symbol}): the gate enforces a different RiskConfig than config.risk"
        )
    if not (math.isfinite(price) and price > 0):
        raise DataValidationError(
            f"{symbol} at {ts}: price is not positive: {price}", field="price"
        )
    feat = feature_vector(features)
    day = utc_day(ts)
    positions = portfolio.fractions(symbol)
    state, cfg_risk = gate.arrays()
    cfg_fuser, cfg_sizing, config_hash = _kernel_config(config)
    out = np.full(layout.N_OUT, np.nan)
    checks = np.zeros((layout.N_CHECKS, layout.N_CHECK_FIELDS), dtype=np.float64)
    m = model_outputs
    approved = decide_kernel(
        feat,
        float(m.p_xgb),
        float(m.p_lstm),
        float(m.garch_variance),
        float(m.var_quantile),
        float(price),
        day,
        float(feature_age_bars),
        bool(model_error),
        0,
        positions,
        float(portfolio.equity),
        state,
        cfg_fuser,
        cfg_sizing,
        cfg_risk,
        out,
        checks,
    )
    values = out.tolist()  # Python floats: read field by field below
    ta = ta_signal_from(values)
    ml = ml_signal_from(values, m.p_xgb, m.p_lstm)
    fused = fused_signal_from(values, ta, ml, config.fuser.mode)
    sizing = position_size_from(values, fused.direction, price)
    current = values[layout.O_CURRENT]
    risk = risk_decision_from(
        checks, approved, values[layout.O_PROPOSED], current, values[layout.O_STATE]
    )
    order_fraction = approved - current
    entering = approved != 0.0 and (current == 0.0 or approved * current < 0.0)
    side = math.copysign(1.0, approved)
    return Decision(
        symbol=symbol,
        ts=ts,
        price=float(price),
        action=_ACTIONS[int(values[layout.O_ACTION])],
        features=dict(zip(FEATURES_USED, feat.tolist(), strict=True)),
        models=model_outputs,
        ta=ta,
        ml=ml,
        fused=fused,
        sizing=sizing,
        risk=risk,
        equity=float(portfolio.equity),
        current_fraction=current,
        target_fraction=float(approved),
        order_notional=order_fraction * portfolio.equity,
        order_units=order_fraction * portfolio.equity / price,
        stop_loss=price - side * sizing.stop_distance if entering else math.nan,
        take_profit=price + side * sizing.take_profit_distance if entering else math.nan,
        feature_age_bars=float(feature_age_bars),
        config_hash=config_hash,
        model_versions=dict(model_versions or {}),
    )
