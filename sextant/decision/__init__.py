"""The decision core: TA signal, ML signal, fuser, sizing and risk gate, shared by the live
service (``decide``) and the backtest (``sextant.backtest``) through one set of compiled kernels.
"""

from __future__ import annotations

from sextant.decision.config import (
    DecisionConfig,
    FuserConfig,
    FuserMode,
    RiskConfig,
    SizingConfig,
)
from sextant.decision.engine import Action, Decision, ModelOutputs, decide
from sextant.decision.fuser import FusedSignal, fuse_signals
from sextant.decision.risk import (
    CHECK_CODES,
    Check,
    GateStatus,
    PortfolioState,
    RiskDecision,
    RiskGate,
    TradingState,
)
from sextant.decision.signals import (
    FEATURES_USED,
    VOTE_NAMES,
    MlSignal,
    TaSignal,
    ml_signal,
    ta_signal,
)
from sextant.decision.sizing import SIZE_CAPS, PositionSize, size_position

__all__ = [
    "CHECK_CODES",
    "FEATURES_USED",
    "SIZE_CAPS",
    "VOTE_NAMES",
    "Action",
    "Check",
    "Decision",
    "DecisionConfig",
    "FusedSignal",
    "FuserConfig",
    "FuserMode",
    "GateStatus",
    "MlSignal",
    "ModelOutputs",
    "PortfolioState",
    "PositionSize",
    "RiskConfig",
    "RiskDecision",
    "RiskGate",
    "SizingConfig",
    "TaSignal",
    "TradingState",
    "decide",
    "fuse_signals",
    "ml_signal",
    "size_position",
    "ta_signal",
]
