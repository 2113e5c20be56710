"""The registered GARCH graph evaluated over a window in one call equals stepping it per return."""

from __future__ import annotations

import numpy as np
import pytest
from onnx import numpy_helper

from features.definitions import GARCH_WINDOW
from features.online import garch_variance
from models.garch_family import garch_multi_onnx
from models.onnx_parity import cpu_session
from serving.garch_window import OUTPUT, windowed_feeds, windowed_model
from tests.models.conftest import FittedSample, sim_gjr, sim_t

__all__ = ["sim_gjr", "sim_t"]  # fixtures shared with the model tests (fitted once a session)


def test_one_windowed_call_equals_the_one_step_graph_stepped_per_return(
    sim_t: FittedSample, sim_gjr: FittedSample
) -> None:
    # Arrange: two symbols' fits in one registered graph; windows with a gap, a short history
    # and no history at all
    one_step = garch_multi_onnx({"A/USDT": sim_t.fit, "B/USDT": sim_gjr.fit})
    a = sim_t.returns.to_numpy()[-GARCH_WINDOW:].copy()
    b = sim_gjr.returns.to_numpy()[-GARCH_WINDOW:].copy()
    a[57] = np.nan  # a candle gap
    short = np.full(GARCH_WINDOW, np.nan)
    short[-5:] = b[-5:]
    windows = np.vstack([a, b, short, np.full(GARCH_WINDOW, np.nan)])
    index = np.array([[0], [1], [1], [0]], dtype=np.int64)
    step_session = cpu_session(one_step)

    def step(last_return: np.ndarray, last_variance: np.ndarray) -> np.ndarray:
        feed = {"symbol_index": index, "last_return": last_return, "last_variance": last_variance}
        return np.asarray(step_session.run(["next_variance"], feed)[0])

    expected = garch_variance(step, windows)
    # Act
    model = windowed_model(one_step)
    (served,) = cpu_session(model).run([OUTPUT], windowed_feeds(index, windows))
    # Assert: to rounding, including the gap, the short and the empty window
    served = np.asarray(served).reshape(-1)
    assert np.isfinite(expected[:3]).all() and np.isnan(expected[3])
    assert np.allclose(served[:3], expected[:3], rtol=1e-12, atol=0) and np.isnan(served[3])
    # the wrapper keeps the registered graph's metadata (symbols, VaR quantiles)
    props = {p.key: p.value for p in model.metadata_props}
    assert props == {p.key: p.value for p in one_step.metadata_props}


def test_a_graph_that_is_not_the_one_step_recursion_is_refused(sim_t: FittedSample) -> None:
    # Arrange
    model = garch_multi_onnx({"A/USDT": sim_t.fit})
    model.graph.output[0].name = "something_else"
    # Act / Assert
    with pytest.raises(ValueError, match="not the registered GARCH one-step graph"):
        windowed_model(model)


def test_a_zero_beta_still_equals_stepping(sim_t: FittedSample) -> None:
    # Arrange: the fit's beta at its bound (ARCH only): the window's weights are 0 ** count,
    # 1 for the newest return and 0 before it
    one_step = garch_multi_onnx({"A/USDT": sim_t.fit})
    (table,) = [t for t in one_step.graph.initializer if t.name == "beta_table"]
    table.CopyFrom(numpy_helper.from_array(np.zeros(1), name="beta_table"))
    window = sim_t.returns.to_numpy()[-GARCH_WINDOW:].copy()
    window[-1] = np.nan  # the newest bar missing: the weight-1 return is the one before it
    index = np.zeros((1, 1), dtype=np.int64)
    step_session = cpu_session(one_step)

    def step(last_return: np.ndarray, last_variance: np.ndarray) -> np.ndarray:
        feed = {"symbol_index": index, "last_return": last_return, "last_variance": last_variance}
        return np.asarray(step_session.run(["next_variance"], feed)[0])

    expected = garch_variance(step, window[None, :])
    # Act
    (served,) = cpu_session(windowed_model(one_step)).run(
        [OUTPUT], windowed_feeds(index, window[None, :])
    )
    # Assert: finite, and the one-step variance of the last present return alone
    assert np.isfinite(expected).all()
    assert np.allclose(np.asarray(served).reshape(-1), expected, rtol=1e-12, atol=0)
