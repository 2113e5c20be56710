"""XGBoost direction family: gradient-boosted trees on one row of features, exported to ONNX.

Missing values (NaN, e.g. funding before a perpetual listed) are left to XGBoost, which learns a
default direction per split; the ONNX converter carries that direction into the tree ensemble's
``nodes_missing_value_tracks_true``, so serving feeds NaN as is. Early stopping watches log loss
on the latest ``validation_fraction`` of the training timestamps (``models.direction_rows``), and
the booster is cut to its best iteration, so ``predict_proba`` and the ONNX graph use the same
trees. Those tail rows are not refitted afterwards: the trees are the ones early stopping chose.
``native_model`` is that same cut booster in XGBoost's own format (UBJSON), trees with their
covers: training logs it beside the graph so explanations run TreeSHAP on exactly these trees.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from models.direction_rows import (
    check_features,
    check_index,
    check_training_rows,
    validation_tail,
)
from models.protocol import DirectionDataset, IndexArray
from sextant.config import (
    Fraction,
    NonNegativeFloat,
    PositiveFloat,
    PositiveInt,
    SextantConfig,
    int_range,
    interval,
)
from sextant.contracts import FEATURE_SERVICES
from sextant.errors import ModelUnavailableError

if TYPE_CHECKING:
    import xgboost

__all__ = [
    "INPUT_FEATURES",
    "NATIVE_MODEL_FILE",
    "OUTPUT_P_UP",
    "XgbConfig",
    "XgbDirectionModel",
]

INPUT_FEATURES = "features"
OUTPUT_P_UP = "p_up"
# onnxmltools 1.16 converts XGBoost for default-domain opsets up to 15 (it refuses 17)
_ONNX_OPSET = 15
# the artifact name, in the training run, of `XgbDirectionModel.native_model()`
NATIVE_MODEL_FILE = "xgb_booster.ubj"


class XgbConfig(SextantConfig):
    """Booster hyperparameters, early stopping and the feature service the model reads."""

    n_estimators: PositiveInt = 400
    max_depth: PositiveInt = 4
    learning_rate: PositiveFloat = 0.05
    subsample: Fraction = 0.8
    colsample_bytree: Fraction = 0.8
    min_child_weight: NonNegativeFloat = 5.0
    reg_lambda: NonNegativeFloat = 1.0
    # None: no validation tail, all n_estimators trees
    early_stopping_rounds: PositiveInt | None = 50
    # latest share of training timestamps watched for stopping
    validation_fraction: Annotated[float, interval(0.0, 0.5, lo_open=True, hi_open=True)] = 0.15
    seed: int = 42
    n_jobs: PositiveInt = 2
    min_train_rows: Annotated[int, int_range(10)] = 500
    feature_service: str = FEATURE_SERVICES["xgb"]


@dataclass(frozen=True, slots=True)
class _Fitted:
    booster: xgboost.Booster  # cut to the best iteration
    features: tuple[str, ...]
    best_iteration: int
    best_validation_logloss: float | None
    n_fit_rows: int
    n_validation_rows: int


class XgbDirectionModel:
    """P(up) from an XGBoost binary:logistic booster (``DirectionModel`` protocol)."""

    family: str = "xgb"

    def __init__(self, config: XgbConfig | None = None) -> None:
        self.config = config or XgbConfig()
        self._fitted: _Fitted | None = None

    def fit(self, data: DirectionDataset, train_idx: IndexArray) -> None:
        """Fit on rows ``train_idx``, early-stopped on their latest timestamps."""
        import xgboost

        cfg = self.config
        check_features(self.family, data, cfg.feature_service)
        rows = check_index(self.family, data, train_idx)
        check_training_rows(self.family, data, rows, min_rows=cfg.min_train_rows)
        if cfg.early_stopping_rounds is None:
            fit_idx, val_idx = rows, rows[:0]
        else:
            fit_idx, val_idx = validation_tail(self.family, data, rows, cfg.validation_fraction)

        train = xgboost.DMatrix(data.X[fit_idx], label=data.y[fit_idx], missing=np.nan)
        evals = []
        if len(val_idx):
            evals.append(
                (
                    xgboost.DMatrix(data.X[val_idx], label=data.y[val_idx], missing=np.nan),
                    "validation",
                )
            )
        history: dict[str, dict[str, list[float]]] = {}
        booster = xgboost.train(
            self._booster_params(),
            train,
            num_boost_round=cfg.n_estimators,
            evals=evals,
            early_stopping_rounds=cfg.early_stopping_rounds if evals else None,
            evals_result=history,
            verbose_eval=False,
        )
        if evals:
            best = int(booster.best_iteration)
            best_loss: float | None = float(history["validation"]["logloss"][best])
        else:
            best, best_loss = booster.num_boosted_rounds() - 1, None
        # keep exactly the trees early stopping chose, for predict_proba and ONNX alike
        booster = booster[: best + 1]
        self._fitted = _Fitted(
            booster=booster,
            features=data.features,
            best_iteration=best,
            best_validation_logloss=best_loss,
            n_fit_rows=len(fit_idx),
            n_validation_rows=len(val_idx),
        )

    def predict_proba(self, data: DirectionDataset, idx: IndexArray) -> npt.NDArray[np.float64]:
        """P(up) for rows ``idx``; NaN features follow the learned default directions."""
        fitted = self._require_fitted()
        check_features(self.family, data, self.config.feature_service)
        rows = check_index(self.family, data, idx)
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float64)
        p = fitted.booster.inplace_predict(data.X[rows], missing=np.nan)
        out: npt.NDArray[np.float64] = np.asarray(p, dtype=np.float64).reshape(-1)
        return out

    def to_onnx(self) -> onnx.ModelProto:
        """The booster as a TreeEnsembleClassifier graph with one output ``p_up`` [N, 1] float32."""
        from onnxmltools import convert_xgboost
        from onnxmltools.convert.common.data_types import FloatTensorType

        fitted = self._require_fitted()
        n_features = len(fitted.features)
        model: onnx.ModelProto = convert_xgboost(
            fitted.booster,
            name="xgb_direction",
            initial_types=[(INPUT_FEATURES, FloatTensorType([None, n_features]))],
            target_opset=_ONNX_OPSET,
        )
        _expose_p_up(model)
        helper.set_model_props(
            model,
            {
                "family": self.family,
                "feature_service": self.config.feature_service,
                "features": json.dumps(list(fitted.features)),
                "best_iteration": str(fitted.best_iteration),
                "missing_values": "NaN inputs follow the trees' learned default directions",
            },
        )
        onnx.checker.check_model(model, full_check=True)
        return model

    def native_model(self) -> bytes:
        """The fitted booster (cut to its best iteration) in XGBoost's UBJSON model format.

        What ``xgboost.Booster().load_model(bytearray(...))`` reads back: the same trees, split
        conditions, default directions, leaf values, base score and covers (hessian sums), so
        its predictions and TreeSHAP are those of this model.
        """
        return bytes(self._require_fitted().booster.save_raw("ubj"))

    def onnx_inputs(
        self, data: DirectionDataset, idx: IndexArray
    ) -> dict[str, npt.NDArray[np.float32]]:
        """``{"features": float32 [len(idx), n_features]}``, NaN kept."""
        self._require_fitted()
        check_features(self.family, data, self.config.feature_service)
        rows = check_index(self.family, data, idx)
        return {INPUT_FEATURES: np.ascontiguousarray(data.X[rows], dtype=np.float32)}

    def params(self) -> dict[str, Any]:
        """Config, and once fitted: best iteration, tree count, row counts, top-10 gain importances."""
        out: dict[str, Any] = {"family": self.family, **self.config.as_dict()}
        if self._fitted is None:
            return out
        fitted = self._fitted
        out.update(
            best_iteration=fitted.best_iteration,
            n_trees=fitted.booster.num_boosted_rounds(),
            n_fit_rows=fitted.n_fit_rows,
            n_validation_rows=fitted.n_validation_rows,
            importance_gain_top10={
                k: float(v) for k, v in self.feature_importance().head(10).items()
            },
        )
        if fitted.best_validation_logloss is not None:
            out["best_validation_logloss"] = fitted.best_validation_logloss
        return out

    def feature_importance(self) -> pd.Series:
        """Average gain per split of every feature (0 for unused ones), largest first."""
        fitted = self._require_fitted()
        scores = fitted.booster.get_score(importance_type="gain")  # unused features are absent
        gains = [float(np.mean(scores.get(f"f{j}", 0.0))) for j in range(len(fitted.features))]
        series = pd.Series(gains, index=list(fitted.features), name="gain", dtype=np.float64)
        return series.sort_values(ascending=False, kind="stable")

    def _booster_params(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": cfg.max_depth,
            "eta": cfg.learning_rate,
            "subsample": cfg.subsample,
            "colsample_bytree": cfg.colsample_bytree,
            "min_child_weight": cfg.min_child_weight,
            "lambda": cfg.reg_lambda,
            "seed": cfg.seed,
            "nthread": cfg.n_jobs,
            "verbosity": 0,
        }

    def _require_fitted(self) -> _Fitted:
        if self._fitted is None:
            raise ModelUnavailableError(
                "xgb: the model is not fitted; call fit() before predicting or exporting"
            )
        return self._fitted


def _expose_p_up(model: onnx.ModelProto) -> None:
    """Replace the converter's outputs (label, probabilities [N, 2]) by p_up = probabilities[:, 1:2]."""
    graph = model.graph
    probabilities = next(o.name for o in graph.output if o.name != "label")
    graph.initializer.extend(
        numpy_helper.from_array(np.array([value], dtype=np.int64), name=name)
        for name, value in (("p_up_start", 1), ("p_up_end", 2), ("p_up_axis", 1))
    )
    graph.node.append(
        helper.make_node(
            "Slice",
            [probabilities, "p_up_start", "p_up_end", "p_up_axis"],
            [OUTPUT_P_UP],
            name="p_up_column",
        )
    )
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info(OUTPUT_P_UP, TensorProto.FLOAT, ["N", 1]))
    graph.input[0].type.tensor_type.shape.dim[0].dim_param = "N"
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", _ONNX_OPSET))
