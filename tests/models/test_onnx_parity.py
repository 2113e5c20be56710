"""Direction ONNX parity (onnxruntime vs predict_proba) and single-row latency, both families."""

from __future__ import annotations

import numpy as np
import pytest

from models.onnx_parity import check_direction_parity, onnx_latency
from sextant.errors import DataValidationError, ModelUnavailableError
from tests.models.conftest import N_DIRECTION, TEST_LSTM, FittedDirection
from tests.models.direction_data import PLANTED

FAMILIES = ["xgb_planted", "lstm_planted"]


def _parity_rows(fitted: FittedDirection) -> np.ndarray:
    """Held-out rows, plus each symbol's first rows (LSTM padding) and rows with NaN features."""
    starts = np.r_[0 : TEST_LSTM.seq_len, N_DIRECTION : N_DIRECTION + TEST_LSTM.seq_len]
    return np.concatenate([fitted.test, starts]).astype(np.intp)


@pytest.mark.parametrize("family", FAMILIES)
def test_onnx_matches_predict_proba_on_held_out_rows(
    family: str, request: pytest.FixtureRequest
) -> None:
    fitted: FittedDirection = request.getfixturevalue(family)
    rows = _parity_rows(fitted)

    report = check_direction_parity(fitted.model, fitted.data, rows, model_proto=fitted.proto)

    assert report.passed, report.message
    assert report.n == len(rows) and report.max_abs_err <= 1e-5
    j = fitted.data.features.index(PLANTED)
    assert report.n_with_nan >= np.isnan(fitted.data.X[rows, j]).sum() > 50
    assert "parity passed" in report.message
    report.raise_for_failure()


def test_parity_exports_the_model_when_no_graph_is_given(xgb_planted: FittedDirection) -> None:
    report = check_direction_parity(xgb_planted.model, xgb_planted.data, xgb_planted.test[:100])

    assert report.passed and report.n == 100


def test_parity_fails_for_a_graph_of_another_model(
    xgb_planted: FittedDirection, lstm_planted: FittedDirection
) -> None:
    # Arrange: the XGBoost model's inputs fed to... its own graph, but with other trees
    from models.xgb import XgbConfig, XgbDirectionModel

    other = XgbDirectionModel(
        XgbConfig(n_estimators=5, early_stopping_rounds=None, min_train_rows=100)
    )
    other.fit(xgb_planted.data, xgb_planted.train)

    # Act
    report = check_direction_parity(
        xgb_planted.model, xgb_planted.data, xgb_planted.test, model_proto=other.to_onnx()
    )
    broken = check_direction_parity(
        xgb_planted.model, xgb_planted.data, xgb_planted.test, model_proto=lstm_planted.proto
    )

    # Assert
    assert not report.passed and report.max_abs_err > 1e-3
    assert "exceeds tolerance" in report.message and "worst row" in report.message
    with pytest.raises(ModelUnavailableError, match="ONNX xgb parity failed"):
        report.raise_for_failure()
    assert not broken.passed and "onnxruntime could not run the graph" in broken.message


def test_parity_refuses_an_empty_sample(xgb_planted: FittedDirection) -> None:
    with pytest.raises(DataValidationError, match="xgb: the parity sample is empty"):
        check_direction_parity(xgb_planted.model, xgb_planted.data, np.zeros(0, dtype=np.intp))


@pytest.mark.parametrize("family", FAMILIES)
def test_latency_of_single_rows_is_positive_and_ordered(
    family: str, request: pytest.FixtureRequest
) -> None:
    fitted: FittedDirection = request.getfixturevalue(family)
    one_row = fitted.model.onnx_inputs(fitted.data, fitted.test[-1:])

    p50, p99 = onnx_latency(fitted.proto, one_row, n=200)

    assert 0 < p50 <= p99
