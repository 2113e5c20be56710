"""decide(): one auditable decision from features, model outputs and the portfolio."""

from __future__ import annotations

import dataclasses
import json
import math
from datetime import datetime

import pytest

from sextant.decision import (
    Action,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    TradingState,
    decide,
    fuse_signals,
    ml_signal,
    size_position,
    ta_signal,
)
from sextant.errors import ConfigError, DataValidationError
from tests.sextant.decision.conftest import BEARISH, BULLISH, MODELS_UP, TS

CONFIG = DecisionConfig()
PRICE = 30_000.0


def portfolio(btc: float = 0.0, eth: float = 0.0, equity: float = 100_000.0) -> PortfolioState:
    return PortfolioState(equity, {"BTC/USDT": btc, "ETH/USDT": eth})


def test_a_decision_carries_every_component_and_equals_them_composed() -> None:
    # Arrange
    gate = RiskGate(CONFIG.risk)
    # Act
    d = decide("BTC/USDT", TS, BULLISH, MODELS_UP, portfolio(), CONFIG, gate, price=PRICE)
    # Assert: the same kernels, called one by one, give the same components
    ta = ta_signal(BULLISH, CONFIG.fuser)
    ml = ml_signal(MODELS_UP.p_xgb, MODELS_UP.p_lstm, CONFIG.fuser)
    fused = fuse_signals(ta, ml, CONFIG.fuser)
    size = size_position(
        fused.direction,
        ml.probability,
        MODELS_UP.garch_variance,
        BULLISH["natr_14"],
        PRICE,
        CONFIG.sizing,
    )
    assert d.ta == ta and d.ml == ml and d.fused == fused and d.sizing == size
    # a long entry at the sized fraction, with its stop and target around the price
    assert d.action is Action.BUY and d.fused.direction == 1
    assert d.target_fraction == pytest.approx(size.fraction) and d.risk.approved
    assert d.order_notional == pytest.approx(size.fraction * 100_000.0)
    assert d.order_units == pytest.approx(d.order_notional / PRICE)
    assert (d.stop_loss, d.take_profit) == pytest.approx((PRICE - 480.0, PRICE + 720.0))
    assert d.features == BULLISH and d.models == MODELS_UP
    assert d.config_hash == CONFIG.config_hash()


def test_the_record_is_json_with_every_check_and_figure() -> None:
    # Arrange
    gate = RiskGate(CONFIG.risk)
    d = decide(
        "BTC/USDT",
        TS,
        BEARISH,
        dataclasses.replace(MODELS_UP, p_xgb=0.3, p_lstm=0.35),
        portfolio(),
        CONFIG,
        gate,
        price=PRICE,
        model_versions={"xgb": "3", "lstm": "2"},
    )
    # Act
    record = json.loads(json.dumps(d.as_record()))
    # Assert
    assert record["action"] == "SELL" and record["direction"] == -1
    assert record["ta_votes"]["trend"] == -1.0
    assert len(record["risk_checks"]) == 12
    assert {"name", "passed", "reason_code", "observed", "limit"} <= set(record["risk_checks"][0])
    assert record["target_fraction"] < 0 and record["trading_state"] == "ACTIVE"
    assert record["model_versions"] == {"xgb": "3", "lstm": "2"}
    assert record["features"]["rsi_14"] == 40.0 and record["models"]["p_xgb"] == 0.3
    # sizing: P(down) = 0.675, b = 1 → a quarter-Kelly loss at risk of 0.25 * 0.35; the stop
    # 2 × 0.8 % away caps the notional at that / 0.016; the vol target (0.34) binds
    sizing = record["sizing"]
    assert sizing["kelly_raw"] == pytest.approx(0.35)
    assert sizing["kelly_risk_fraction"] == pytest.approx(0.0875)
    assert sizing["kelly_cap"] == pytest.approx(0.0875 / 0.016)
    assert sizing["binding"] == "vol_target"
    assert sizing["fraction"] == pytest.approx(sizing["vol_target_fraction"])


@pytest.mark.parametrize(
    ("features", "models", "btc", "action"),
    [
        (BULLISH, MODELS_UP, 5_000.0, Action.HOLD),  # already long: hold (sizes are set at entry)
        (BEARISH, ModelOutputs(0.3, 0.3, 4e-5, 2.6), 5_000.0, Action.SELL),  # reverse through flat
        (
            {
                **BULLISH,
                "rsi_14": 50.0,
                "macd_hist_pct": -0.001,
                "donchian_breakout_20": 0.0,
                "adx_14": 15.0,
            },
            ModelOutputs(0.45, 0.45, 4e-5, 2.6),
            5_000.0,
            Action.CLOSE,
        ),  # fused -0.15: no direction, but against the long
        (
            BULLISH,
            ModelOutputs(math.nan, math.nan, 4e-5, 2.6),
            5_000.0,
            Action.HOLD,
        ),  # no ML: no new risk, keep
        (BULLISH, ModelOutputs(math.nan, math.nan, 4e-5, 2.6), 0.0, Action.HOLD),  # no ML: no entry
    ],
)
def test_actions(
    features: dict[str, float], models: ModelOutputs, btc: float, action: Action
) -> None:
    # Act
    d = decide(
        "BTC/USDT",
        TS,
        features,
        models,
        portfolio(btc=btc),
        CONFIG,
        RiskGate(CONFIG.risk),
        price=PRICE,
    )
    # Assert
    assert d.action is action


def test_risk_reduction_is_a_result_with_reasons() -> None:
    # Arrange: a 2 % position cap and an existing 10 % position
    config = DecisionConfig.from_dict({"risk": {"max_position": 0.02}})
    # Act
    d = decide(
        "BTC/USDT",
        TS,
        BULLISH,
        MODELS_UP,
        portfolio(btc=10_000.0),
        config,
        RiskGate(config.risk),
        price=PRICE,
    )
    # Assert
    assert d.action is Action.REDUCE and d.target_fraction == pytest.approx(0.02)
    assert not d.risk.approved and d.risk.reasons == ("MAX_POSITION",)
    assert math.isnan(d.stop_loss)  # not an entry: the open position keeps its levels


def test_stale_features_and_model_errors_advance_the_gate() -> None:
    # Arrange
    config = DecisionConfig.from_dict({"risk": {"max_consecutive_errors": 2}})
    gate = RiskGate(config.risk)
    nan_models = ModelOutputs(math.nan, math.nan, 4e-5, 2.6)
    # Act
    stale = decide(
        "BTC/USDT",
        TS,
        BULLISH,
        MODELS_UP,
        portfolio(),
        config,
        gate,
        price=PRICE,
        feature_age_bars=5,
    )
    for _ in range(2):
        errored = decide(
            "BTC/USDT",
            TS,
            BULLISH,
            nan_models,
            portfolio(),
            config,
            gate,
            price=PRICE,
            model_error=True,
        )
    # Assert
    assert stale.action is Action.HOLD and "STALE_FEATURES" in stale.risk.reasons
    assert errored.risk.state is TradingState.HALTED and gate.state is TradingState.HALTED


def test_contract_violations_are_errors() -> None:
    # Arrange
    gate = RiskGate(CONFIG.risk)
    # Act / Assert
    with pytest.raises(DataValidationError, match="naive"):
        decide(
            "BTC/USDT",
            datetime(2024, 3, 1),
            BULLISH,
            MODELS_UP,
            portfolio(),
            CONFIG,
            gate,
            price=PRICE,
        )
    with pytest.raises(DataValidationError, match="price"):
        decide("BTC/USDT", TS, BULLISH, MODELS_UP, portfolio(), CONFIG, gate, price=math.nan)
    with pytest.raises(ConfigError, match="RiskConfig"):
        decide(
            "BTC/USDT",
            TS,
            BULLISH,
            MODELS_UP,
            portfolio(),
            CONFIG,
            RiskGate(CONFIG.risk.replace(var_limit=0.01)),
            price=PRICE,
        )
    with pytest.raises(DataValidationError, match="ETH/USDT"):
        PortfolioState(1e5, {"ETH/USDT": math.inf})
