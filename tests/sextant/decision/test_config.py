"""Configs are strict: every bad value or unknown key is a ConfigError naming it."""

from __future__ import annotations

import math
from typing import get_args

import numpy as np
import pytest

from sextant.decision import DecisionConfig, FuserConfig, RiskConfig, SizingConfig
from sextant.decision import _kernels as layout
from sextant.decision.config import FuserMode
from sextant.errors import ConfigError


@pytest.mark.parametrize(
    ("kind", "values", "named"),
    [
        (FuserConfig, {"mode": "majority"}, "mode"),
        (FuserConfig, {"ta_weight": -0.1}, "ta_weight"),
        (FuserConfig, {"ta_weight": 0.0, "ml_weight": 0.0}, "both 0"),
        (FuserConfig, {"rsi_low": 60.0, "rsi_high": 55.0}, "rsi_low"),
        (FuserConfig, {"entry_threshold": 1.5}, "entry_threshold"),
        (FuserConfig, {"allow_ta_only": 1}, "allow_ta_only"),
        (FuserConfig, {"adx_min": math.nan}, "adx_min"),
        (FuserConfig, {"xgb_weight": 0.0, "lstm_weight": 0.0}, "lstm_weight"),
        (SizingConfig, {"kelly_fraction": 0.0}, "kelly_fraction"),
        (SizingConfig, {"stop_atr": "2"}, "stop_atr"),
        (SizingConfig, {"target_annual_vol": True}, "target_annual_vol"),
        (SizingConfig, {"timeframe": "1 hour"}, "timeframe"),
        # derived from the timeframe, never set by hand
        (SizingConfig, {"bars_per_year": 8760.0}, "unknown SizingConfig keys: bars_per_year"),
        (SizingConfig, {"kelly_payoff_ratio": 0.0}, r"kelly_payoff_ratio must be in \(0"),
        (RiskConfig, {"soft_drawdown": 0.3, "hard_drawdown": 0.2}, "soft_drawdown"),
        (RiskConfig, {"max_orders_per_day": 2.5}, "max_orders_per_day"),
        (RiskConfig, {"min_models": 3}, "min_models"),
        (RiskConfig, {"daily_loss_limit": 0.0}, "daily_loss_limit"),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(
    kind: type[FuserConfig | SizingConfig | RiskConfig], values: dict[str, object], named: str
) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=named):
        kind.from_dict(values)


def test_unknown_keys_are_refused_at_every_level() -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match="unknown FuserConfig keys: adx_max"):
        DecisionConfig.from_dict({"fuser": {"adx_max": 30}})
    with pytest.raises(ConfigError, match="unknown DecisionConfig keys: gate"):
        DecisionConfig.from_dict({"gate": {}})


def test_ta_only_fuser_needs_no_model_in_the_gate() -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match="min_models=0"):
        DecisionConfig.from_dict({"fuser": {"ml_weight": 0.0}})
    baseline = DecisionConfig().ta_only()
    assert (baseline.fuser.ta_weight, baseline.fuser.ml_weight) == (1.0, 0.0)
    assert baseline.fuser.allow_ta_only and baseline.risk.min_models == 0
    ml_only = DecisionConfig().ml_only()
    assert (ml_only.fuser.ta_weight, ml_only.fuser.ml_weight) == (0.0, 1.0)


def test_arrays_follow_the_kernel_layout() -> None:
    # Arrange
    fuser = FuserConfig(mode="ml_gated", rsi_high=60.0, breakout_weight=2.0, allow_ta_only=True)
    risk = RiskConfig(var_limit=0.02, halt_reset_days=3)
    # Act
    sizing = SizingConfig(stop_atr=1.5, kelly_payoff_ratio=1.2)
    f, r, s = fuser.to_array(), risk.to_array(), sizing.to_array()
    # Assert
    assert f.shape == (layout.FU_SIZE,) and f.dtype == np.float64
    assert f[layout.FU_MODE] == layout.MODE_ML_GATED
    assert f[layout.FU_RSI_HIGH] == 60.0 and f[layout.FU_ALLOW_TA_ONLY] == 1.0
    assert f[layout.FU_W_VOTES + layout.VOTE_NAMES.index("breakout")] == 2.0
    assert r[layout.RK_VAR] == 0.02 and r[layout.RK_RESET_DAYS] == 3
    assert s[layout.SZ_STOP_ATR] == 1.5 and s[layout.SZ_KELLY_PAYOFF] == 1.2
    assert s.shape == (layout.SZ_SIZE,)
    assert list(s) == [getattr(sizing, name) for name in layout.SIZING_FIELDS]
    assert get_args(FuserMode) == layout.MODE_NAMES


@pytest.mark.parametrize(
    ("timeframe", "bars"), [("1h", 8760.0), ("4h", 2190.0), ("15m", 35040.0), ("1d", 365.0)]
)
def test_bars_per_year_follow_the_timeframe_into_the_kernel_array(
    timeframe: str, bars: float
) -> None:
    # Act
    sizing = SizingConfig(timeframe=timeframe)
    # Assert
    assert sizing.bars_per_year == bars
    assert sizing.to_array()[layout.SZ_BARS_PER_YEAR] == bars
    assert SizingConfig().to_array()[layout.SZ_BARS_PER_YEAR] == 8760.0  # the hourly default


def test_a_changed_copy_is_validated_again() -> None:
    # Act
    changed = FuserConfig().replace(entry_threshold=0.3)
    # Assert
    assert changed.entry_threshold == 0.3 and changed.mode == "weighted"
    with pytest.raises(ConfigError, match=r"FuserConfig.entry_threshold must be in \[0, 1\]"):
        FuserConfig().replace(entry_threshold=1.5)
    with pytest.raises(ConfigError, match="soft_drawdown"):
        DecisionConfig().replace(risk=RiskConfig().replace(soft_drawdown=0.3, hard_drawdown=0.2))


def test_log_loss_weights_are_inverse_log_losses() -> None:
    # Act
    config = FuserConfig.with_log_loss_weights(0.5, 0.8, mode="agreement")
    # Assert
    assert config.xgb_weight == pytest.approx(2.0) and config.lstm_weight == pytest.approx(1.25)
    assert config.mode == "agreement"
    with pytest.raises(ConfigError, match="xgb_log_loss"):
        FuserConfig.with_log_loss_weights(0.0, 0.8)


def test_config_hash_changes_with_any_setting_and_round_trips() -> None:
    # Arrange
    base = DecisionConfig()
    # Act
    again = DecisionConfig.from_dict(base.as_dict())
    changed = DecisionConfig.from_dict({"risk": {"var_limit": 0.02}})
    # Assert
    assert again == base and again.config_hash() == base.config_hash()
    assert changed.config_hash() != base.config_hash()
    four_hourly = DecisionConfig.from_dict({"sizing": {"timeframe": "4h"}})
    assert four_hourly.config_hash() != base.config_hash()
