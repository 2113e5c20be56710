"""The GARCH one-step variance recursion as ONNX nodes, the checked model around them, and the
parity report; `models.garch_family.garch_multi_onnx` builds the registered graph from them.

Serving feeds the graph a return and the conditional variance before it, one step per return of
the online window (`features.online.garch_variance`), so the variance advances every bar and
nothing of ``arch`` is needed at decision time. The nodes compute, per row,

    eps = last_return - mu
    next_variance = omega + Where(eps < 0, alpha + gamma, alpha) * (eps * eps) + beta * last_variance

in float64 and in the same operation order as ``GarchParams.next_variance``, so the two agree to
rounding. Opset 17 keeps the graph loadable by any onnxruntime since 1.13 (the installed 1.31
supports far newer); every operator used here is unchanged since opset 13 or earlier.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
from onnx import TensorProto, helper

from sextant.errors import ModelUnavailableError

__all__ = [
    "INPUT_RETURN",
    "INPUT_VARIANCE",
    "OPSET",
    "OUTPUT_VARIANCE",
    "PARITY_TOLERANCE",
    "ParityReport",
    "build_recursion_model",
    "recursion_nodes",
]

OPSET = 17
INPUT_RETURN = "last_return"
INPUT_VARIANCE = "last_variance"
OUTPUT_VARIANCE = "next_variance"
PARITY_TOLERANCE = 1e-9


def recursion_nodes() -> list[onnx.NodeProto]:
    """The one-step recursion over tensors named mu, omega, alpha, gamma, beta (shared by graphs)."""
    return [
        helper.make_node("Sub", [INPUT_RETURN, "mu"], ["eps"], name="residual"),
        helper.make_node("Mul", ["eps", "eps"], ["eps_sq"], name="residual_squared"),
        helper.make_node("Less", ["eps", "zero"], ["is_negative"], name="gjr_indicator"),
        helper.make_node("Add", ["alpha", "gamma"], ["alpha_plus_gamma"], name="asymmetric_alpha"),
        helper.make_node(
            "Where", ["is_negative", "alpha_plus_gamma", "alpha"], ["arch_coef"], name="arch_coef"
        ),
        helper.make_node("Mul", ["arch_coef", "eps_sq"], ["arch_term"], name="arch_term"),
        helper.make_node(
            "Add", ["omega", "arch_term"], ["omega_plus_arch"], name="omega_plus_arch"
        ),
        helper.make_node("Mul", ["beta", INPUT_VARIANCE], ["garch_term"], name="garch_term"),
        helper.make_node("Add", ["omega_plus_arch", "garch_term"], [OUTPUT_VARIANCE], name="next"),
    ]


def build_recursion_model(
    name: str,
    nodes: list[onnx.NodeProto],
    initializers: list[onnx.TensorProto],
    *,
    extra_inputs: list[onnx.ValueInfoProto],
    doc: str,
    props: dict[str, str],
) -> onnx.ModelProto:
    """A checked model around recursion nodes: [N,1] float64 return/variance in, next variance out."""
    column: list[str | int | None] = ["N", 1]
    graph = helper.make_graph(
        nodes,
        name,
        inputs=[
            *extra_inputs,
            helper.make_tensor_value_info(INPUT_RETURN, TensorProto.DOUBLE, column),
            helper.make_tensor_value_info(INPUT_VARIANCE, TensorProto.DOUBLE, column),
        ],
        outputs=[helper.make_tensor_value_info(OUTPUT_VARIANCE, TensorProto.DOUBLE, column)],
        initializer=initializers,
    )
    opset = helper.make_opsetid("", OPSET)
    model = helper.make_model(
        graph,
        opset_imports=[opset],
        ir_version=helper.find_min_ir_version_for([opset]),
        producer_name="sextant",
        doc_string=doc,
    )
    helper.set_model_props(model, props)
    onnx.checker.check_model(model, full_check=True)
    return model


@dataclass(frozen=True, slots=True)
class ParityReport:
    """ONNX versus native forecasts on held-out rows; ``message`` says what was compared."""

    max_rel_err: float
    n: int
    passed: bool
    tolerance: float
    message: str

    def raise_for_failure(self) -> None:
        """Raise ModelUnavailableError with the report's message if parity failed."""
        if not self.passed:
            raise ModelUnavailableError(self.message)
