"""LSTM direction family: causal windows per symbol, scaler inside the graph, reproducible fits."""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
import pytest
import torch
from sklearn.metrics import roc_auc_score

from features.definitions import LSTM_WINDOW, vector_layout
from features.online import sequence_input, unpack_vectors
from models.lstm import LstmConfig, LstmDirectionModel
from models.onnx_parity import run_direction_onnx
from models.protocol import DirectionDataset
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError
from tests.models.conftest import N_DIRECTION, TEST_LSTM, FittedDirection
from tests.models.direction_data import make_direction_data, time_split


def test_learns_the_planted_feature(lstm_planted: FittedDirection) -> None:
    fitted = lstm_planted

    p_up = fitted.model.predict_proba(fitted.data, fitted.test)

    assert p_up.shape == (len(fitted.test),) and p_up.dtype == np.float64
    assert ((p_up > 0) & (p_up < 1)).all()
    assert roc_auc_score(fitted.data.y[fitted.test], p_up) > 0.7


def test_stays_at_chance_on_noise() -> None:
    # labels are sums of the *next* rows' log_return_1: a window reaching forward would beat chance
    data = make_direction_data("lstm_direction_v1", N_DIRECTION, planted=False, seed=11)
    train, test = time_split(data, 0.3)
    model = LstmDirectionModel(TEST_LSTM)
    model.fit(data, train)

    p_up = model.predict_proba(data, test)

    assert abs(roc_auc_score(data.y[test], p_up) - 0.5) < 0.06


def test_prediction_ignores_later_rows_and_other_symbols(lstm_planted: FittedDirection) -> None:
    # Arrange: scramble every row after a decision row of the first symbol, and the second symbol
    data, model = lstm_planted.data, lstm_planted.model
    row = 1000
    X = data.X.copy()
    X[row + 1 :] = np.random.default_rng(0).normal(size=X[row + 1 :].shape).astype(np.float32)
    scrambled = DirectionDataset(data.feature_service, data.features, data.frame, X, data.y)
    rows = np.arange(row - 20, row + 1, dtype=np.intp)

    # Act / Assert
    np.testing.assert_array_equal(
        model.predict_proba(scrambled, rows), model.predict_proba(data, rows)
    )
    assert not np.array_equal(
        model.predict_proba(scrambled, rows + 21), model.predict_proba(data, rows + 21)
    )


def test_onnx_inputs_are_raw_windows_padded_with_nan(lstm_planted: FittedDirection) -> None:
    data, model = lstm_planted.data, lstm_planted.model
    seq_len = TEST_LSTM.seq_len
    second_start = N_DIRECTION  # first row of the second symbol
    rows = np.array([second_start, second_start + 3, second_start + seq_len + 5], dtype=np.intp)

    sequence = model.onnx_inputs(data, rows)["sequence"]

    assert sequence.shape == (3, seq_len, len(data.features)) and sequence.dtype == np.float32
    assert np.isnan(sequence[0, :-1]).all()
    np.testing.assert_array_equal(sequence[0, -1], data.X[second_start])
    assert np.isnan(sequence[1, : seq_len - 4]).all()
    np.testing.assert_array_equal(
        sequence[1, seq_len - 4 :], data.X[second_start : second_start + 4]
    )
    np.testing.assert_array_equal(
        sequence[2], data.X[second_start + 6 : second_start + seq_len + 6]
    )


def test_the_online_window_unpacks_into_the_graphs_input(lstm_planted: FittedDirection) -> None:
    # Arrange: the online vectors of a symbol's latest row and of its 6th row, packed as
    # `features.vectors` writes them (the last LSTM_WINDOW rows, oldest first, row-major, NaN
    # before the symbol's first row)
    data, model = lstm_planted.data, lstm_planted.model
    layout = vector_layout(data.feature_service)
    second_start = N_DIRECTION
    rows = np.array([second_start - 1, second_start + 5], dtype=np.intp)
    starts = np.array([0, second_start])
    packed = np.full((len(rows), LSTM_WINDOW, len(data.features)), np.nan)
    for i, (row, start) in enumerate(zip(rows, starts, strict=True)):
        history = data.X[max(start, row - LSTM_WINDOW + 1) : row + 1]
        packed[i, LSTM_WINDOW - len(history) :] = history
    vectors = packed.reshape(len(rows), layout.size)

    # Act: what serving feeds the graph, from one online read
    window = unpack_vectors(vectors, layout)
    sequence = sequence_input(window, layout.features, data.features, TEST_LSTM.seq_len)

    # Assert: the model's own input of those rows, and the same probabilities
    expected = model.onnx_inputs(data, rows)["sequence"]
    np.testing.assert_array_equal(sequence, expected)
    np.testing.assert_array_equal(
        run_direction_onnx(lstm_planted.proto, {"sequence": sequence}),
        run_direction_onnx(lstm_planted.proto, {"sequence": expected}),
    )
    assert LstmConfig().seq_len <= LSTM_WINDOW  # the default model fits the online window


def test_onnx_graph_is_self_contained_with_scaler_inside(lstm_planted: FittedDirection) -> None:
    proto = lstm_planted.proto
    graph = proto.graph

    assert [i.name for i in graph.input] == ["sequence"]
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [TEST_LSTM.seq_len, 18]
    assert [o.name for o in graph.output] == ["p_up"]
    assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [1]
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in graph.initializer)
    ops = {n.op_type for n in graph.node}
    assert {"IsNaN", "Where", "Sub", "Div", "LSTM", "Sigmoid"} <= ops
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["family"] == "lstm" and props["seq_len"] == str(TEST_LSTM.seq_len)


def test_scaler_uses_training_rows_only(lstm_planted: FittedDirection) -> None:
    # Arrange: shift every test row of a feature far away; the training statistics must not move
    data, model = lstm_planted.data, lstm_planted.model
    X = data.X.copy()
    X[lstm_planted.test, 0] += 1000.0
    shifted = DirectionDataset(data.feature_service, data.features, data.frame, X, data.y)
    refit = LstmDirectionModel(TEST_LSTM)

    # Act
    refit.fit(shifted, lstm_planted.train)

    # Assert: same training rows, same fit, bit for bit
    rows = lstm_planted.train[-50:]
    np.testing.assert_array_equal(
        refit.predict_proba(shifted, rows), model.predict_proba(data, rows)
    )


def test_same_data_config_and_seed_give_identical_predictions_on_two_threads() -> None:
    # Arrange: the default thread count, a short fit
    config = TEST_LSTM.replace(n_threads=2, max_epochs=2)
    data = make_direction_data("lstm_direction_v1", 700, planted=True, seed=5)
    train, test = time_split(data, 0.3)
    torch_state = torch.get_rng_state()
    first, second = LstmDirectionModel(config), LstmDirectionModel(config)

    # Act
    first.fit(data, train)
    second.fit(data, train)

    # Assert: identical, and the caller's torch RNG and settings untouched
    np.testing.assert_array_equal(first.predict_proba(data, test), second.predict_proba(data, test))
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert not torch.are_deterministic_algorithms_enabled()


def test_different_seed_gives_different_predictions(lstm_planted: FittedDirection) -> None:
    other = LstmDirectionModel(TEST_LSTM.replace(seed=7, max_epochs=1))

    other.fit(lstm_planted.data, lstm_planted.train)

    assert not np.array_equal(
        other.predict_proba(lstm_planted.data, lstm_planted.test),
        lstm_planted.model.predict_proba(lstm_planted.data, lstm_planted.test),
    )


def test_params_report_the_early_stopping(lstm_planted: FittedDirection) -> None:
    params = lstm_planted.model.params()

    assert 0 <= params["best_epoch"] < params["epochs_run"] <= TEST_LSTM.max_epochs
    assert 0 < params["best_validation_logloss"] < 0.7
    assert params["n_fit_rows"] + params["n_validation_rows"] < len(lstm_planted.train)
    assert params["seq_len"] == TEST_LSTM.seq_len and params["n_parameters"] > 0


def test_refuses_single_class_labels() -> None:
    data = make_direction_data("lstm_direction_v1", 400, planted=True, seed=3)
    zeros = DirectionDataset(
        data.feature_service, data.features, data.frame, data.X, np.zeros_like(data.y)
    )

    with pytest.raises(
        DataValidationError, match=r"lstm: label_up has a single class \(0\) over 800 training rows"
    ):
        LstmDirectionModel(TEST_LSTM).fit(zeros, np.arange(800, dtype=np.intp))


def test_refuses_too_few_training_rows() -> None:
    data = make_direction_data("lstm_direction_v1", 400, planted=True, seed=3)

    with pytest.raises(DataValidationError, match=r"lstm: 120 training rows, at least 200 needed"):
        LstmDirectionModel(TEST_LSTM).fit(data, np.arange(120, dtype=np.intp))


def test_refuses_features_of_another_service() -> None:
    data = make_direction_data("xgb_direction_v1", 400, planted=True, seed=3)

    with pytest.raises(
        DataValidationError,
        match=r"lstm: .*'xgb_direction_v1'.*'lstm_direction_v1' \(18 features\): missing \[\], unexpected \[",
    ):
        LstmDirectionModel(TEST_LSTM).fit(data, np.arange(800, dtype=np.intp))


def test_refuses_rows_not_grouped_by_symbol() -> None:
    data = make_direction_data("lstm_direction_v1", 400, planted=True, seed=3)
    order = np.r_[0:200, 400:600, 200:400, 600:800]
    interleaved = data.subset(order.astype(np.intp))

    with pytest.raises(DataValidationError, match="lstm: rows are not grouped by symbol"):
        LstmDirectionModel(TEST_LSTM).fit(interleaved, np.arange(800, dtype=np.intp))


def test_unfitted_model_is_unavailable() -> None:
    data = make_direction_data("lstm_direction_v1", 50, planted=False, seed=3)
    model = LstmDirectionModel(TEST_LSTM)

    for call in (lambda: model.predict_proba(data, np.arange(5, dtype=np.intp)), model.to_onnx):
        with pytest.raises(ModelUnavailableError, match="lstm: the model is not fitted"):
            call()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seq_len": 0}, "seq_len must be at least 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"lr": 0.0}, "lr must be positive"),
        ({"validation_fraction": 0.6}, "validation_fraction"),
    ],
)
def test_config_rejects_bad_values(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LstmConfig(**change)
