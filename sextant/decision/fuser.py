"""The TA/ML fuser: one direction, score and confidence from the two signals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sextant.decision import _kernels as layout
from sextant.decision._kernels import fuse_kernel
from sextant.decision.config import FuserConfig, FuserMode
from sextant.decision.signals import MlSignal, TaSignal
from sextant.ta._jit import FloatArray

__all__ = ["FusedSignal", "fuse_signals", "fused_signal_from"]


@dataclass(frozen=True, slots=True)
class FusedSignal:
    """Fused score in [-1, 1], direction (-1, 0, +1), confidence in [0, 1], and both halves.

    Confidence is |score|: how far the fused score is from neutral, so it is already reduced
    when the halves disagree (weighted mode) and 0 when a mode suppresses the trade. The
    direction is sign(score) when |score| >= entry_threshold, else 0.
    """

    mode: FuserMode
    score: float
    direction: int
    confidence: float
    ta: TaSignal
    ml: MlSignal


def fused_signal_from(
    out: Sequence[float] | FloatArray, ta: TaSignal, ml: MlSignal, mode: FuserMode
) -> FusedSignal:
    """The fuser part of a decision output vector (the array, or its values as a list)."""
    return FusedSignal(
        mode=mode,
        score=float(out[layout.O_FUSED_SCORE]),
        direction=int(out[layout.O_DIRECTION]),
        confidence=float(out[layout.O_CONFIDENCE]),
        ta=ta,
        ml=ml,
    )


def fuse_signals(ta: TaSignal, ml: MlSignal, config: FuserConfig) -> FusedSignal:
    """Fuse the TA and ML signals as ``config.mode`` says (same kernel as the backtest)."""
    out = np.full(layout.N_OUT, np.nan)
    out[layout.O_TA_SCORE] = ta.score
    out[layout.O_ML_SCORE] = ml.score
    fuse_kernel(config.to_array(), out)
    return fused_signal_from(out, ta, ml, config.mode)
