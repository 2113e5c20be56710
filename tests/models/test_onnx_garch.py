"""The ONNX one-step recursion: a valid graph, parity with forecast_next, GJR asymmetry."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from models.onnx_garch import (
    OPSET,
    ParityReport,
    check_parity,
    garch_onnx_model,
    run_garch_onnx,
)
from sextant.errors import ModelUnavailableError
from tests.models.conftest import FittedSample


def test_graph_is_valid_with_named_float64_columns(sim_t: FittedSample) -> None:
    model = garch_onnx_model(sim_t.fit)

    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert [i.name for i in graph.input] == ["last_return", "last_variance"]
    assert [o.name for o in graph.output] == ["next_variance"]
    for value in [*graph.input, *graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "N" and dims[1].dim_value == 1
    assert model.opset_import[0].version == OPSET
    inits = {t.name: float(numpy_helper.to_array(t)) for t in graph.initializer}
    assert inits["omega"] == sim_t.fit.params.omega and inits["beta"] == sim_t.fit.params.beta
    props = {p.key: p.value for p in model.metadata_props}
    assert float(props["nu"]) == sim_t.fit.params.nu and props["gjr"] == "false"


@pytest.mark.parametrize("sample", ["sim_t", "sim_gjr", "btc_hourly"])
def test_parity_on_held_out_rows(sample: str, request: pytest.FixtureRequest) -> None:
    fitted: FittedSample = request.getfixturevalue(sample)
    model = garch_onnx_model(fitted.fit)

    report = check_parity(model, fitted.fit, fitted.test)

    assert report.passed, report.message
    assert report.n == len(fitted.test)
    assert report.max_rel_err <= 1e-9
    assert "parity passed" in report.message


def test_onnx_respects_the_gjr_asymmetry(sim_gjr: FittedSample, sim_t: FittedSample) -> None:
    shock, variance = 0.02, 5e-5
    for fitted in (sim_gjr, sim_t):
        p = fitted.fit.params
        returns = [p.mu + shock, p.mu - shock]

        up, down = run_garch_onnx(garch_onnx_model(fitted.fit), returns, [variance, variance])

        assert down - up == pytest.approx(p.gamma * shock**2, rel=1e-9, abs=1e-18)
        assert up == pytest.approx(fitted.fit.forecast_next(returns[0], variance), rel=1e-12)
    assert sim_gjr.fit.params.gamma * shock**2 > 1e-5  # the GJR case is a real difference


def test_a_tampered_graph_fails_parity_with_a_clear_message(sim_t: FittedSample) -> None:
    model = garch_onnx_model(sim_t.fit)
    omega = next(t for t in model.graph.initializer if t.name == "omega")
    omega.CopyFrom(numpy_helper.from_array(np.array(sim_t.fit.params.omega * 1.01), name="omega"))

    report = check_parity(model, sim_t.fit, sim_t.test.iloc[:200])

    assert not report.passed and report.max_rel_err > 1e-9
    assert "exceeds tolerance 1e-09 over 200 rows; worst row" in report.message
    with pytest.raises(ModelUnavailableError, match="ONNX GARCH parity failed"):
        report.raise_for_failure()


def test_a_graph_onnxruntime_cannot_run_fails_parity(sim_t: FittedSample) -> None:
    model = garch_onnx_model(sim_t.fit)
    del model.graph.initializer[:]  # constants gone: the graph no longer loads

    report = check_parity(model, sim_t.fit, sim_t.test.iloc[:10])

    assert report == ParityReport(
        max_rel_err=float("inf"), n=10, passed=False, tolerance=1e-9, message=report.message
    )
    assert "onnxruntime could not run the graph" in report.message
