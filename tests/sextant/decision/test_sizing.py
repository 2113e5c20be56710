"""Sizing: vol target, fractional Kelly and leverage caps; ATR stops; unknown inputs size 0."""

from __future__ import annotations

import math

import pytest

from sextant.decision import SizingConfig, size_position

CONFIG = SizingConfig(
    target_annual_vol=0.2,
    bars_per_year=8760.0,
    kelly_fraction=0.25,
    stop_atr=2.0,
    take_profit_atr=3.0,
)


def test_vol_target_binds_when_kelly_is_generous() -> None:
    # Arrange: sigma per bar 2 % → vol target 0.107; p = 0.9, b = 1.5 → Kelly 0.25 * 0.833
    sigma = 0.02
    # Act
    size = size_position(1, 0.9, sigma**2, 0.5, 100.0, CONFIG)
    # Assert
    vol_target = 0.2 / (sigma * math.sqrt(8760))
    assert size.vol_target_fraction == pytest.approx(vol_target)
    assert size.kelly_raw == pytest.approx(0.9 - 0.1 / 1.5)
    assert size.kelly_fraction == pytest.approx(0.25 * (0.9 - 0.1 / 1.5))
    assert size.fraction == pytest.approx(vol_target)


def test_kelly_caps_a_low_edge_and_a_losing_edge_sizes_zero() -> None:
    # Act
    small = size_position(-1, 0.55, 1e-6, 0.5, 100.0, CONFIG)
    losing = size_position(1, 0.35, 1e-6, 0.5, 100.0, CONFIG)  # 0.35 - 0.65/1.5 < 0
    # Assert
    assert small.fraction == pytest.approx(0.25 * (0.55 - 0.45 / 1.5))
    assert losing.kelly_raw < 0 and losing.kelly_fraction == 0.0 and losing.fraction == 0.0


def test_max_leverage_caps_everything() -> None:
    # Arrange
    config = SizingConfig(kelly_fraction=1.0, max_leverage=0.3, target_annual_vol=5.0)
    # Act
    size = size_position(1, 0.99, 1e-8, 0.5, 100.0, config)
    # Assert
    assert size.fraction == 0.3


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
    assert size.fraction == 0.0
