"""The ONNX one-step recursion (the registered graph): a valid graph, parity with the native
recursion, GJR asymmetry, and the served variance recomputed over online windows of returns."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import numpy_helper

from features.definitions import GARCH_WINDOW
from features.online import GARCH_VARIANCE_TOLERANCE, garch_variance
from models.garch import GarchFit, filter_variance
from models.garch_family import garch_multi_onnx, garch_multi_parity, garch_window_parity
from models.onnx_garch import OPSET, ParityReport
from models.onnx_parity import cpu_session
from sextant.errors import ModelUnavailableError
from tests.models.conftest import FittedSample

SYMBOL = "BTC/USDT"


def graph_of(fit: GarchFit) -> onnx.ModelProto:
    """The registered graph for one symbol's fit."""
    return garch_multi_onnx({SYMBOL: fit})


def run_graph(
    model: onnx.ModelProto, last_return: npt.ArrayLike, last_variance: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """One step for each row, all rows the graph's first symbol."""
    returns = np.asarray(last_return, dtype=np.float64).reshape(-1, 1)
    (out,) = cpu_session(model).run(
        ["next_variance"],
        {
            "symbol_index": np.zeros_like(returns, dtype=np.int64),
            "last_return": returns,
            "last_variance": np.asarray(last_variance, dtype=np.float64).reshape(-1, 1),
        },
    )
    return np.asarray(out, dtype=np.float64).reshape(-1)


def test_graph_is_valid_with_named_float64_columns(sim_t: FittedSample) -> None:
    model = graph_of(sim_t.fit)

    onnx.checker.check_model(model, full_check=True)
    graph = model.graph
    assert [i.name for i in graph.input] == ["symbol_index", "last_return", "last_variance"]
    assert [o.name for o in graph.output] == ["next_variance"]
    for value in [*graph.input[1:], *graph.output]:
        assert value.type.tensor_type.elem_type == onnx.TensorProto.DOUBLE
        dims = value.type.tensor_type.shape.dim
        assert dims[0].dim_param == "N" and dims[1].dim_value == 1
    assert model.opset_import[0].version == OPSET
    inits = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    assert inits["omega_table"].tolist() == [sim_t.fit.params.omega]
    assert inits["beta_table"].tolist() == [sim_t.fit.params.beta]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["nu"] == f'{{"{SYMBOL}": {sim_t.fit.params.nu!r}}}' and props["gjr"] == "false"


@pytest.mark.parametrize("sample", ["sim_t", "sim_gjr", "btc_hourly"])
def test_parity_on_held_out_rows(sample: str, request: pytest.FixtureRequest) -> None:
    fitted: FittedSample = request.getfixturevalue(sample)

    report = garch_multi_parity(graph_of(fitted.fit), {SYMBOL: fitted.fit}, {SYMBOL: fitted.test})

    assert report.passed, report.message
    assert report.n == len(fitted.test)
    assert report.max_rel_err <= 1e-9
    assert "parity passed" in report.message


def test_onnx_respects_the_gjr_asymmetry(sim_gjr: FittedSample, sim_t: FittedSample) -> None:
    shock, variance = 0.02, 5e-5
    for fitted in (sim_gjr, sim_t):
        p = fitted.fit.params
        returns = [p.mu + shock, p.mu - shock]

        up, down = run_graph(graph_of(fitted.fit), returns, [variance, variance])

        assert down - up == pytest.approx(p.gamma * shock**2, rel=1e-9, abs=1e-18)
        assert up == pytest.approx(fitted.fit.forecast_next(returns[0], variance), rel=1e-12)
    assert sim_gjr.fit.params.gamma * shock**2 > 1e-5  # the GJR case is a real difference


def test_a_tampered_graph_fails_parity_with_a_clear_message(sim_t: FittedSample) -> None:
    model = graph_of(sim_t.fit)
    omega = next(t for t in model.graph.initializer if t.name == "omega_table")
    omega.CopyFrom(
        numpy_helper.from_array(np.array([sim_t.fit.params.omega * 1.01]), name="omega_table")
    )

    report = garch_multi_parity(model, {SYMBOL: sim_t.fit}, {SYMBOL: sim_t.test.iloc[:200]})

    assert not report.passed and report.max_rel_err > 1e-9
    assert f"over 200 rows of 1 symbols (tolerance 1e-09); worst: {SYMBOL} row" in report.message
    with pytest.raises(ModelUnavailableError, match="ONNX GARCH parity failed"):
        report.raise_for_failure()


def test_a_graph_onnxruntime_cannot_run_fails_parity(sim_t: FittedSample) -> None:
    model = graph_of(sim_t.fit)
    del model.graph.initializer[:]  # constants gone: the graph no longer loads

    report = garch_multi_parity(model, {SYMBOL: sim_t.fit}, {SYMBOL: sim_t.test.iloc[:10]})
    windowed = garch_window_parity(model, {SYMBOL: sim_t.fit}, {SYMBOL: sim_t.returns}, last=10)

    assert report == ParityReport(
        max_rel_err=float("inf"), n=10, passed=False, tolerance=1e-9, message=report.message
    )
    assert "onnxruntime could not run the graph" in report.message
    assert not windowed.passed and "onnxruntime could not run the graph" in windowed.message


# --- the served variance: recomputed over the online window of returns ---------------------------


@pytest.mark.parametrize("sample", ["sim_t", "sim_gjr", "btc_hourly"])
def test_the_variance_from_a_window_of_returns_is_the_whole_history_filter(
    sample: str, request: pytest.FixtureRequest
) -> None:
    # Arrange: the fit's graph; every held-out bar's window of the last GARCH_WINDOW returns
    fitted: FittedSample = request.getfixturevalue(sample)

    # Act
    report = garch_window_parity(
        graph_of(fitted.fit), {SYMBOL: fitted.fit}, {SYMBOL: fitted.returns}, last=300
    )

    # Assert
    assert report.passed, report.message
    assert report.n == 300 and report.max_rel_err <= GARCH_VARIANCE_TOLERANCE


def test_null_returns_in_the_window_are_skipped_as_training_drops_them(
    sim_gjr: FittedSample,
) -> None:
    # Arrange: the latest bars of a symbol with a candle gap (a null return) and a history
    # shorter than the window for a second symbol (padding before its first bar)
    params = sim_gjr.fit.params
    returns = sim_gjr.returns.to_numpy()[-2 * GARCH_WINDOW :]
    window = returns[-GARCH_WINDOW:].copy()
    window[100] = np.nan
    short = np.full(GARCH_WINDOW, np.nan)
    short[-3:] = returns[-3:]
    model = graph_of(sim_gjr.fit)

    def step(last_return: np.ndarray, last_variance: np.ndarray) -> np.ndarray:
        return run_graph(model, last_return, last_variance)

    # Act
    served = garch_variance(step, np.vstack([window, short, np.full(GARCH_WINDOW, np.nan)]))

    # Assert: the training side filters the returns without the null one
    kept = np.delete(returns, GARCH_WINDOW + 100)
    filtered = filter_variance(params, kept)
    expected = float(params.next_variance(kept[-1], filtered[-1]))
    assert served[0] == pytest.approx(expected, rel=GARCH_VARIANCE_TOLERANCE)
    # three returns from their mean square: the recursion itself, nothing forgotten yet
    seed = float(np.mean(returns[-3:] ** 2))
    by_hand = seed
    for value in returns[-3:]:
        by_hand = float(params.next_variance(value, by_hand))
    assert served[1] == pytest.approx(by_hand, rel=1e-12)
    assert np.isnan(served[2])  # no return at all: no variance


def test_a_window_too_short_for_the_persistence_fails_the_window_parity(
    sim_t: FittedSample,
) -> None:
    # Arrange: beta 0.9 forgets the start as 0.9**20 = 0.12 over 20 returns: far from 1e-6
    model = graph_of(sim_t.fit)

    # Act
    report = garch_window_parity(
        model, {SYMBOL: sim_t.fit}, {SYMBOL: sim_t.returns}, last=50, window=20
    )

    # Assert
    assert not report.passed and report.max_rel_err > GARCH_VARIANCE_TOLERANCE
    assert "failed" in report.message and f"worst: {SYMBOL} at" in report.message
    with pytest.raises(ModelUnavailableError, match="online-window parity failed"):
        report.raise_for_failure()
