"""ONNX checks shared by the direction families: parity with ``predict_proba`` and serving latency.

Parity runs the exported graph in onnxruntime on the CPU (the serving runtime) with the model's
own ``onnx_inputs`` and compares its ``p_up`` with the model's native ``predict_proba``, in
absolute terms: probabilities live in [0, 1], and a relative error would blow up near 0.
Latency times single-row ``InferenceSession.run`` calls, one intra-op thread, after a warm-up.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import onnx

from models.protocol import DirectionDataset, DirectionModel, IndexArray
from sextant.errors import DataValidationError, ModelUnavailableError

if TYPE_CHECKING:
    import onnxruntime

__all__ = [
    "DIRECTION_PARITY_TOLERANCE",
    "OUTPUT_P_UP",
    "DirectionParityReport",
    "check_direction_parity",
    "cpu_session",
    "onnx_latency",
    "run_direction_onnx",
]

DIRECTION_PARITY_TOLERANCE = 1e-5
OUTPUT_P_UP = "p_up"
_WARMUP_RUNS = 50


@dataclass(frozen=True, slots=True)
class DirectionParityReport:
    """ONNX versus native P(up) on given rows; ``message`` says what was compared and the worst row."""

    max_abs_err: float
    n: int
    n_with_nan: int  # compared rows whose ONNX input holds a NaN (missing feature or padding)
    passed: bool
    tolerance: float
    message: str

    def raise_for_failure(self) -> None:
        """Raise ModelUnavailableError with the report's message if parity failed."""
        if not self.passed:
            raise ModelUnavailableError(self.message)


def cpu_session(
    model_proto: onnx.ModelProto, *, threads: int | None = None
) -> onnxruntime.InferenceSession:
    """An onnxruntime CPU session for the graph; ``threads`` fixes intra-op threads."""
    # onnxruntime writes a device id under ~/.cache/Microsoft when imported: only import on use
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model_proto.SerializeToString(), sess_options=options, providers=["CPUExecutionProvider"]
    )


def run_direction_onnx(
    model_proto: onnx.ModelProto, inputs: dict[str, npt.NDArray[np.float32]]
) -> npt.NDArray[np.float64]:
    """P(up) from the graph's ``p_up`` output for the given inputs, as a 1-D float64 array."""
    (output,) = cpu_session(model_proto).run([OUTPUT_P_UP], inputs)
    result: npt.NDArray[np.float64] = np.asarray(output, dtype=np.float64).reshape(-1)
    return result


def check_direction_parity(
    model: DirectionModel,
    data: DirectionDataset,
    idx: IndexArray,
    tolerance: float = DIRECTION_PARITY_TOLERANCE,
    *,
    model_proto: onnx.ModelProto | None = None,
) -> DirectionParityReport:
    """Compare onnxruntime's ``p_up`` on ``model.onnx_inputs`` with ``model.predict_proba`` row by row.

    ``model_proto`` defaults to ``model.to_onnx()``; pass it when already exported.
    """
    rows = np.asarray(idx, dtype=np.intp)
    family = model.family
    if rows.size == 0:
        raise DataValidationError(f"{family}: the parity sample is empty", field="idx")
    proto = model_proto if model_proto is not None else model.to_onnx()
    native = model.predict_proba(data, rows)
    inputs = model.onnx_inputs(data, rows)
    with_nan = np.zeros(len(rows), dtype=bool)
    for array in inputs.values():
        with_nan |= np.isnan(array.reshape(len(rows), -1)).any(axis=1)

    def report(max_err: float, passed: bool, message: str) -> DirectionParityReport:
        return DirectionParityReport(
            max_abs_err=max_err,
            n=len(rows),
            n_with_nan=int(with_nan.sum()),
            passed=passed,
            tolerance=tolerance,
            message=message,
        )

    try:
        onnx_out = run_direction_onnx(proto, inputs)
    except Exception as exc:  # any runtime failure means the artifact cannot be served
        return report(
            math.inf,
            False,
            f"ONNX {family} parity failed: onnxruntime could not run the graph: {exc}",
        )
    if onnx_out.shape != native.shape:
        return report(
            math.inf,
            False,
            f"ONNX {family} parity failed: graph returned {onnx_out.size} values for {native.size} rows",
        )
    err = np.abs(onnx_out - native)
    err = np.where(np.isfinite(err), err, math.inf)
    worst = int(np.argmax(err))
    max_err = float(err[worst])
    passed = max_err <= tolerance
    where = _describe_row(data, int(rows[worst]))
    if passed:
        message = (
            f"ONNX {family} parity passed: max absolute error {max_err:.3g} over {len(rows)} rows "
            f"({int(with_nan.sum())} with NaN inputs; tolerance {tolerance:.0e})"
        )
    else:
        message = (
            f"ONNX {family} parity failed: max absolute error {max_err:.3g} exceeds tolerance "
            f"{tolerance:.0e} over {len(rows)} rows; worst {where}: onnx={onnx_out[worst]!r}, "
            f"native={native[worst]!r}, NaN in input: {bool(with_nan[worst])}"
        )
    return report(max_err, passed, message)


def onnx_latency(
    model_proto: onnx.ModelProto, inputs_one_row: dict[str, npt.NDArray[Any]], n: int = 1000
) -> tuple[float, float]:
    """(p50, p99) in milliseconds of ``n`` single-row runs on one CPU thread, after a warm-up."""
    if n < 1:
        raise DataValidationError(f"latency needs at least one run, got n={n}", field="n")
    session = cpu_session(model_proto, threads=1)
    feed = {name: np.ascontiguousarray(array) for name, array in inputs_one_row.items()}
    for _ in range(_WARMUP_RUNS):
        session.run(None, feed)
    elapsed = np.empty(n, dtype=np.float64)
    for i in range(n):
        start = time.perf_counter_ns()
        session.run(None, feed)
        elapsed[i] = time.perf_counter_ns() - start
    p50, p99 = np.percentile(elapsed, [50, 99]) / 1e6
    return float(p50), float(p99)


def _describe_row(data: DirectionDataset, row: int) -> str:
    frame = data.frame
    return f"row {row} ({frame['symbol'].iloc[row]} at {frame['decision_ts'].iloc[row]})"
