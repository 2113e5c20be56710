"""XGBoost direction family: learns a planted signal, stays at chance on noise, exports p_up to ONNX."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
from sklearn.metrics import roc_auc_score

from models.onnx_parity import run_direction_onnx
from models.protocol import DirectionDataset
from models.xgb import XgbConfig, XgbDirectionModel
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError
from tests.models.conftest import N_DIRECTION, TEST_XGB, FittedDirection
from tests.models.direction_data import PLANTED, make_direction_data, time_split


def test_learns_the_planted_feature(xgb_planted: FittedDirection) -> None:
    fitted = xgb_planted

    p_up = fitted.model.predict_proba(fitted.data, fitted.test)

    assert p_up.shape == (len(fitted.test),) and p_up.dtype == np.float64
    assert ((p_up > 0) & (p_up < 1)).all()
    assert roc_auc_score(fitted.data.y[fitted.test], p_up) > 0.7


def test_stays_at_chance_on_noise() -> None:
    # labels are sums of the *next* rows' log_return_1: only peeking ahead could beat chance
    data = make_direction_data("xgb_direction_v1", N_DIRECTION, planted=False, seed=11)
    train, test = time_split(data, 0.3)
    model = XgbDirectionModel(TEST_XGB)
    model.fit(data, train)

    p_up = model.predict_proba(data, test)

    assert abs(roc_auc_score(data.y[test], p_up) - 0.5) < 0.06


def test_params_report_best_iteration_and_top_gains(xgb_planted: FittedDirection) -> None:
    assert isinstance(xgb_planted.model, XgbDirectionModel)

    params = xgb_planted.model.params()
    importance = xgb_planted.model.feature_importance()

    assert 0 <= params["best_iteration"] < TEST_XGB.n_estimators
    assert params["n_trees"] == params["best_iteration"] + 1
    assert params["n_fit_rows"] + params["n_validation_rows"] < len(xgb_planted.train)
    top10 = params["importance_gain_top10"]
    assert len(top10) == 10 and next(iter(top10)) == PLANTED
    assert list(importance.index[:10]) == list(top10)
    assert sorted(importance.index) == sorted(xgb_planted.data.features)
    assert (importance >= 0).all() and importance.is_monotonic_decreasing


def test_onnx_graph_has_one_p_up_output(xgb_planted: FittedDirection) -> None:
    graph = xgb_planted.proto.graph

    assert [i.name for i in graph.input] == ["features"]
    assert [d.dim_value for d in graph.input[0].type.tensor_type.shape.dim] == [0, 50]
    assert [o.name for o in graph.output] == ["p_up"]
    out = graph.output[0].type.tensor_type
    assert out.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in out.shape.dim] == ["N", 1]
    props = {p.key: p.value for p in xgb_planted.proto.metadata_props}
    assert props["family"] == "xgb" and props["feature_service"] == "xgb_direction_v1"


def test_nan_features_follow_the_same_branches_in_onnx(xgb_planted: FittedDirection) -> None:
    # Arrange: the planted (most used) feature missing in some test rows, and rows all NaN
    data = xgb_planted.data
    j = data.features.index(PLANTED)
    missing = xgb_planted.test[np.isnan(data.X[xgb_planted.test, j])]
    X = data.X.copy()
    X[xgb_planted.test[:5]] = np.nan
    all_nan = DirectionDataset(data.feature_service, data.features, data.frame, X, data.y)
    rows = np.concatenate([missing, xgb_planted.test[:5]])
    model = xgb_planted.model

    # Act
    native = np.concatenate(
        [model.predict_proba(data, missing), model.predict_proba(all_nan, xgb_planted.test[:5])]
    )
    onnx_p = np.concatenate(
        [
            run_direction_onnx(xgb_planted.proto, model.onnx_inputs(data, missing)),
            run_direction_onnx(xgb_planted.proto, model.onnx_inputs(all_nan, xgb_planted.test[:5])),
        ]
    )

    # Assert: NaN reaches the graph and leads where XGBoost's default directions lead
    assert len(missing) > 20 and len(rows) == len(native)
    assert np.isnan(model.onnx_inputs(data, missing)["features"][:, j]).all()
    np.testing.assert_allclose(onnx_p, native, rtol=0, atol=1e-6)
    assert np.ptp(native[-5:]) == 0.0  # every all-NaN row takes the same default path


def test_native_model_is_the_fitted_booster_with_its_trees_and_covers(
    xgb_planted: FittedDirection,
) -> None:
    import xgboost

    fitted = xgb_planted
    assert isinstance(fitted.model, XgbDirectionModel)
    booster = xgboost.Booster()

    booster.load_model(bytearray(fitted.model.native_model()))

    assert booster.num_boosted_rounds() == fitted.model.params()["n_trees"]
    rows = fitted.data.X[fitted.test]
    assert np.isnan(rows).any()  # default directions read back too
    matrix = xgboost.DMatrix(rows, missing=np.nan)
    np.testing.assert_array_equal(
        booster.predict(matrix), fitted.model.predict_proba(fitted.data, fitted.test)
    )
    phi = booster.predict(matrix, pred_contribs=True)
    margin = booster.predict(matrix, output_margin=True)
    np.testing.assert_allclose(phi.astype(np.float64).sum(axis=1), margin, atol=1e-5)
    # the covers are there: every split node of every tree weighs some training hessian
    trees = booster.trees_to_dataframe()
    assert (trees["Cover"] > 0).all()


def test_same_data_config_and_seed_give_identical_predictions_on_two_threads() -> None:
    # Arrange: the default thread count (row and column subsampling both draw from the seed)
    config = TEST_XGB.replace(n_estimators=40, n_jobs=2)
    data = make_direction_data("xgb_direction_v1", 500, planted=True, seed=5)
    train, test = time_split(data, 0.3)
    first, second = XgbDirectionModel(config), XgbDirectionModel(config)

    # Act
    first.fit(data, train)
    second.fit(data, train)

    # Assert
    np.testing.assert_array_equal(first.predict_proba(data, test), second.predict_proba(data, test))
    other_seed = XgbDirectionModel(config.replace(seed=7))
    other_seed.fit(data, train)
    assert not np.array_equal(other_seed.predict_proba(data, test), first.predict_proba(data, test))


def test_validation_tail_is_the_latest_time_not_the_last_symbol() -> None:
    # Arrange: labels up for every row before the latest 15% of timestamps, down after them.
    # A tail cut by position would be the second symbol's rows at every time (both classes).
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)
    late = data.decision_ts >= data.decision_ts.sort_values().iloc[int(len(data.y) * 0.84)]
    y = np.where(late.to_numpy(), 0, 1).astype(np.int64)
    skewed = DirectionDataset(data.feature_service, data.features, data.frame, data.X, y)
    model = XgbDirectionModel(XgbConfig(n_estimators=20, min_train_rows=100))

    # Act / Assert: the fit rows (before the tail) hold only "up"
    with pytest.raises(
        DataValidationError, match=r"xgb: label_up has a single class \(1\) over \d+ fit rows"
    ):
        model.fit(skewed, np.arange(len(y), dtype=np.intp))


def test_refuses_single_class_labels() -> None:
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)
    ones = DirectionDataset(
        data.feature_service, data.features, data.frame, data.X, np.ones_like(data.y)
    )

    with pytest.raises(
        DataValidationError, match=r"xgb: label_up has a single class \(1\) over 800 training rows"
    ):
        XgbDirectionModel(TEST_XGB).fit(ones, np.arange(800, dtype=np.intp))


def test_refuses_too_few_training_rows() -> None:
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)

    with pytest.raises(DataValidationError, match=r"xgb: 150 training rows, at least 200 needed"):
        XgbDirectionModel(TEST_XGB).fit(data, np.arange(150, dtype=np.intp))


def test_refuses_features_of_another_service() -> None:
    data = make_direction_data("lstm_direction_v1", 400, planted=True, seed=3)

    with pytest.raises(
        DataValidationError,
        match=r"xgb: .*'lstm_direction_v1'.*'xgb_direction_v1' \(50 features\): missing",
    ):
        XgbDirectionModel(TEST_XGB).fit(data, np.arange(800, dtype=np.intp))


def test_refuses_reordered_features() -> None:
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)
    order = list(reversed(range(len(data.features))))
    reordered = DirectionDataset(
        data.feature_service,
        tuple(data.features[j] for j in order),
        data.frame,
        data.X[:, order],
        data.y,
    )

    with pytest.raises(DataValidationError, match="different order"):
        XgbDirectionModel(TEST_XGB).fit(reordered, np.arange(800, dtype=np.intp))


def test_unfitted_model_is_unavailable() -> None:
    data = make_direction_data("xgb_direction_v1", 50, planted=False, seed=3)
    model = XgbDirectionModel(TEST_XGB)

    with pytest.raises(ModelUnavailableError, match="xgb: the model is not fitted"):
        model.predict_proba(data, np.arange(10, dtype=np.intp))
    with pytest.raises(ModelUnavailableError, match="xgb: the model is not fitted"):
        model.to_onnx()
    with pytest.raises(ModelUnavailableError, match="xgb: the model is not fitted"):
        model.native_model()
    assert "best_iteration" not in model.params()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_depth": 0}, "max_depth must be at least 1"),
        ({"subsample": 1.5}, r"subsample must be in \(0, 1\]"),
        ({"validation_fraction": 0.0}, "validation_fraction"),
        ({"early_stopping_rounds": 0}, "early_stopping_rounds"),
    ],
)
def test_config_rejects_bad_values(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        XgbConfig(**change)


def test_without_early_stopping_all_rows_and_trees_are_used() -> None:
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)
    train, _ = time_split(data, 0.3)
    model = XgbDirectionModel(
        XgbConfig(n_estimators=15, early_stopping_rounds=None, min_train_rows=100)
    )

    model.fit(data, train)

    params = model.params()
    assert params["n_trees"] == 15 and params["n_fit_rows"] == len(train)
    assert params["n_validation_rows"] == 0 and "best_validation_logloss" not in params
