"""Shared inputs of the decision tests, and one compile of every decision kernel per session."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from sextant.decision import (
    FEATURES_USED,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    decide,
    fuse_signals,
    ml_signal,
    size_position,
    ta_signal,
)

TS = datetime(2024, 3, 1, 12, tzinfo=UTC)

# every vote +1 except mean reversion (inside the bands): TA score 4/5
BULLISH = {
    "rsi_14": 60.0,
    "macd_hist_pct": 0.001,
    "bb_percent_b_20": 0.5,
    "adx_14": 25.0,
    "ema_cross_12_26": 0.01,
    "donchian_breakout_20": 1.0,
    "natr_14": 0.8,
}
BEARISH = {
    "rsi_14": 40.0,
    "macd_hist_pct": -0.001,
    "bb_percent_b_20": 0.5,
    "adx_14": 25.0,
    "ema_cross_12_26": -0.01,
    "donchian_breakout_20": -1.0,
    "natr_14": 0.8,
}
MODELS_UP = ModelOutputs(p_xgb=0.6, p_lstm=0.6, garch_variance=4e-5, var_quantile=2.6)


def features(**changes: float) -> dict[str, float]:
    """The bullish features with some values changed."""
    assert set(changes) <= set(FEATURES_USED)
    return {**BULLISH, **changes}


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels() -> None:
    """Compile (or load from numba's cache) every decision kernel once, before the tests."""
    config = DecisionConfig()
    ta = ta_signal(BULLISH, config.fuser)
    ml = ml_signal(0.6, math.nan, config.fuser)
    fuse_signals(ta, ml, config.fuser)
    size_position(1, 0.6, 4e-5, 0.8, 100.0, config.sizing)
    decide(
        "BTC/USDT",
        TS,
        BULLISH,
        MODELS_UP,
        PortfolioState(1e5, {}),
        config,
        RiskGate(config.risk),
        price=100.0,
    )


@pytest.fixture
def make_gate() -> Callable[..., RiskGate]:
    """A fresh gate for a RiskConfig built from keyword overrides."""

    def build(**risk: object) -> RiskGate:
        return RiskGate(DecisionConfig.from_dict({"risk": risk}).risk)

    return build
