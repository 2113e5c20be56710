"""TA votes and ML scores: known answers for each rule, NaN handling, weights."""

from __future__ import annotations

import math

import pytest

from sextant.decision import FuserConfig, ml_signal, ta_signal
from sextant.errors import DataValidationError
from tests.sextant.decision.conftest import BEARISH, BULLISH, features

CONFIG = FuserConfig()


def test_bullish_and_bearish_votes() -> None:
    # Act
    up = ta_signal(BULLISH, CONFIG)
    down = ta_signal(BEARISH, CONFIG)
    # Assert
    assert dict(up.votes) == {
        "trend": 1.0,
        "momentum_rsi": 1.0,
        "momentum_macd": 1.0,
        "mean_reversion": 0.0,
        "breakout": 1.0,
    }
    assert up.score == pytest.approx(0.8) and up.missing == ()
    assert down.score == pytest.approx(-0.8)


@pytest.mark.parametrize(
    ("changes", "vote", "expected"),
    [
        ({"adx_14": 19.9}, "trend", 0.0),  # weak trend: no vote
        ({"adx_14": 20.0}, "trend", 1.0),  # at the threshold: votes
        ({"rsi_14": 50.0}, "momentum_rsi", 0.0),
        ({"rsi_14": 44.0}, "momentum_rsi", -1.0),
        ({"macd_hist_pct": 0.0}, "momentum_macd", 0.0),
        ({"bb_percent_b_20": 1.2}, "mean_reversion", -1.0),  # above the upper band: sell
        ({"bb_percent_b_20": -0.1}, "mean_reversion", 1.0),
        ({"donchian_breakout_20": 0.0}, "breakout", 0.0),
    ],
)
def test_each_rule(changes: dict[str, float], vote: str, expected: float) -> None:
    # Act
    signal = ta_signal(features(**changes), CONFIG)
    # Assert
    assert signal.votes[vote] == expected


def test_nan_feature_gives_a_zero_vote_flagged_missing_and_keeps_its_weight() -> None:
    # Act
    signal = ta_signal(features(rsi_14=math.nan, adx_14=math.nan), CONFIG)
    from_none = ta_signal({**BULLISH, "rsi_14": None}, CONFIG)
    # Assert
    assert signal.missing == ("trend", "momentum_rsi")
    assert signal.votes["trend"] == 0.0 and signal.votes["momentum_rsi"] == 0.0
    assert signal.score == pytest.approx(2 / 5)  # macd and breakout remain, over 5 weights
    assert from_none.missing == ("momentum_rsi",)


def test_vote_weights_make_a_weighted_mean() -> None:
    # Arrange: breakout counts 3 times, trend not at all
    config = FuserConfig(trend_weight=0.0, breakout_weight=3.0)
    # Act
    signal = ta_signal(features(macd_hist_pct=-0.001), config)
    # Assert: (rsi +1, macd -1, mr 0, breakout +3) / 6
    assert signal.score == pytest.approx(3 / 6)


def test_missing_or_non_numeric_feature_is_a_data_error() -> None:
    # Arrange
    partial = {k: v for k, v in BULLISH.items() if k != "natr_14"}
    # Act / Assert
    with pytest.raises(DataValidationError, match="natr_14"):
        ta_signal(partial, CONFIG)
    with pytest.raises(DataValidationError, match="rsi_14"):
        ta_signal({**BULLISH, "rsi_14": "high"}, CONFIG)  # type: ignore[dict-item]


def test_ml_score_is_the_weighted_2p_minus_1() -> None:
    # Act
    both = ml_signal(0.7, 0.5, CONFIG)
    weighted = ml_signal(0.7, 0.5, FuserConfig(xgb_weight=3.0, lstm_weight=1.0))
    # Assert
    assert both.score == pytest.approx(0.2) and both.probability == pytest.approx(0.6)
    assert both.available == ("xgb", "lstm")
    assert weighted.score == pytest.approx(0.75 * 0.4 + 0.25 * 0.0)
    assert dict(weighted.weights) == {"xgb": 0.75, "lstm": 0.25}


def test_unavailable_family_drops_out_and_weights_renormalize() -> None:
    # Act
    only_lstm = ml_signal(math.nan, 0.3, CONFIG)
    outside = ml_signal(1.5, 0.3, CONFIG)  # not a probability: unavailable
    none = ml_signal(math.nan, math.nan, CONFIG)
    # Assert
    assert only_lstm.score == pytest.approx(-0.4) and only_lstm.available == ("lstm",)
    assert dict(only_lstm.weights) == {"xgb": 0.0, "lstm": 1.0}
    assert outside.score == pytest.approx(-0.4)
    assert math.isnan(none.score) and not none.is_available and none.available == ()
