"""Sizing: vol target, Kelly (a loss at the stop) and leverage caps; ATR stops; unknown inputs size 0."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.decision import SizingConfig, size_position

CONFIG = SizingConfig(
    target_annual_vol=0.2,
    timeframe="1h",
    kelly_fraction=0.25,
    stop_atr=2.0,
    take_profit_atr=3.0,
)


def test_kelly_caps_the_loss_at_the_stop_not_the_notional() -> None:
    # Arrange: p = 0.55 and b = 1 → raw Kelly 0.1, a quarter of it → 2.5 % of equity lost at the
    # stop; natr 1 % of 100 and a 2-ATR stop → the stop is 2 % away → notional cap 0.025 / 0.02.
    # The take profit (3 ATR) is an exit rule only: b does not come from it.
    config = SizingConfig(
        target_annual_vol=5.0,
        kelly_fraction=0.25,
        stop_atr=2.0,
        take_profit_atr=3.0,
        max_leverage=3.0,
    )
    # Act
    size = size_position(1, 0.55, 1e-6, 1.0, 100.0, config)
    # Assert
    assert size.fraction == pytest.approx(1.25)
    assert size.kelly_raw == pytest.approx(0.1)
    assert size.kelly_risk_fraction == pytest.approx(0.025)
    assert size.kelly_cap == pytest.approx(1.25)
    assert size.stop_distance == pytest.approx(2.0)
    assert size.fraction * size.stop_distance / 100.0 == pytest.approx(0.025)
    assert size.binding == "kelly"


def test_the_payoff_ratio_is_the_configured_one() -> None:
    # Arrange: b = 2 → raw 0.55 - 0.45 / 2 = 0.325
    config = SizingConfig(target_annual_vol=5.0, kelly_payoff_ratio=2.0, max_leverage=100.0)
    # Act
    size = size_position(-1, 0.55, 1e-6, 1.0, 100.0, config)
    # Assert
    assert size.kelly_raw == pytest.approx(0.325)
    assert size.kelly_risk_fraction == pytest.approx(0.25 * 0.325)
    assert size.fraction == pytest.approx(0.25 * 0.325 / 0.02)


def test_vol_target_binds_when_kelly_is_generous() -> None:
    # Arrange: sigma per bar 2 % → vol target 0.107; p = 0.9, b = 1 → loss at risk 0.25 * 0.8,
    # stop 2 * 0.5 % → Kelly notional cap 20
    sigma = 0.02
    # Act
    size = size_position(1, 0.9, sigma**2, 0.5, 100.0, CONFIG)
    # Assert
    vol_target = 0.2 / (sigma * math.sqrt(8760))
    assert size.vol_target_fraction == pytest.approx(vol_target)
    assert size.kelly_raw == pytest.approx(0.9 - 0.1)
    assert size.kelly_risk_fraction == pytest.approx(0.25 * 0.8)
    assert size.kelly_cap == pytest.approx(0.2 / 0.01)
    assert size.fraction == pytest.approx(vol_target) and size.binding == "vol_target"


def test_kelly_caps_a_low_edge_and_a_losing_edge_sizes_zero() -> None:
    # Act: p = 0.51 → loss at risk 0.25 * 0.02, stop 1 % → cap 0.5 (vol target 2.1, leverage 1)
    small = size_position(-1, 0.51, 1e-6, 0.5, 100.0, CONFIG)
    losing = size_position(1, 0.45, 1e-6, 0.5, 100.0, CONFIG)  # 0.45 - 0.55 < 0
    # Assert
    assert small.fraction == pytest.approx(0.5) and small.binding == "kelly"
    assert losing.kelly_raw < 0 and losing.kelly_risk_fraction == 0.0
    assert losing.kelly_cap == 0.0 and losing.fraction == 0.0 and losing.binding == "kelly"


def test_max_leverage_caps_everything() -> None:
    # Arrange
    config = SizingConfig(kelly_fraction=1.0, max_leverage=0.3, target_annual_vol=5.0)
    # Act
    size = size_position(1, 0.99, 1e-8, 0.5, 100.0, config)
    # Assert
    assert size.fraction == 0.3 and size.binding == "leverage"


def test_atr_stop_and_take_profit_around_the_price() -> None:
    # Arrange: natr 0.8 % of 30,000 → ATR 240
    # Act
    long = size_position(1, 0.6, 4e-5, 0.8, 30_000.0, CONFIG)
    short = size_position(-1, 0.6, 4e-5, 0.8, 30_000.0, CONFIG)
    # Assert
    assert long.stop_distance == pytest.approx(
        480.0
    ) and long.take_profit_distance == pytest.approx(720.0)
    assert (long.stop_loss, long.take_profit) == pytest.approx((29_520.0, 30_720.0))
    assert (short.stop_loss, short.take_profit) == pytest.approx((30_480.0, 29_280.0))


@pytest.mark.parametrize(
    ("direction", "probability", "variance", "natr"),
    [
        (0, 0.9, 4e-5, 0.8),  # no direction
        (1, math.nan, 4e-5, 0.8),  # no probability
        (1, 0.9, math.nan, 0.8),  # no GARCH forecast
        (1, 0.9, 0.0, 0.8),  # degenerate variance
        (1, 0.9, 4e-5, math.nan),  # no ATR: no stop, no entry
    ],
)
def test_unknown_inputs_size_zero(
    direction: int, probability: float, variance: float, natr: float
) -> None:
    # Act
    size = size_position(direction, probability, variance, natr, 100.0, CONFIG)
    # Assert
    assert size.fraction == 0.0 and size.binding is None


@settings(max_examples=2000, deadline=None, derandomize=True)
@given(
    direction=st.sampled_from([-1, 1]),
    p=st.floats(0.0, 1.0),
    natr=st.floats(1e-3, 50.0),
    price=st.floats(1e-3, 1e6),
    variance=st.floats(1e-10, 0.1),
    timeframe=st.sampled_from(["1m", "15m", "1h", "4h", "1d", "1w"]),
    fields=st.fixed_dictionaries(
        {
            "target_annual_vol": st.floats(0.01, 10.0),
            "kelly_fraction": st.floats(0.01, 1.0),
            "kelly_payoff_ratio": st.floats(0.1, 10.0),
            "stop_atr": st.floats(0.1, 100.0),
            "take_profit_atr": st.floats(0.1, 100.0),
            "max_leverage": st.floats(0.01, 100.0),
        }
    ),
)
def test_a_stopped_entry_never_loses_more_than_fractional_kelly(
    direction: int,
    p: float,
    natr: float,
    price: float,
    variance: float,
    timeframe: str,
    fields: dict[str, float],
) -> None:
    # Arrange
    config = SizingConfig.from_dict({**fields, "timeframe": timeframe})
    b = fields["kelly_payoff_ratio"]
    loss_budget = fields["kelly_fraction"] * max(p - (1.0 - p) / b, 0.0)
    # Act
    size = size_position(direction, p, variance, natr, price, config)
    # Assert: the equity a stop-out costs, and each cap
    assert size.fraction >= 0.0
    assert size.fraction * size.stop_distance / price <= loss_budget + 1e-12
    assert size.fraction <= fields["max_leverage"]
    assert size.fraction <= size.vol_target_fraction
    named = {
        "vol_target": size.vol_target_fraction,
        "kelly": size.kelly_cap,
        "leverage": fields["max_leverage"],
    }
    assert size.binding in named
    assert size.fraction == named[size.binding] == min(named.values())
