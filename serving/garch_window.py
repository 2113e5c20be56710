"""The registered GARCH graph evaluated over a whole window of returns in one onnxruntime call.

The registered model is the one-step recursion (``symbol_index``, ``last_return``,
``last_variance`` → ``next_variance``). Serving needs the variance after a window of returns
(`features.online.garch_variance`); calling the one-step graph once per return costs one
onnxruntime call per bar of the window (336 of them: 14 ms p50 for two symbols here; an ONNX
``Scan`` over the same graph, 4.4 ms). ``windowed_model`` unrolls the recursion instead: the
registered graph, unchanged, computes every step's term at once, and a weighted sum adds them
(0.11 ms), with the same null-return rule (a null return is skipped). A test holds it equal to
stepping the registered graph within 1e-12 relative.

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
    """The variance after a window of returns, from the registered graph, in one pass.

    ``v' = term(r) + beta * v`` is linear in ``v``, so after the window's present returns
    ``v_W = beta**M * v_0 + sum_k beta**m_k * term(r_k)``, where ``M`` counts the present returns
    and ``m_k`` those after ``k``. The registered graph itself computes every ``term(r_k)`` at
    once (fed the whole window with a zero variance: its operations broadcast) and names the
    symbol's ``beta``; a handful of elementwise operations do the rest. Not the same rounding as
    stepping: equal to it within 1e-12 relative (a test). Inputs and output: module docstring.
    """
    graph = one_step.graph
    names = {value.name for value in graph.input}
    produced = {output for node in graph.node for output in node.output}
    outputs = [value.name for value in graph.output]
    if names != {_SYMBOL, _RETURN, _VARIANCE} or outputs != [_NEXT] or "beta" not in produced:
        raise ValueError(
            f"not the registered GARCH one-step graph: inputs {sorted(names)}, outputs "
            f"{outputs}, a 'beta' tensor: {'beta' in produced}"
        )
    column: list[str | int | None] = ["N", 1]
    nodes = [
        # [W, N, 1] -> [N, W]: the window along axis 1, broadcasting against [N, 1] parameters
        helper.make_node("Transpose", [RETURNS], ["returns_nw1"], perm=[1, 0, 2]),
        helper.make_node("Squeeze", ["returns_nw1", "last_axis"], ["returns_nw"]),
        helper.make_node("IsNaN", ["returns_nw"], ["missing"]),
        helper.make_node("Where", ["missing", "zero", "returns_nw"], [_RETURN]),
        helper.make_node("Mul", ["returns_nw", "zero"], ["zeros_raw"]),
        helper.make_node("Where", ["missing", "zero", "zeros_raw"], [_VARIANCE]),
        *graph.node,  # next_variance = term(r_k) for every k, since the variance fed is 0
        helper.make_node("Not", ["missing"], ["present"]),
        helper.make_node("Cast", ["present"], ["present_f"], to=TensorProto.DOUBLE),
        helper.make_node("CumSum", ["present_f", "window_axis"], ["after"], exclusive=1, reverse=1),
        # beta**after as exp(after * log(beta)): onnxruntime's Pow over the [N, W] window was
        # 40 % of the graph's time; beta floored at the smallest normal double, so a zero beta
        # gives weight 1 at after = 0 (not 0 * -inf) and 0 beyond (within 1e-307 of it)
        helper.make_node("Max", ["beta", "tiny"], ["beta_floored"]),
        helper.make_node("Log", ["beta_floored"], ["log_beta"]),
        helper.make_node("Mul", ["after", "log_beta"], ["log_weight"]),
        helper.make_node("Exp", ["log_weight"], ["weight"]),
        helper.make_node("Mul", ["weight", _NEXT], ["weighted"]),
        helper.make_node("Where", ["missing", "zero", "weighted"], ["contribution"]),
        helper.make_node("ReduceSum", ["contribution", "window_axes"], ["sum"], keepdims=1),
        helper.make_node("ReduceSum", ["present_f", "window_axes"], ["count"], keepdims=1),
        helper.make_node("Pow", ["beta", "count"], ["start_weight"]),
        helper.make_node("Mul", ["start_weight", INITIAL_VARIANCE], ["start"]),
        helper.make_node("Add", ["start", "sum"], [OUTPUT]),
    ]
    constants = [
        helper.make_tensor("last_axis", TensorProto.INT64, [1], [2]),
        helper.make_tensor("window_axis", TensorProto.INT64, [], [1]),
        helper.make_tensor("window_axes", TensorProto.INT64, [1], [1]),
        helper.make_tensor("tiny", TensorProto.DOUBLE, [], [2.2250738585072014e-308]),
    ]
    outer = helper.make_graph(
        nodes,
        f"{graph.name}_closed_form",
        inputs=[
            next(value for value in graph.input if value.name == _SYMBOL),
            helper.make_tensor_value_info(RETURNS, TensorProto.DOUBLE, ["W", "N", 1]),
            helper.make_tensor_value_info(INITIAL_VARIANCE, TensorProto.DOUBLE, column),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT, TensorProto.DOUBLE, column)],
        initializer=[*graph.initializer, *constants],
    )
    model = helper.make_model(
        outer,
        opset_imports=list(one_step.opset_import),
        ir_version=one_step.ir_version,
        producer_name="sextant",
        doc_string=f"{one_step.doc_string} (closed form over a window of returns)",
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
