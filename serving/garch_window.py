"""The registered GARCH graph run over a whole window of returns in one onnxruntime call.

The registered model is the one-step recursion (``symbol_index``, ``last_return``,
``last_variance`` → ``next_variance``). Serving needs the variance after a window of returns
(`features.online.garch_variance`); calling the one-step graph once per return costs one
onnxruntime call per bar of the window (336 of them, about 17 ms). ``windowed_model`` wraps the
registered graph, unchanged, as the body of an ONNX ``Scan`` over the window, with the same
null-return rule (a null return is skipped: the variance carries over), so one call gives the
same numbers: the same operations in the same order, which a test holds equal bit for bit.

Inputs of the windowed graph: ``symbol_index`` [N, 1] int64, ``returns`` [W, N, 1] float64
(oldest first, NaN: none), ``initial_variance`` [N, 1] float64 (`features.online.garch_seed`);
output ``variance`` [N, 1].
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from features.online import garch_seed

__all__ = ["INITIAL_VARIANCE", "OUTPUT", "RETURNS", "windowed_feeds", "windowed_model"]

RETURNS = "returns"
INITIAL_VARIANCE = "initial_variance"
OUTPUT = "variance"
# the registered one-step graph's names (models.onnx_garch, models.garch_family)
_SYMBOL, _RETURN, _VARIANCE, _NEXT = "symbol_index", "last_return", "last_variance", "next_variance"


def windowed_model(one_step: onnx.ModelProto) -> onnx.ModelProto:
    """``one_step`` as the body of a Scan over a window of returns (see the module docstring)."""
    graph = one_step.graph
    names = {value.name for value in graph.input}
    if names != {_SYMBOL, _RETURN, _VARIANCE} or [o.name for o in graph.output] != [_NEXT]:
        raise ValueError(
            f"not the registered GARCH one-step graph: inputs {sorted(names)}, "
            f"outputs {[o.name for o in graph.output]}"
        )
    column: list[str | int | None] = ["N", 1]
    raw = "return_raw"
    body = helper.make_graph(
        [
            helper.make_node("IsNaN", [raw], ["missing"], name="missing_return"),
            helper.make_node("Where", ["missing", "zero", raw], [_RETURN], name="return_or_zero"),
            *graph.node,  # the registered recursion; symbol_index and parameters: outer scope
            helper.make_node(
                "Where", ["missing", _VARIANCE, _NEXT], ["variance_out"], name="skip_missing"
            ),
        ],
        "garch_step",
        inputs=[
            helper.make_tensor_value_info(_VARIANCE, TensorProto.DOUBLE, column),
            helper.make_tensor_value_info(raw, TensorProto.DOUBLE, column),
        ],
        outputs=[helper.make_tensor_value_info("variance_out", TensorProto.DOUBLE, column)],
    )
    outer = helper.make_graph(
        [
            helper.make_node(
                "Scan", [INITIAL_VARIANCE, RETURNS], [OUTPUT], num_scan_inputs=1, body=body
            )
        ],
        f"{graph.name}_window",
        inputs=[
            next(value for value in graph.input if value.name == _SYMBOL),
            helper.make_tensor_value_info(RETURNS, TensorProto.DOUBLE, ["W", "N", 1]),
            helper.make_tensor_value_info(INITIAL_VARIANCE, TensorProto.DOUBLE, column),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, column)],
        initializer=list(graph.initializer),
    )
    model = helper.make_model(
        outer,
        opset_imports=list(one_step.opset_import),
        ir_version=one_step.ir_version,
        producer_name="sextant",
        doc_string=f"{one_step.doc_string} (Scan over a window of returns)",
    )
    helper.set_model_props(model, {p.key: p.value for p in one_step.metadata_props})
    onnx.checker.check_model(model, full_check=True)
    return model


def windowed_feeds(
    symbol_index: npt.ArrayLike, returns: npt.ArrayLike
) -> dict[str, npt.NDArray[np.generic]]:
    """The windowed graph's inputs from per-row symbol indices and [N, W] return windows."""
    r = np.asarray(returns, dtype=np.float64)
    return {
        _SYMBOL: np.asarray(symbol_index, dtype=np.int64).reshape(-1, 1),
        RETURNS: np.ascontiguousarray(r.T[:, :, None]),
        INITIAL_VARIANCE: garch_seed(r),
    }
