"""TA and ML signals: the live wrappers of the signal kernels, returning frozen results."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sextant.contracts import DIRECTION_FAMILIES
from sextant.decision import _kernels as layout
from sextant.decision._kernels import ml_signal_kernel, ta_signal_kernel
from sextant.decision.config import FuserConfig
from sextant.errors import DataValidationError
from sextant.ta._jit import FloatArray

__all__ = [
    "FEATURES_USED",
    "ML_FAMILIES",
    "VOTE_NAMES",
    "MlSignal",
    "TaSignal",
    "feature_vector",
    "ml_signal",
    "ml_signal_from",
    "ta_signal",
    "ta_signal_from",
]

FEATURES_USED = layout.FEATURES_USED
VOTE_NAMES = layout.VOTE_NAMES
ML_FAMILIES: tuple[str, ...] = DIRECTION_FAMILIES


@dataclass(frozen=True, slots=True)
class TaSignal:
    """Named rule votes in [-1, 1], their weighted mean, and the votes whose feature was NaN.

    Votes: trend = sign(ema_cross_12_26) when adx_14 >= adx_min, else 0; momentum_rsi = +1
    above rsi_high, -1 below rsi_low, else 0 (a step, not a ramp: a vote says which side of
    neutral the RSI is on); momentum_macd = sign(macd_hist_pct); mean_reversion = -1 when
    bb_percent_b_20 > 1 (above the upper band), +1 when < 0; breakout = donchian_breakout_20.
    A missing vote counts as 0 with its weight kept, so missing data pulls the score to 0.
    """

    score: float
    votes: Mapping[str, float]
    missing: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class MlSignal:
    """Combined ML score 2p - 1 (NaN when no family is available) and what went into it."""

    score: float
    probability: float  # weighted probability of "up" over the available families
    available: tuple[str, ...]
    weights: Mapping[str, float]  # effective weights, renormalized over the available families
    p_xgb: float
    p_lstm: float

    @property
    def is_available(self) -> bool:
        """Whether some family produced a probability."""
        return bool(self.available)


def feature_vector(features: Mapping[str, float | None]) -> FloatArray:
    """The decision's features in kernel order; None is NaN, a missing name is an error."""
    try:
        given = [features[name] for name in FEATURES_USED]
    except KeyError:
        given = None
    if given is not None and all(type(v) is float or v is None for v in given):
        return np.array(given, dtype=np.float64)  # the common case: floats, None as NaN
    absent = [name for name in FEATURES_USED if name not in features]
    if absent:
        raise DataValidationError(
            f"features lack {', '.join(absent)} (the decision needs {', '.join(FEATURES_USED)})",
            field=absent[0],
        )
    values = np.empty(layout.N_FEATURES, dtype=np.float64)
    for i, name in enumerate(FEATURES_USED):
        value = features[name]
        values[i] = math.nan if value is None else _as_float(value, name)
    return values


def _as_float(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise DataValidationError(f"feature {name} is not a number: {value!r}", field=name)
    return float(value)


def ta_signal_from(out: Sequence[float] | FloatArray) -> TaSignal:
    """The TA part of a decision output vector (the array, or its values as a list)."""
    votes = {name: float(out[layout.O_VOTES + i]) for i, name in enumerate(VOTE_NAMES)}
    missing = tuple(name for i, name in enumerate(VOTE_NAMES) if out[layout.O_MISSING + i] != 0.0)
    return TaSignal(score=float(out[layout.O_TA_SCORE]), votes=votes, missing=missing)


def ml_signal_from(out: Sequence[float] | FloatArray, p_xgb: float, p_lstm: float) -> MlSignal:
    """The ML part of a decision output vector (the array, or its values as a list)."""
    weights = {"xgb": float(out[layout.O_ML_W_XGB]), "lstm": float(out[layout.O_ML_W_LSTM])}
    return MlSignal(
        score=float(out[layout.O_ML_SCORE]),
        probability=float(out[layout.O_ML_PROB]),
        available=tuple(name for name in ML_FAMILIES if weights[name] > 0.0),
        weights=weights,
        p_xgb=float(p_xgb),
        p_lstm=float(p_lstm),
    )


def ta_signal(features: Mapping[str, float | None], config: FuserConfig) -> TaSignal:
    """TA votes and score from the latest features (same kernel as the backtest)."""
    out = np.full(layout.N_OUT, np.nan)
    ta_signal_kernel(feature_vector(features), config.to_array(), out)
    return ta_signal_from(out)


def ml_signal(p_xgb: float, p_lstm: float, config: FuserConfig) -> MlSignal:
    """Combined ML score from each family's calibrated probability of "up" (NaN: unavailable)."""
    out = np.full(layout.N_OUT, np.nan)
    ml_signal_kernel(float(p_xgb), float(p_lstm), config.to_array(), out)
    return ml_signal_from(out, p_xgb, p_lstm)
