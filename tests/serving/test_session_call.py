"""The engine's session call over fixed feeds: the compiled session where onnxruntime has one,
the public ``run`` otherwise, the same outputs either way."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from serving.engine import _session_call


@pytest.fixture(scope="module")
def session() -> onnxruntime.InferenceSession:
    """y = 2x over a float32 [n, 3] input: a real graph, built in memory."""
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "x"], ["y"])],
        "double",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return onnxruntime.InferenceSession(
        model.SerializeToString(), providers=["CPUExecutionProvider"]
    )


def test_the_call_runs_the_compiled_session_and_equals_the_public_run(
    session: onnxruntime.InferenceSession,
) -> None:
    feeds = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    call = _session_call(session, "y", feeds)
    assert call.func == session._sess.run  # type: ignore[attr-defined]
    np.testing.assert_array_equal(call()[0], session.run(["y"], feeds)[0])
    np.testing.assert_array_equal(call()[0], 2 * feeds["x"])


def test_a_session_without_a_compiled_one_is_run_through_its_public_run(
    session: onnxruntime.InferenceSession,
) -> None:
    feeds = {"x": np.ones((1, 3), dtype=np.float32)}
    wrapper = SimpleNamespace(run=session.run)  # no ``_sess``: another build of onnxruntime
    call = _session_call(wrapper, "y", feeds)
    assert call.func == session.run  # type: ignore[attr-defined]
    np.testing.assert_array_equal(call()[0], np.full((1, 3), 2.0, dtype=np.float32))


def test_a_wrong_feed_fails_the_call_as_the_public_run_does(
    session: onnxruntime.InferenceSession,
) -> None:
    call = _session_call(session, "y", {"x": np.ones((1, 4), dtype=np.float32)})
    with pytest.raises(Exception, match=r"(?i)dimension|shape|invalid"):
        call()
    with pytest.raises(Exception, match=r"(?i)dimension|shape|invalid"):
        session.run(["y"], {"x": np.ones((1, 4), dtype=np.float32)})
