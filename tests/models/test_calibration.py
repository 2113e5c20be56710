"""Calibration: better-calibrated P(up), sklearn-exact isotonic maps, ONNX parity, purged tails."""

from __future__ import annotations

import json
import math

import numpy as np
import onnx
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import brier_score_loss

from models.calibration import (
    CALIBRATION_PROP,
    CalibratedModel,
    CalibrationMethod,
    Calibrator,
    calibrator_graph,
    fit_calibrated,
    fit_calibrator,
    split_calibration_tail,
    with_calibration,
)
from models.metrics import expected_calibration_error
from models.onnx_parity import check_direction_parity, cpu_session, run_direction_onnx
from models.xgb import XgbDirectionModel
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError
from tests.models.conftest import N_DIRECTION, TEST_XGB, FittedDirection
from tests.models.direction_data import make_direction_data, time_split

# float32 output of a float64 computation: at most half an ulp of a value < 1, i.e. 2**-25
FLOAT32_OUTPUT_TOLERANCE = 2.0**-25


def _sigmoid(z: np.ndarray) -> np.ndarray:
    out: np.ndarray = 1.0 / (1.0 + np.exp(-z))
    return out


def _overconfident_sample(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Raw score sigmoid(6x) of labels drawn with P(up) = sigmoid(2x): informative, overconfident."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n)
    y = (rng.random(n) < _sigmoid(2.0 * x)).astype(np.int64)
    return _sigmoid(6.0 * x), y


# --- fitting and applying ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibration_improves_brier_and_ece_on_held_out_rows(method: CalibrationMethod) -> None:
    p_fit, y_fit = _overconfident_sample(5_000, seed=1)
    p_test, y_test = _overconfident_sample(20_000, seed=2)

    calibrator = fit_calibrator(p_fit, y_fit, method)
    p_cal = calibrator.apply(p_test)

    assert brier_score_loss(y_test, p_cal) < brier_score_loss(y_test, p_test) - 0.01
    assert expected_calibration_error(y_test, p_cal) < 0.03
    assert expected_calibration_error(y_test, p_test) > 0.08
    grid = calibrator.apply(np.linspace(0.0, 1.0, 10_001))
    assert np.all(np.diff(grid) >= 0)
    assert grid.min() >= calibrator.eps and grid.max() <= 1.0 - calibrator.eps
    assert calibrator.n == 5_000 and calibrator.base_rate == pytest.approx(y_fit.mean())


def test_platt_recovers_the_true_logit_scale() -> None:
    p_fit, y_fit = _overconfident_sample(20_000, seed=3)

    calibrator = fit_calibrator(p_fit, y_fit, "platt")

    assert calibrator.coef == pytest.approx(1.0 / 3.0, abs=0.03)
    assert calibrator.intercept == pytest.approx(0.0, abs=0.05)


def test_platt_never_reverses_the_ranking() -> None:
    p_fit, y_fit = _overconfident_sample(2_000, seed=4)

    calibrator = fit_calibrator(1.0 - p_fit, y_fit, "platt")  # an anti-informative score

    assert calibrator.coef == 0.0
    assert np.ptp(calibrator.apply(np.linspace(0, 1, 101))) < 0.02


def test_isotonic_apply_equals_sklearn_on_the_grid_between_knots_and_outside() -> None:
    p_fit, y_fit = _overconfident_sample(3_000, seed=5)
    p_fit = 0.2 + 0.6 * p_fit  # knots inside [0.2, 0.8]: 0 and 1 lie outside
    calibrator = fit_calibrator(p_fit, y_fit)
    reference = IsotonicRegression(
        y_min=calibrator.eps, y_max=1 - calibrator.eps, out_of_bounds="clip"
    ).fit(p_fit, y_fit)
    x = np.asarray(calibrator.knots_x)
    between = (x[:-1] + x[1:]) / 2
    outside = np.array([0.0, 0.1, 0.199, 0.801, 0.9, 1.0])

    for p in (p_fit, between, outside, np.linspace(0, 1, 50_001)):
        np.testing.assert_allclose(calibrator.apply(p), reference.predict(p), rtol=0, atol=1e-12)
    assert calibrator.apply(outside[:3]).tolist() == [calibrator.knots_y[0]] * 3
    assert calibrator.apply(outside[3:]).tolist() == [calibrator.knots_y[-1]] * 3
    assert len(x) < 200  # the stored form is the trimmed knots, not the 3,000 rows


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_constant_raw_predictions_give_a_flat_map_at_the_base_rate(
    method: CalibrationMethod,
) -> None:
    y = np.r_[np.ones(70), np.zeros(130)].astype(np.int64)

    calibrator = fit_calibrator(np.full(200, 0.6), y, method)

    np.testing.assert_allclose(calibrator.apply(np.linspace(0, 1, 11)), 0.35, atol=1e-9)


def test_too_few_rows_or_a_single_class_is_a_data_validation_error() -> None:
    p, y = _overconfident_sample(300, seed=6)

    with pytest.raises(DataValidationError, match="300 calibration rows, at least 500"):
        fit_calibrator(p, y, min_rows=500)
    with pytest.raises(DataValidationError, match=r"single class \(1\) over 300 rows"):
        fit_calibrator(p, np.ones(300))
    with pytest.raises(DataValidationError, match="outside"):
        fit_calibrator(np.r_[p[:-1], np.nan], y)
    with pytest.raises(DataValidationError, match="outside"):
        Calibrator("platt", 10, 0.5).apply([0.5, 1.5])
    with pytest.raises(ConfigError, match="method"):
        fit_calibrator(p, y, "beta")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_dict_round_trip_through_json_is_exact(method: CalibrationMethod) -> None:
    p, y = _overconfident_sample(1_000, seed=7)
    calibrator = fit_calibrator(p, y, method)

    restored = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))

    assert restored == calibrator
    assert np.array_equal(restored.apply(p), calibrator.apply(p))


def test_from_dict_rejects_unknown_keys_and_bad_knots() -> None:
    payload = fit_calibrator(*_overconfident_sample(500, seed=8)).to_dict()

    with pytest.raises(DataValidationError, match=r"unexpected keys \['extra'\]"):
        Calibrator.from_dict({**payload, "extra": 1})
    with pytest.raises(DataValidationError, match="strictly increasing"):
        Calibrator.from_dict({**payload, "knots_x": payload["knots_x"][::-1]})


# --- ONNX -------------------------------------------------------------------------------------------


def _calibrators() -> dict[str, Calibrator]:
    p, y = _overconfident_sample(5_000, seed=9)
    p = 0.1 + 0.8 * p  # knots inside [0.1, 0.9]
    return {
        "isotonic": fit_calibrator(p, y),
        "platt": fit_calibrator(p, y, "platt"),
        "flat": fit_calibrator(np.full(500, 0.3), y[:500]),
    }


@pytest.mark.parametrize("name", ["isotonic", "platt", "flat"])
@pytest.mark.parametrize(
    ("elem_type", "tolerance"),
    [(onnx.TensorProto.FLOAT, FLOAT32_OUTPUT_TOLERANCE), (onnx.TensorProto.DOUBLE, 1e-12)],
)
def test_calibrator_graph_matches_apply_inside_and_outside_the_knots(
    name: str, elem_type: int, tolerance: float
) -> None:
    calibrator = _calibrators()[name]
    dtype = onnx.helper.tensor_dtype_to_np_dtype(elem_type)
    rng = np.random.default_rng(10)
    p = np.r_[rng.random(10_000), 0.0, 1.0, calibrator.knots_x].astype(dtype).reshape(-1, 1)

    (out,) = cpu_session(calibrator_graph(calibrator, elem_type=elem_type)).run(
        None, {"p_up_uncalibrated": p}
    )

    assert out.dtype == dtype and out.shape == p.shape
    expected = calibrator.apply(p.astype(np.float64))
    assert np.abs(out.astype(np.float64) - expected).max() <= tolerance


def test_wrapped_xgb_graph_outputs_calibrated_p_up_under_the_same_name(
    xgb_planted: FittedDirection,
) -> None:
    calibrator = _calibrators()["isotonic"]

    proto = with_calibration(xgb_planted.proto, calibrator)

    assert [o.name for o in proto.graph.output] == ["p_up"]
    assert proto.graph.output[0] == xgb_planted.proto.graph.output[0]  # type and [N, 1] shape
    assert [i.name for i in proto.graph.input] == ["features"]
    props = {p.key: p.value for p in proto.metadata_props}
    assert props["family"] == "xgb"
    assert Calibrator.from_dict(json.loads(props[CALIBRATION_PROP])) == calibrator
    with pytest.raises(ModelUnavailableError, match="already calibrated"):
        with_calibration(proto, calibrator)
    with pytest.raises(ModelUnavailableError, match="no output 'p_down'"):
        with_calibration(xgb_planted.proto, calibrator, output_name="p_down")


def _assert_calibrated_parity(fitted: FittedDirection, method: CalibrationMethod) -> None:
    """Calibrator fitted on half of the held-out rows, parity checked on the other half."""
    data, half = fitted.data, len(fitted.test) // 2
    cal_rows, rows = fitted.test[:half], fitted.test[half:]
    calibrator = fit_calibrator(
        fitted.model.predict_proba(data, cal_rows),
        data.y[cal_rows],
        method,
    )
    model = CalibratedModel(fitted.model, calibrator)
    proto = model.to_onnx()
    raw_onnx = run_direction_onnx(fitted.proto, model.onnx_inputs(data, rows))
    raw_err = np.abs(raw_onnx - fitted.model.predict_proba(data, rows)).max()

    report = check_direction_parity(model, data, rows, model_proto=proto)
    calibrated_onnx = run_direction_onnx(proto, model.onnx_inputs(data, rows))

    # the graph computes the map exactly: its only error is rounding the output to float32
    assert np.abs(calibrated_onnx - calibrator.apply(raw_onnx)).max() <= FLOAT32_OUTPUT_TOLERANCE
    # versus native: the raw float32 difference, grown at most by the map's steepest slope
    assert report.max_abs_err <= calibrator.max_slope * raw_err + FLOAT32_OUTPUT_TOLERANCE
    assert report.passed, report.message


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrated_xgb_onnx_matches_calibrated_predict_proba(
    xgb_planted: FittedDirection, method: CalibrationMethod
) -> None:
    _assert_calibrated_parity(xgb_planted, method)


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrated_lstm_onnx_matches_calibrated_predict_proba(
    lstm_planted: FittedDirection, method: CalibrationMethod
) -> None:
    _assert_calibrated_parity(lstm_planted, method)


def test_fit_calibrated_fits_the_model_before_the_tail_and_calibrates_on_it() -> None:
    data = make_direction_data("xgb_direction_v1", N_DIRECTION, planted=True, seed=12)
    train, test = time_split(data, 0.3)
    fit_idx, cal_idx = split_calibration_tail(train, data.decision_ts, data.label_end_ts, 0.2)

    model, tail = fit_calibrated(XgbDirectionModel(TEST_XGB), data, train, fraction=0.2)

    params = model.params()
    assert params["n_fit_rows"] + params["n_validation_rows"] <= len(fit_idx)
    assert params["calibration_rows"] == model.calibrator.n == len(cal_idx)
    np.testing.assert_array_equal(tail, cal_idx)
    assert params["calibration_method"] == "isotonic" and model.family == "xgb"
    p_up = model.predict_proba(data, test)
    assert expected_calibration_error(data.y[test], p_up) < 0.1
    assert check_direction_parity(model, data, test).passed
    with pytest.raises(ConfigError, match="fit_calibrated"):
        model.fit(data, train)


# --- calibration tail -------------------------------------------------------------------------------


def _rows(n_times: int, symbols: int = 3, horizon_h: int = 4) -> pd.DataFrame:
    """Rows sorted by (symbol, decision time), symbols sharing hourly decision times."""
    times = pd.date_range("2024-01-01", periods=n_times, freq="h", tz="UTC")
    frame = pd.DataFrame(
        {
            "symbol": np.repeat([f"S{k}" for k in range(symbols)], n_times),
            "decision_ts": np.tile(times, symbols),
        }
    )
    frame["label_end_ts"] = frame["decision_ts"] + pd.Timedelta(hours=horizon_h)
    return frame


def test_tail_is_the_latest_times_and_fit_rows_are_purged() -> None:
    frame = _rows(100)
    train = np.flatnonzero((frame["decision_ts"] < frame["decision_ts"].iloc[90]).to_numpy())

    fit_idx, cal_idx = split_calibration_tail(
        train, frame["decision_ts"], frame["label_end_ts"], 0.2, min_rows=10
    )

    decision, label_end = frame["decision_ts"], frame["label_end_ts"]
    tail_start = decision.iloc[cal_idx].min()
    assert decision.iloc[cal_idx].nunique() == math.ceil(0.2 * 90) == 18
    assert len(cal_idx) == 18 * 3  # every symbol of a tail time is in the tail
    assert (label_end.iloc[fit_idx] < tail_start).all()
    assert decision.iloc[fit_idx].max() == tail_start - pd.Timedelta(hours=5)  # 4 h label purged
    assert set(decision.iloc[fit_idx]).isdisjoint(set(decision.iloc[cal_idx]))
    assert set(cal_idx) == set(train[(decision.iloc[train] >= tail_start).to_numpy()])
    assert len(fit_idx) == (90 - 18 - 4) * 3
    assert np.array_equal(np.sort(fit_idx), fit_idx) and np.array_equal(np.sort(cal_idx), cal_idx)


@pytest.mark.parametrize("fraction", [0.0, -0.1, 0.5, 1.0, math.nan])
def test_bad_fraction_is_a_config_error(fraction: float) -> None:
    frame = _rows(50)

    with pytest.raises(ConfigError, match="calibration fraction"):
        split_calibration_tail(
            np.arange(len(frame)), frame["decision_ts"], frame["label_end_ts"], fraction
        )


def test_short_tail_or_nothing_left_to_fit_is_a_data_validation_error() -> None:
    short = _rows(20)
    with pytest.raises(DataValidationError, match=r"holds 12 rows \(4 timestamps\), at least 200"):
        split_calibration_tail(
            np.arange(len(short)), short["decision_ts"], short["label_end_ts"], 0.2
        )
    frame = _rows(20, horizon_h=48)
    rows = np.arange(len(frame))
    decision, label_end = frame["decision_ts"], frame["label_end_ts"]
    with pytest.raises(DataValidationError, match="no training row's label ends before"):
        split_calibration_tail(rows, decision, label_end, 0.2, min_rows=1)
    with pytest.raises(DataValidationError, match="tz-aware"):
        split_calibration_tail(rows, decision.dt.tz_localize(None), label_end, 0.2)
