"""Fusion modes, the ML-unavailable rule and the entry threshold."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant.decision import FuserConfig, MlSignal, TaSignal, fuse_signals


def ta(score: float) -> TaSignal:
    return TaSignal(score=score, votes={}, missing=())


def ml(score: float) -> MlSignal:
    p = (1 + score) / 2
    return MlSignal(
        score=score, probability=p, available=("xgb",), weights={}, p_xgb=p, p_lstm=math.nan
    )


@pytest.mark.parametrize(
    ("mode", "ta_score", "ml_score", "score"),
    [
        ("weighted", 0.6, 0.2, 0.4),
        ("weighted", 0.6, -0.2, 0.2),
        ("agreement", 0.6, 0.2, 0.4),
        ("agreement", 0.6, -0.2, 0.0),  # disagree: no trade
        ("agreement", 0.0, 0.4, 0.0),  # TA neutral is not agreement
        ("ml_gated", 0.2, 0.3, 0.3),  # ML's score, TA confirms
        ("ml_gated", -0.2, 0.3, 0.0),  # TA against: no trade
        ("ml_gated", 0.0, 0.3, 0.0),  # TA must confirm, not just abstain
    ],
)
def test_modes(mode: str, ta_score: float, ml_score: float, score: float) -> None:
    # Arrange
    config = FuserConfig.from_dict({"mode": mode, "entry_threshold": 0.0})
    # Act
    fused = fuse_signals(ta(ta_score), ml(ml_score), config)
    # Assert
    assert fused.score == pytest.approx(score)
    assert fused.direction == (0 if score == 0 else int(math.copysign(1, score)))
    assert fused.confidence == pytest.approx(abs(score))
    assert fused.ta.score == ta_score and fused.ml.score == ml_score and fused.mode == mode


def test_custom_weights_and_the_entry_threshold() -> None:
    # Arrange
    config = FuserConfig(ta_weight=0.25, ml_weight=0.75, entry_threshold=0.3)
    # Act
    below = fuse_signals(ta(0.8), ml(0.1), config)  # 0.2 + 0.075
    above = fuse_signals(ta(0.8), ml(0.2), config)  # 0.2 + 0.15
    # Assert
    assert below.score == pytest.approx(0.275) and below.direction == 0
    assert above.score == pytest.approx(0.35) and above.direction == 1


def test_without_ml_no_new_risk_unless_ta_alone_is_allowed() -> None:
    # Arrange
    missing = ml(math.nan)
    # Act
    strict = fuse_signals(ta(0.8), missing, FuserConfig())
    allowed = fuse_signals(ta(0.8), missing, FuserConfig(allow_ta_only=True))
    # Assert
    assert strict.score == 0.0 and strict.direction == 0 and strict.confidence == 0.0
    assert allowed.score == pytest.approx(0.8) and allowed.direction == 1


def test_single_half_configs_ignore_the_other_half() -> None:
    # Act
    ta_only = fuse_signals(ta(-0.6), ml(math.nan), FuserConfig(ta_weight=1.0, ml_weight=0.0))
    ml_only = fuse_signals(
        ta(-0.6), ml(0.3), FuserConfig(ta_weight=0.0, ml_weight=1.0, mode="agreement")
    )
    # Assert
    assert ta_only.score == pytest.approx(-0.6) and ta_only.direction == -1
    assert ml_only.score == pytest.approx(0.3) and ml_only.direction == 1


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    mode=st.sampled_from(["weighted", "agreement", "ml_gated"]),
    ta_score=st.floats(-1, 1),
    ml_score=st.one_of(st.floats(-1, 1), st.just(math.nan)),
    threshold=st.floats(0, 1),
    ta_weight=st.floats(0, 1),
)
def test_fused_outputs_stay_in_range(
    mode: str, ta_score: float, ml_score: float, threshold: float, ta_weight: float
) -> None:
    # Arrange
    config = FuserConfig.from_dict(
        {"mode": mode, "entry_threshold": threshold, "ta_weight": ta_weight, "ml_weight": 1.0}
    )
    # Act
    fused = fuse_signals(ta(ta_score), ml(ml_score), config)
    # Assert
    assert -1.0 <= fused.score <= 1.0 and 0.0 <= fused.confidence <= 1.0
    assert fused.direction in (-1, 0, 1)
    if fused.direction != 0:
        assert abs(fused.score) >= threshold and fused.direction * fused.score > 0
    if math.isnan(ml_score):
        assert fused.score == 0.0
