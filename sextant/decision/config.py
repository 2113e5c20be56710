"""Frozen, strict configs of the decision core, each packed into a float64 array for the kernels.

Every field is validated when the config is built (``ConfigError`` names the field and the
value); ``from_dict`` refuses unknown keys. ``to_array()`` lays a config out in the order of the
index constants in ``sextant.decision._kernels``, which is what the compiled kernels read, so the
live service and the backtest see the same numbers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import numpy as np
import numpy.typing as npt

from sextant.decision import _kernels as layout
from sextant.errors import ConfigError

__all__ = ["DecisionConfig", "FuserConfig", "FuserMode", "RiskConfig", "SizingConfig"]

FuserMode = Literal["weighted", "agreement", "ml_gated"]
FloatArray = npt.NDArray[np.float64]


def _number(owner: str, name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{owner}.{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(f"{owner}.{name} must be finite, got {value!r}")
    return number


def _in_range(
    owner: str,
    name: str,
    value: object,
    lo: float,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    number = _number(owner, name, value)
    below = number <= lo if lo_open else number < lo
    above = number >= hi if hi_open else number > hi
    if below or above:
        left = "(" if lo_open else "["
        right = ")" if hi_open else "]"
        raise ConfigError(f"{owner}.{name} must be in {left}{lo}, {hi}{right}, got {value!r}")


def _integer(owner: str, name: str, value: object, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{owner}.{name} must be an integer, got {value!r}")
    if value < lo:
        raise ConfigError(f"{owner}.{name} must be >= {lo}, got {value!r}")


def _flag(owner: str, name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(f"{owner}.{name} must be true or false, got {value!r}")


class _Strict:
    """``from_dict`` that refuses unknown keys, and ``as_dict`` for logging and hashing."""

    __slots__ = ()

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping; unknown keys are a ConfigError naming them."""
        known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(
                f"unknown {cls.__name__} keys: {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        """Field values by name (plain Python values)."""
        return dataclasses.asdict(self)  # type: ignore[call-overload, no-any-return]


@dataclass(frozen=True, slots=True)
class FuserConfig(_Strict):
    """TA rules, ML family weights and how the two halves are fused into one direction.

    Modes: ``weighted`` (weighted mean of the TA and ML scores), ``agreement`` (the weighted
    mean, only when both scores have the same non-zero sign; else 0), ``ml_gated`` (the ML
    score, only when ``sign(ml) * ta > ml_gate_ta_min``; else 0). With no ML family available
    the fused score is 0 (no new risk) unless ``allow_ta_only``, which then uses the TA score.
    A TA weight of 0 makes an ML-only fuser, an ML weight of 0 a TA-only one (any mode).
    """

    mode: FuserMode = "weighted"
    ta_weight: float = 0.5
    ml_weight: float = 0.5
    trend_weight: float = 1.0
    rsi_weight: float = 1.0
    macd_weight: float = 1.0
    mean_reversion_weight: float = 1.0
    breakout_weight: float = 1.0
    adx_min: float = 20.0  # trend vote only when ADX(14) >= this
    rsi_high: float = 55.0  # RSI above: +1 momentum vote
    rsi_low: float = 45.0  # RSI below: -1 momentum vote
    xgb_weight: float = 1.0
    lstm_weight: float = 1.0
    entry_threshold: float = 0.2  # |fused score| needed for a direction
    exit_threshold: float = 0.0  # an open position closes when the score is against it by more
    allow_ta_only: bool = False  # trade on TA alone when no ML family is available
    ml_gate_ta_min: float = 0.0  # ml_gated: TA must exceed this in the ML's direction

    def __post_init__(self) -> None:
        owner = "FuserConfig"
        if self.mode not in layout.MODE_NAMES:
            raise ConfigError(
                f"{owner}.mode must be one of {', '.join(layout.MODE_NAMES)}, got {self.mode!r}"
            )
        for name in (
            "ta_weight",
            "ml_weight",
            "trend_weight",
            "rsi_weight",
            "macd_weight",
            "mean_reversion_weight",
            "breakout_weight",
            "xgb_weight",
            "lstm_weight",
        ):
            _in_range(owner, name, getattr(self, name), 0.0)
        if self.ta_weight + self.ml_weight <= 0:
            raise ConfigError(f"{owner}: ta_weight and ml_weight are both 0")
        if sum(self.vote_weights) <= 0:
            raise ConfigError(f"{owner}: every TA vote weight is 0")
        if self.ml_weight > 0 and self.xgb_weight + self.lstm_weight <= 0:
            raise ConfigError(f"{owner}: ml_weight > 0 but xgb_weight and lstm_weight are both 0")
        _in_range(owner, "adx_min", self.adx_min, 0.0, 100.0)
        _in_range(owner, "rsi_high", self.rsi_high, 0.0, 100.0)
        _in_range(owner, "rsi_low", self.rsi_low, 0.0, 100.0)
        if self.rsi_low > self.rsi_high:
            raise ConfigError(
                f"{owner}.rsi_low ({self.rsi_low}) must not exceed rsi_high ({self.rsi_high})"
            )
        _in_range(owner, "entry_threshold", self.entry_threshold, 0.0, 1.0)
        _in_range(owner, "exit_threshold", self.exit_threshold, 0.0, 1.0)
        _flag(owner, "allow_ta_only", self.allow_ta_only)
        _in_range(owner, "ml_gate_ta_min", self.ml_gate_ta_min, -1.0, 1.0, hi_open=True)

    @property
    def vote_weights(self) -> tuple[float, ...]:
        """TA vote weights in ``VOTE_NAMES`` order."""
        return (
            self.trend_weight,
            self.rsi_weight,
            self.macd_weight,
            self.mean_reversion_weight,
            self.breakout_weight,
        )

    @classmethod
    def with_log_loss_weights(
        cls, xgb_log_loss: float, lstm_log_loss: float, **fields: Any
    ) -> FuserConfig:
        """A config whose ML family weights are the inverse validation log losses."""
        for name, value in (("xgb_log_loss", xgb_log_loss), ("lstm_log_loss", lstm_log_loss)):
            _in_range("FuserConfig", name, value, 0.0, lo_open=True)
        return cls.from_dict(
            {**fields, "xgb_weight": 1.0 / xgb_log_loss, "lstm_weight": 1.0 / lstm_log_loss}
        )

    def to_array(self) -> FloatArray:
        """The kernel layout (``FU_*`` indices)."""
        a = np.zeros(layout.FU_SIZE, dtype=np.float64)
        a[layout.FU_W_VOTES : layout.FU_W_VOTES + layout.N_VOTES] = self.vote_weights
        a[layout.FU_ADX_MIN] = self.adx_min
        a[layout.FU_RSI_HIGH] = self.rsi_high
        a[layout.FU_RSI_LOW] = self.rsi_low
        a[layout.FU_W_XGB] = self.xgb_weight
        a[layout.FU_W_LSTM] = self.lstm_weight
        a[layout.FU_W_TA] = self.ta_weight
        a[layout.FU_W_ML] = self.ml_weight
        a[layout.FU_MODE] = layout.MODE_NAMES.index(self.mode)
        a[layout.FU_ENTRY] = self.entry_threshold
        a[layout.FU_EXIT] = self.exit_threshold
        a[layout.FU_ALLOW_TA_ONLY] = 1.0 if self.allow_ta_only else 0.0
        a[layout.FU_GATE_TA_MIN] = self.ml_gate_ta_min
        return a


@dataclass(frozen=True, slots=True)
class SizingConfig(_Strict):
    """Volatility target capped by fractional Kelly and leverage; ATR multiples of stop and target.

    Entry (notional) fraction of equity = min(target_annual_vol / (sigma_bar *
    sqrt(bars_per_year)), f_loss / (stop_atr * natr / 100), max_leverage), where f_loss =
    kelly_fraction * max(p - (1 - p) / kelly_payoff_ratio, 0) is the fraction of equity lost
    if the stop is hit and p is P(return over the models' horizon > 0) in the trade's
    direction. ``stop_atr`` and ``take_profit_atr`` place the exits; Kelly's b is not their
    ratio, since p is not the probability of the target before the stop.
    """

    target_annual_vol: float = 0.20
    bars_per_year: float = 8760.0  # hourly bars
    kelly_fraction: float = 0.25
    # mean H-bar gain of a winning trade over the mean H-bar loss of a losing one; 1 for the
    # symmetric horizon bet that a calibrated P(up) describes
    kelly_payoff_ratio: float = 1.0
    stop_atr: float = 2.0
    take_profit_atr: float = 3.0
    max_leverage: float = 1.0

    def __post_init__(self) -> None:
        owner = "SizingConfig"
        _in_range(owner, "target_annual_vol", self.target_annual_vol, 0.0, 10.0, lo_open=True)
        _in_range(owner, "bars_per_year", self.bars_per_year, 0.0, lo_open=True)
        _in_range(owner, "kelly_fraction", self.kelly_fraction, 0.0, 1.0, lo_open=True)
        _in_range(owner, "kelly_payoff_ratio", self.kelly_payoff_ratio, 0.0, 100.0, lo_open=True)
        _in_range(owner, "stop_atr", self.stop_atr, 0.0, 100.0, lo_open=True)
        _in_range(owner, "take_profit_atr", self.take_profit_atr, 0.0, 100.0, lo_open=True)
        _in_range(owner, "max_leverage", self.max_leverage, 0.0, 100.0, lo_open=True)

    def to_array(self) -> FloatArray:
        """The kernel layout (``SZ_*`` indices, ``SIZING_FIELDS`` order)."""
        return np.array([getattr(self, name) for name in layout.SIZING_FIELDS], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class RiskConfig(_Strict):
    """Limits of the risk gate; fractions are of current equity unless said otherwise."""

    kill_switch: bool = False  # initial kill-switch position (RiskGate can engage it at run time)
    max_feature_age_bars: int = 1  # features older than this many bars are stale
    min_models: int = 1  # ML families that must be available to add risk
    min_confidence: float = 0.1
    max_position: float = 1.0  # |position| / equity per symbol
    max_gross_exposure: float = 1.5  # sum over symbols of |position| / equity
    daily_loss_limit: float = 0.05  # loss from the start-of-UTC-day equity → HALTED for the day
    soft_drawdown: float = 0.15  # from peak equity → REDUCING
    hard_drawdown: float = 0.25  # from peak equity → HALTED (sticky)
    var_limit: float = 0.03  # one-bar VaR(99%) of the position / equity
    max_consecutive_errors: int = 3  # model errors in a row → HALTED (sticky)
    max_orders_per_day: int = 24  # orders per UTC day (risk-reducing orders always pass)
    halt_reset_days: int = 0  # 0: drawdown episodes wait for reset(); N: end after N UTC days

    def __post_init__(self) -> None:
        owner = "RiskConfig"
        _flag(owner, "kill_switch", self.kill_switch)
        _integer(owner, "max_feature_age_bars", self.max_feature_age_bars, 0)
        _integer(owner, "min_models", self.min_models, 0)
        if self.min_models > 2:
            raise ConfigError(f"{owner}.min_models must be 0, 1 or 2, got {self.min_models}")
        _in_range(owner, "min_confidence", self.min_confidence, 0.0, 1.0)
        _in_range(owner, "max_position", self.max_position, 0.0, 100.0)
        _in_range(owner, "max_gross_exposure", self.max_gross_exposure, 0.0, 100.0)
        _in_range(owner, "daily_loss_limit", self.daily_loss_limit, 0.0, 1.0, lo_open=True)
        _in_range(owner, "soft_drawdown", self.soft_drawdown, 0.0, 1.0, lo_open=True)
        _in_range(owner, "hard_drawdown", self.hard_drawdown, 0.0, 1.0, lo_open=True)
        if self.soft_drawdown > self.hard_drawdown:
            raise ConfigError(
                f"{owner}.soft_drawdown ({self.soft_drawdown}) must not exceed "
                f"hard_drawdown ({self.hard_drawdown})"
            )
        _in_range(owner, "var_limit", self.var_limit, 0.0, 1.0, lo_open=True)
        _integer(owner, "max_consecutive_errors", self.max_consecutive_errors, 1)
        _integer(owner, "max_orders_per_day", self.max_orders_per_day, 0)
        _integer(owner, "halt_reset_days", self.halt_reset_days, 0)

    def to_array(self) -> FloatArray:
        """The kernel layout (``RK_*`` indices)."""
        a = np.zeros(layout.RK_SIZE, dtype=np.float64)
        a[layout.RK_KILL] = 1.0 if self.kill_switch else 0.0
        a[layout.RK_MAX_AGE] = self.max_feature_age_bars
        a[layout.RK_MIN_MODELS] = self.min_models
        a[layout.RK_MIN_CONFIDENCE] = self.min_confidence
        a[layout.RK_POSITION] = self.max_position
        a[layout.RK_GROSS] = self.max_gross_exposure
        a[layout.RK_DAILY_LOSS] = self.daily_loss_limit
        a[layout.RK_SOFT_DD] = self.soft_drawdown
        a[layout.RK_HARD_DD] = self.hard_drawdown
        a[layout.RK_VAR] = self.var_limit
        a[layout.RK_MAX_ERRORS] = self.max_consecutive_errors
        a[layout.RK_MAX_ORDERS] = self.max_orders_per_day
        a[layout.RK_RESET_DAYS] = self.halt_reset_days
        return a


@dataclass(frozen=True, slots=True)
class DecisionConfig:
    """The fuser, sizing and risk configs of one strategy, checked for consistency together."""

    fuser: FuserConfig = field(default_factory=FuserConfig)
    sizing: SizingConfig = field(default_factory=SizingConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)

    def __post_init__(self) -> None:
        for name, kind in (
            ("fuser", FuserConfig),
            ("sizing", SizingConfig),
            ("risk", RiskConfig),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(
                    f"DecisionConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}"
                )
        if self.fuser.ml_weight == 0 and self.risk.min_models > 0:
            raise ConfigError(
                "DecisionConfig: a TA-only fuser (ml_weight=0) needs risk.min_models=0, "
                f"got min_models={self.risk.min_models}"
            )

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> DecisionConfig:
        """Build from ``{"fuser": {...}, "sizing": {...}, "risk": {...}}``; unknown keys are errors."""
        unknown = sorted(set(values) - {"fuser", "sizing", "risk"})
        if unknown:
            raise ConfigError(
                f"unknown DecisionConfig keys: {', '.join(unknown)}; known: fuser, risk, sizing"
            )
        return cls(
            fuser=FuserConfig.from_dict(values.get("fuser", {})),
            sizing=SizingConfig.from_dict(values.get("sizing", {})),
            risk=RiskConfig.from_dict(values.get("risk", {})),
        )

    def as_dict(self) -> dict[str, dict[str, Any]]:
        """Nested field values, for MLflow params and the config hash."""
        return {
            "fuser": self.fuser.as_dict(),
            "sizing": self.sizing.as_dict(),
            "risk": self.risk.as_dict(),
        }

    def config_hash(self) -> str:
        """Stable short hash of every setting (goes into MLflow runs and decision records)."""
        text = json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def ta_only(self) -> DecisionConfig:
        """The TA-only baseline of this strategy: TA weight 1, ML weight 0, no model required."""
        fuser = dataclasses.replace(self.fuser, ta_weight=1.0, ml_weight=0.0, allow_ta_only=True)
        return DecisionConfig(fuser, self.sizing, dataclasses.replace(self.risk, min_models=0))

    def ml_only(self) -> DecisionConfig:
        """The ML-only baseline of this strategy: TA weight 0, ML weight 1."""
        fuser = dataclasses.replace(self.fuser, ta_weight=0.0, ml_weight=1.0, allow_ta_only=False)
        risk = (
            self.risk if self.risk.min_models > 0 else dataclasses.replace(self.risk, min_models=1)
        )
        return DecisionConfig(fuser, self.sizing, risk)
