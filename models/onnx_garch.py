"""The GARCH one-step variance recursion as a small ONNX graph, and its parity check.

Serving keeps each symbol's latest return and conditional variance as features and feeds them to
this graph; nothing of ``arch`` is needed at decision time. The graph computes, per row,

    eps = last_return - mu
    next_variance = omega + Where(eps < 0, alpha + gamma, alpha) * (eps * eps) + beta * last_variance

in float64 and in the same operation order as ``GarchParams.next_variance``, so the two agree to
rounding. Opset 17 keeps the graph loadable by any onnxruntime since 1.13 (the installed 1.31
supports far newer); every operator used here is unchanged since opset 13 or earlier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from models.garch import GarchFit, filter_variance, standardized_quantile
from sextant.errors import DataValidationError, ModelUnavailableError

__all__ = [
    "INPUT_RETURN",
    "INPUT_VARIANCE",
    "OPSET",
    "OUTPUT_VARIANCE",
    "PARITY_TOLERANCE",
    "ParityReport",
    "build_recursion_model",
    "check_parity",
    "garch_onnx_model",
    "recursion_nodes",
    "run_garch_onnx",
]

OPSET = 17
INPUT_RETURN = "last_return"
INPUT_VARIANCE = "last_variance"
OUTPUT_VARIANCE = "next_variance"
PARITY_TOLERANCE = 1e-9

FloatArray = npt.NDArray[np.float64]


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


def garch_onnx_model(fit: GarchFit) -> onnx.ModelProto:
    """The fitted recursion as a checked ONNX model: [N,1] float64 inputs, [N,1] float64 output."""
    p = fit.params
    constants = {"mu": p.mu, "omega": p.omega, "alpha": p.alpha, "gamma": p.gamma, "beta": p.beta}
    initializers = [
        numpy_helper.from_array(np.array(value, dtype=np.float64), name=name)
        for name, value in constants.items()
    ]
    initializers.append(numpy_helper.from_array(np.array(0.0, dtype=np.float64), name="zero"))
    # Serving turns next_variance into a VaR with mu and the unit-variance innovation quantile.
    props = {
        "family": "garch",
        "dist": fit.config.dist,
        "gjr": str(fit.config.gjr).lower(),
        "nu": repr(p.nu),
        "mu": repr(p.mu),
        "var99_quantile": repr(standardized_quantile(p, 0.99)),
    }
    return build_recursion_model(
        "garch_one_step",
        recursion_nodes(),
        initializers,
        extra_inputs=[],
        doc="GARCH(1,1) one-step conditional variance in unscaled return units",
        props=props,
    )


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


def run_garch_onnx(
    model: onnx.ModelProto, last_return: npt.ArrayLike, last_variance: npt.ArrayLike
) -> FloatArray:
    """Evaluate the graph with onnxruntime on the CPU; returns a 1-D array of next variances."""
    # onnxruntime writes a device id under ~/.cache/Microsoft when imported: only import on use
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {
        INPUT_RETURN: np.asarray(last_return, dtype=np.float64).reshape(-1, 1),
        INPUT_VARIANCE: np.asarray(last_variance, dtype=np.float64).reshape(-1, 1),
    }
    (output,) = session.run([OUTPUT_VARIANCE], feed)
    result: FloatArray = np.asarray(output, dtype=np.float64).reshape(-1)
    return result


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


def check_parity(
    model_proto: onnx.ModelProto,
    fit: GarchFit,
    returns_sample: pd.Series | npt.ArrayLike,
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """Compare the ONNX graph with ``fit.forecast_next`` row by row on held-out returns.

    The variances fed to both come from continuing the fitted recursion over the sample from the
    fit's final state, i.e. exactly the (return, variance) pairs serving would see.
    """
    returns = (
        returns_sample.to_numpy(dtype=np.float64)
        if isinstance(returns_sample, pd.Series)
        else np.asarray(returns_sample, dtype=np.float64).reshape(-1)
    )
    if returns.size == 0:
        raise DataValidationError("the parity sample is empty", field="returns_sample")
    variances = filter_variance(fit.params, returns, state=fit.final_state)
    native = np.array([fit.forecast_next(r, v) for r, v in zip(returns, variances, strict=True)])
    try:
        onnx_out = run_garch_onnx(model_proto, returns, variances)
    except Exception as exc:  # any runtime failure means the artifact cannot be served
        return ParityReport(
            max_rel_err=math.inf,
            n=int(returns.size),
            passed=False,
            tolerance=tolerance,
            message=f"ONNX GARCH parity failed: onnxruntime could not run the graph: {exc}",
        )
    if onnx_out.shape != native.shape:
        return ParityReport(
            max_rel_err=math.inf,
            n=int(returns.size),
            passed=False,
            tolerance=tolerance,
            message=(
                f"ONNX GARCH parity failed: graph returned {onnx_out.size} values "
                f"for {native.size} rows"
            ),
        )
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(onnx_out - native) / np.abs(native)
    rel = np.where(np.isfinite(rel), rel, math.inf)
    worst = int(np.argmax(rel))
    max_rel = float(rel[worst])
    passed = max_rel <= tolerance
    if passed:
        message = (
            f"ONNX GARCH parity passed: max relative error {max_rel:.3g} over {returns.size} "
            f"rows (tolerance {tolerance:.0e})"
        )
    else:
        message = (
            f"ONNX GARCH parity failed: max relative error {max_rel:.3g} exceeds tolerance "
            f"{tolerance:.0e} over {returns.size} rows; worst row {worst}: last_return="
            f"{returns[worst]!r}, last_variance={variances[worst]!r}, onnx={onnx_out[worst]!r}, "
            f"native={native[worst]!r}"
        )
    return ParityReport(
        max_rel_err=max_rel,
        n=int(returns.size),
        passed=passed,
        tolerance=tolerance,
        message=message,
    )
