"""The contract every direction model family implements, and the dataset they all read.

Lifecycle (one module per stage): the training code prepares a ``DirectionDataset`` (features in
the feature service's order + labels), then for each walk-forward fold calls ``fit`` on the
training rows and ``predict_proba`` on the test rows; the final model is fitted on every row,
exported to ONNX, and checked for parity against ``predict_proba`` before registration.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd

from sextant.errors import DataValidationError

__all__ = ["DirectionDataset", "DirectionModel", "IndexArray"]

IndexArray = npt.NDArray[np.intp]


@dataclass(frozen=True, eq=False)
class DirectionDataset:
    """Rows sorted by (symbol, decision time); features in the feature service's order.

    ``X`` holds raw feature values (float32, NaN where alternative data is missing); a model
    owns its own preprocessing (fitted on training rows only) and carries it into its ONNX
    graph. ``frame`` keeps ``symbol``, ``decision_ts`` (bar close), ``label_end_ts``,
    ``fwd_log_return`` and ``label_up`` for evaluation and for sequence models, which read the
    rows before a decision row of the same symbol (features only, never labels).
    """

    feature_service: str
    features: tuple[str, ...]
    frame: pd.DataFrame
    X: npt.NDArray[np.float32]
    y: npt.NDArray[np.int64]

    def __post_init__(self) -> None:
        if self.X.shape != (len(self.frame), len(self.features)):
            raise DataValidationError(
                f"{self.feature_service}: X has shape {self.X.shape}, expected ({len(self.frame)}, {len(self.features)})"
            )
        if np.isinf(self.X).any():
            bad = [self.features[j] for j in np.flatnonzero(np.isinf(self.X).any(axis=0))]
            raise DataValidationError(f"{self.feature_service}: infinite values in features {bad}")

    @property
    def symbols(self) -> npt.NDArray[np.object_]:
        return self.frame["symbol"].to_numpy()

    @property
    def decision_ts(self) -> pd.Series:
        return self.frame["decision_ts"]

    @property
    def label_end_ts(self) -> pd.Series:
        return self.frame["label_end_ts"]

    @property
    def fwd_return(self) -> npt.NDArray[np.float64]:
        return self.frame["fwd_log_return"].to_numpy(dtype=np.float64)

    def subset(self, idx: IndexArray) -> DirectionDataset:
        """Rows ``idx`` (kept in order) as a dataset of their own."""
        return DirectionDataset(
            self.feature_service,
            self.features,
            self.frame.iloc[idx].reset_index(drop=True),
            self.X[idx],
            self.y[idx],
        )


class DirectionModel(Protocol):
    """A direction model family: probabilities that the forward return is positive."""

    family: str  # "xgb", "lstm"

    def fit(self, data: DirectionDataset, train_idx: IndexArray) -> None:
        """Fit on rows ``train_idx`` (preprocessing included; validation tails are carved from them)."""

    def predict_proba(self, data: DirectionDataset, idx: IndexArray) -> npt.NDArray[np.float64]:
        """P(up) for rows ``idx``, shape (len(idx),)."""

    def to_onnx(self) -> onnx.ModelProto:
        """The fitted model as one ONNX graph (preprocessing inside); output ``p_up`` [N, 1]."""

    def onnx_inputs(
        self, data: DirectionDataset, idx: IndexArray
    ) -> dict[str, npt.NDArray[np.float32]]:
        """The graph's inputs for rows ``idx`` (what serving must feed it)."""

    def params(self) -> dict[str, Any]:
        """Hyperparameters and fitted facts worth logging (no arrays)."""
