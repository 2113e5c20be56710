"""The decision core's configs (`sextant.config` style), each packed into a float64 array for the kernels.

Every field is validated when the config is built (``ConfigError`` names the field and the
value); unknown keys are refused. ``to_array()`` lays a config out in the order of the index
constants in ``sextant.decision._kernels``, which is what the compiled kernels read, so the live
service and the backtest see the same numbers.
"""

from __future__ import annotations

import functools
import math
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
from pydantic import model_validator

from sextant.config import (
    Fraction,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveInt,
    Probability,
    SextantConfig,
    Timeframe,
    config_hash,
    int_range,
    interval,
)
from sextant.decision import _kernels as layout
from sextant.errors import ConfigError
from sextant.timeframes import bars_per_year

__all__ = ["DecisionConfig", "FuserConfig", "FuserMode", "RiskConfig", "SizingConfig"]

FuserMode = Literal["weighted", "agreement", "ml_gated"]  # layout.MODE_NAMES, in that order
FloatArray = npt.NDArray[np.float64]
Percent = Annotated[float, interval(0.0, 100.0)]  # indicator levels (ADX, RSI)
Multiple = Annotated[float, interval(0.0, 100.0, lo_open=True)]  # ATR multiples, leverage, b


class FuserConfig(SextantConfig):
    """TA rules, ML family weights and how the two halves are fused into one direction.

    Modes: ``weighted`` (weighted mean of the TA and ML scores), ``agreement`` (the weighted
    mean, only when both scores have the same non-zero sign; else 0), ``ml_gated`` (the ML
    score, only when ``sign(ml) * ta > ml_gate_ta_min``; else 0). With no ML family available
    the fused score is 0 (no new risk) unless ``allow_ta_only``, which then uses the TA score.
    A TA weight of 0 makes an ML-only fuser, an ML weight of 0 a TA-only one (any mode).
    """

    mode: FuserMode = "weighted"
    ta_weight: NonNegativeFloat = 0.5
    ml_weight: NonNegativeFloat = 0.5
    trend_weight: NonNegativeFloat = 1.0
    rsi_weight: NonNegativeFloat = 1.0
    macd_weight: NonNegativeFloat = 1.0
    mean_reversion_weight: NonNegativeFloat = 1.0
    breakout_weight: NonNegativeFloat = 1.0
    adx_min: Percent = 20.0  # trend vote only when ADX(14) >= this
    rsi_high: Percent = 55.0  # RSI above: +1 momentum vote
    rsi_low: Percent = 45.0  # RSI below: -1 momentum vote
    xgb_weight: NonNegativeFloat = 1.0
    lstm_weight: NonNegativeFloat = 1.0
    entry_threshold: Probability = 0.2  # |fused score| needed for a direction
    # an open position closes when the score is against it by more
    exit_threshold: Probability = 0.0
    allow_ta_only: bool = False  # trade on TA alone when no ML family is available
    # ml_gated: TA must exceed this in the ML's direction
    ml_gate_ta_min: Annotated[float, interval(-1.0, 1.0, hi_open=True)] = 0.0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        owner = "FuserConfig"
        if self.ta_weight + self.ml_weight <= 0:
            raise ConfigError(f"{owner}: ta_weight and ml_weight are both 0")
        if sum(self.vote_weights) <= 0:
            raise ConfigError(f"{owner}: every TA vote weight is 0")
        if self.ml_weight > 0 and self.xgb_weight + self.lstm_weight <= 0:
            raise ConfigError(f"{owner}: ml_weight > 0 but xgb_weight and lstm_weight are both 0")
        if self.rsi_low > self.rsi_high:
            raise ConfigError(
                f"{owner}.rsi_low ({self.rsi_low}) must not exceed rsi_high ({self.rsi_high})"
            )
        return self

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
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not 0 < value < math.inf
            ):
                raise ConfigError(f"FuserConfig.{name} must be positive, got {value!r}")
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


class SizingConfig(SextantConfig):
    """Volatility target capped by fractional Kelly and leverage; ATR multiples of stop and target.

    Entry (notional) fraction of equity = min(target_annual_vol / (sigma_bar *
    sqrt(bars_per_year)), f_loss / (stop_atr * natr / 100), max_leverage), where f_loss =
    kelly_fraction * max(p - (1 - p) / kelly_payoff_ratio, 0) is the fraction of equity lost
    if the stop is hit and p is P(return over the models' horizon > 0) in the trade's
    direction. ``stop_atr`` and ``take_profit_atr`` place the exits; Kelly's b is not their
    ratio, since p is not the probability of the target before the stop. ``bars_per_year``
    follows from ``timeframe`` (the bars' length, as in the settings), never set by hand.
    """

    target_annual_vol: Annotated[float, interval(0.0, 10.0, lo_open=True)] = 0.20
    timeframe: Timeframe = "1h"  # of the bars sigma_bar is measured on
    kelly_fraction: Fraction = 0.25
    # mean H-bar gain of a winning trade over the mean H-bar loss of a losing one; 1 for the
    # symmetric horizon bet that a calibrated P(up) describes
    kelly_payoff_ratio: Multiple = 1.0
    stop_atr: Multiple = 2.0
    take_profit_atr: Multiple = 3.0
    max_leverage: Multiple = 1.0

    @property
    def bars_per_year(self) -> float:
        """Bars of ``timeframe`` in a 365-day year (8760 for 1h): annualizes sigma_bar."""
        return bars_per_year(self.timeframe)

    def to_array(self) -> FloatArray:
        """The kernel layout (``SZ_*`` indices, ``SIZING_FIELDS`` order)."""
        return np.array([getattr(self, name) for name in layout.SIZING_FIELDS], dtype=np.float64)


class RiskConfig(SextantConfig):
    """Limits of the risk gate; fractions are of current equity unless said otherwise."""

    kill_switch: bool = False  # initial kill-switch position (RiskGate can engage it at run time)
    max_feature_age_bars: NonNegativeInt = 1  # features older than this many bars are stale
    min_models: Annotated[int, int_range(0, 2)] = 1  # ML families available to add risk
    min_confidence: Probability = 0.1
    max_position: Annotated[float, interval(0.0, 100.0)] = 1.0  # |position| / equity per symbol
    # sum over symbols of |position| / equity
    max_gross_exposure: Annotated[float, interval(0.0, 100.0)] = 1.5
    daily_loss_limit: Fraction = 0.05  # loss from the start-of-UTC-day equity → HALTED for the day
    soft_drawdown: Fraction = 0.15  # from peak equity → REDUCING
    hard_drawdown: Fraction = 0.25  # from peak equity → HALTED (sticky)
    var_limit: Fraction = 0.03  # one-bar VaR(99%) of the position / equity
    max_consecutive_errors: PositiveInt = 3  # model errors in a row → HALTED (sticky)
    max_orders_per_day: NonNegativeInt = 24  # orders per UTC day (risk-reducing orders always pass)
    # 0: drawdown episodes wait for reset(); N: they end after N UTC days
    halt_reset_days: NonNegativeInt = 0

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.soft_drawdown > self.hard_drawdown:
            raise ConfigError(
                f"RiskConfig.soft_drawdown ({self.soft_drawdown}) must not exceed "
                f"hard_drawdown ({self.hard_drawdown})"
            )
        return self

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


class DecisionConfig(SextantConfig):
    """The fuser, sizing and risk configs of one strategy, checked for consistency together.

    Build it from a mapping with ``from_dict({"fuser": {...}, "sizing": {...}, "risk": {...}})``;
    ``as_dict()`` gives that mapping back.
    """

    fuser: FuserConfig = FuserConfig()
    sizing: SizingConfig = SizingConfig()
    risk: RiskConfig = RiskConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.fuser.ml_weight == 0 and self.risk.min_models > 0:
            raise ConfigError(
                "DecisionConfig: a TA-only fuser (ml_weight=0) needs risk.min_models=0, "
                f"got min_models={self.risk.min_models}"
            )
        return self

    def config_hash(self) -> str:
        """Stable short hash of every setting (goes into MLflow runs and decision records)."""
        return _decision_hash(self)

    def ta_only(self) -> DecisionConfig:
        """The TA-only baseline of this strategy: TA weight 1, ML weight 0, no model required."""
        fuser = self.fuser.replace(ta_weight=1.0, ml_weight=0.0, allow_ta_only=True)
        return self.replace(fuser=fuser, risk=self.risk.replace(min_models=0))

    def ml_only(self) -> DecisionConfig:
        """The ML-only baseline of this strategy: TA weight 0, ML weight 1."""
        fuser = self.fuser.replace(ta_weight=0.0, ml_weight=1.0, allow_ta_only=False)
        risk = self.risk if self.risk.min_models > 0 else self.risk.replace(min_models=1)
        return self.replace(fuser=fuser, risk=risk)


@functools.lru_cache(maxsize=64)
def _decision_hash(config: DecisionConfig) -> str:
    # every decision record carries the hash (about 25 us to compute): once per config, which is
    # frozen and hashable, so equal configs share one entry
    return config_hash(config)
