"""Probability calibration of direction models: raw P(up) -> calibrated P(up), in numpy and in ONNX.

The fuser and Kelly sizing read P(up) as a probability, so it must be calibrated. Protocol: the
model is fitted on a fold's training rows minus a calibration tail (the latest ``fraction`` of
training decision times, fit rows purged of labels reaching into the tail, as in ``models.cv``),
the calibrator is fitted on the model's predictions for the tail, and the fold's test rows are
scored with both; a calibrator is never fitted on rows it scores.

Isotonic calibration (the default) is stored as a monotone piecewise-linear map (knots in
float64, evaluated with ``np.interp``, constant beyond the end knots), Platt calibration as
``sigmoid(coef * logit(p) + intercept)`` with ``coef >= 0``, so both maps are non-decreasing and
never reverse a model's ranking. Outputs are clipped into ``[eps, 1 - eps]`` so log loss stays
finite. In ONNX the map is appended to the model's graph and computed in float64 (exact knots,
no float32 rounding error accumulated over segments); only the output is cast back to the
model's output type, under the same output name, so serving reads ``p_up`` as before.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from models.cv import decision_and_label_end, purged_tail
from models.protocol import DirectionDataset, DirectionModel, IndexArray
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError

__all__ = [
    "CALIBRATION_EPS",
    "CALIBRATION_FRACTION",
    "CALIBRATION_PROP",
    "MIN_CALIBRATION_ROWS",
    "CalibratedModel",
    "CalibrationMethod",
    "Calibrator",
    "calibrator_graph",
    "fit_calibrated",
    "fit_calibrator",
    "split_calibration_tail",
    "with_calibration",
]

CalibrationMethod = Literal["isotonic", "platt"]
CALIBRATION_EPS = 1e-4  # calibrated outputs lie in [eps, 1 - eps]
CALIBRATION_FRACTION = 0.2  # latest share of training timestamps held out to calibrate
MIN_CALIBRATION_ROWS = 200
CALIBRATION_PROP = "calibration"  # ONNX metadata key holding Calibrator.to_dict() as JSON
LOGIT_INPUT_CLIP = 1e-7  # Platt: raw p clipped into [c, 1 - c] before logit (float32 p can be 1)
_FORMAT_VERSION = 1
_MIN_OPSET = 13  # Cast, Sub, Max, Min, MatMul, Add, Mul, Log, Sigmoid: all with broadcasting
_NODE_PREFIX = "calibration/"
_UNCALIBRATED_SUFFIX = "_uncalibrated"

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Calibrator:
    """A fitted non-decreasing map raw P(up) -> calibrated P(up); small, exact and JSON-portable.

    ``isotonic``: ``knots_x`` strictly increasing, ``knots_y`` non-decreasing, linear between
    knots and flat beyond the end knots. ``platt``: ``sigmoid(coef * logit(p) + intercept)``.
    """

    method: CalibrationMethod
    n: int  # calibration rows the map was fitted on
    base_rate: float  # share of up labels among them
    knots_x: tuple[float, ...] = ()
    knots_y: tuple[float, ...] = ()
    coef: float = 0.0
    intercept: float = 0.0
    eps: float = CALIBRATION_EPS

    def __post_init__(self) -> None:
        if self.method not in get_args(CalibrationMethod):
            raise ConfigError(
                f"calibration method must be one of {get_args(CalibrationMethod)}, got {self.method!r}"
            )
        if not 0.0 < self.eps < 0.5:
            raise ConfigError(f"calibration eps must be in (0, 0.5), got {self.eps}")
        if self.n < 1 or not 0.0 <= self.base_rate <= 1.0:
            raise DataValidationError(
                f"calibrator fitted on n={self.n} rows with base_rate={self.base_rate}", field="n"
            )
        if self.method == "isotonic":
            _check_knots(self.knots_x, self.knots_y)
        elif self.knots_x or self.knots_y:
            raise DataValidationError("a platt calibrator has no knots", field="knots_x")
        if not (math.isfinite(self.coef) and self.coef >= 0 and math.isfinite(self.intercept)):
            raise DataValidationError(
                f"calibrator coef must be finite and >= 0 and intercept finite, got "
                f"coef={self.coef}, intercept={self.intercept}",
                field="coef",
            )

    def apply(self, p_raw: npt.ArrayLike) -> FloatArray:
        """Calibrated P(up) for raw P(up) values (any shape), clipped into [eps, 1 - eps]."""
        p = _probabilities(p_raw, "p_raw")
        if self.method == "isotonic":
            out = np.interp(p, np.asarray(self.knots_x), np.asarray(self.knots_y))
        else:
            out = _sigmoid(self.coef * _logit(p) + self.intercept)
        clipped: FloatArray = np.clip(out, self.eps, 1.0 - self.eps)
        return clipped

    @property
    def max_slope(self) -> float:
        """Largest d(calibrated)/d(raw): how much a raw ONNX-vs-native difference can grow.

        Exact for isotonic (steepest segment); for Platt the maximum over a dense logit grid.
        """
        if self.method == "isotonic":
            x, y = np.asarray(self.knots_x), np.asarray(self.knots_y)
            return float(np.max(np.diff(y) / np.diff(x))) if len(x) > 1 else 0.0
        bound = math.log((1.0 - LOGIT_INPUT_CLIP) / LOGIT_INPUT_CLIP)
        logit = np.linspace(-bound, bound, 100_001)
        p, q = _sigmoid(logit), _sigmoid(self.coef * logit + self.intercept)
        return float(np.max(self.coef * q * (1.0 - q) / (p * (1.0 - p))))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (floats round-trip exactly through ``json``), for MLflow and ONNX metadata."""
        out: dict[str, Any] = {
            "format_version": _FORMAT_VERSION,
            "method": self.method,
            "n": self.n,
            "base_rate": self.base_rate,
            "eps": self.eps,
        }
        if self.method == "isotonic":
            out.update(knots_x=list(self.knots_x), knots_y=list(self.knots_y))
        else:
            out.update(coef=self.coef, intercept=self.intercept)
        return out

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> Calibrator:
        """The calibrator ``to_dict`` wrote; unknown or missing keys are a DataValidationError."""
        common = {"format_version", "method", "n", "base_rate", "eps"}
        specific = {"isotonic": {"knots_x", "knots_y"}, "platt": {"coef", "intercept"}}
        method = payload.get("method")
        if method not in specific:
            raise DataValidationError(f"unknown calibration method {method!r}", field="method")
        expected = common | specific[method]
        if set(payload) != expected:
            raise DataValidationError(
                f"calibrator dict: missing keys {sorted(expected - set(payload))}, unexpected "
                f"keys {sorted(set(payload) - expected)}",
                field="calibration",
            )
        if payload["format_version"] != _FORMAT_VERSION:
            raise DataValidationError(
                f"calibrator format_version {payload['format_version']!r} is not {_FORMAT_VERSION}",
                field="format_version",
            )
        return cls(
            method=method,
            n=int(payload["n"]),
            base_rate=float(payload["base_rate"]),
            knots_x=tuple(float(v) for v in payload.get("knots_x", ())),
            knots_y=tuple(float(v) for v in payload.get("knots_y", ())),
            coef=float(payload.get("coef", 0.0)),
            intercept=float(payload.get("intercept", 0.0)),
            eps=float(payload["eps"]),
        )

    def params(self) -> dict[str, Any]:
        """Scalars worth logging next to the model's params (no arrays)."""
        out: dict[str, Any] = {
            "calibration_method": self.method,
            "calibration_rows": self.n,
            "calibration_base_rate": self.base_rate,
        }
        if self.method == "isotonic":
            out["calibration_knots"] = len(self.knots_x)
        else:
            out.update(calibration_coef=self.coef, calibration_intercept=self.intercept)
        return out


def fit_calibrator(
    p_raw: npt.ArrayLike,
    y: npt.ArrayLike,
    method: CalibrationMethod = "isotonic",
    *,
    min_rows: int = MIN_CALIBRATION_ROWS,
    eps: float = CALIBRATION_EPS,
) -> Calibrator:
    """Fit the map from a model's raw P(up) on calibration rows to their 0/1 labels.

    DataValidationError for fewer than ``min_rows`` rows or a single label class (the caller
    decides whether to go uncalibrated); constant raw predictions give a flat map at the base rate.
    """
    p = _probabilities(p_raw, "p_raw").reshape(-1)
    labels = np.asarray(y, dtype=np.float64).reshape(-1)
    if len(labels) != len(p):
        raise DataValidationError(f"y has {len(labels)} values but p_raw has {len(p)}", field="y")
    if not np.all((labels == 0) | (labels == 1)):
        raise DataValidationError("calibration labels must be 0 (down) or 1 (up)", field="y")
    if len(p) < min_rows:
        raise DataValidationError(
            f"{len(p)} calibration rows, at least {min_rows} needed (min_rows)", field="p_raw"
        )
    classes = np.unique(labels)
    if len(classes) < 2:
        raise DataValidationError(
            f"calibration labels have a single class ({int(classes[0])}) over {len(p)} rows",
            field="y",
        )
    base_rate = float(labels.mean())
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        isotonic = IsotonicRegression(
            y_min=eps, y_max=1.0 - eps, increasing=True, out_of_bounds="clip"
        ).fit(p, labels)
        return Calibrator(
            method="isotonic",
            n=len(p),
            base_rate=base_rate,
            knots_x=tuple(float(v) for v in isotonic.X_thresholds_),
            knots_y=tuple(float(v) for v in isotonic.y_thresholds_),
            eps=eps,
        )
    if method == "platt":
        coef, intercept = _fit_platt(_logit(p), labels, base_rate)
        return Calibrator(
            method="platt", n=len(p), base_rate=base_rate, coef=coef, intercept=intercept, eps=eps
        )
    raise ConfigError(
        f"calibration method must be one of {get_args(CalibrationMethod)}, got {method!r}"
    )


def split_calibration_tail(
    train_idx: npt.ArrayLike,
    decision_ts: pd.Series,
    label_end_ts: pd.Series,
    fraction: float = CALIBRATION_FRACTION,
    *,
    min_rows: int = MIN_CALIBRATION_ROWS,
) -> tuple[IndexArray, IndexArray]:
    """(fit rows, calibration rows) of a fold's training rows; both keep ``train_idx``'s order.

    Calibration rows: decision time in the latest ``fraction`` of the distinct training decision
    times (all symbols of a time on the same side). Fit rows: decided before the tail and with
    ``label_end_ts`` strictly before its first decision time (purge). ``decision_ts`` and
    ``label_end_ts`` are whole-dataset columns that ``train_idx`` indexes by position.
    """
    if not (0.0 < fraction < 0.5):
        raise ConfigError(f"calibration fraction must be in (0, 0.5), got {fraction}")
    rows = np.asarray(train_idx)
    if rows.ndim != 1 or not np.issubdtype(rows.dtype, np.integer) or rows.size == 0:
        raise DataValidationError(
            f"train_idx must be a non-empty 1-D integer array, got dtype {rows.dtype} and shape "
            f"{rows.shape}",
            field="train_idx",
        )
    decision_all, label_end_all = decision_and_label_end(decision_ts, label_end_ts)
    if rows.min() < 0 or rows.max() >= len(decision_all):
        raise DataValidationError(
            f"train_idx out of range [0, {len(decision_all)}): min {rows.min()}, max {rows.max()}",
            field="train_idx",
        )
    rows = rows.astype(np.intp)
    decision, label_end = decision_all[rows], label_end_all[rows]
    fit_idx, cal_idx = purged_tail(rows, decision, label_end, fraction, "calibration")
    if len(cal_idx) < min_rows:
        tail_times = decision_all[cal_idx]
        raise DataValidationError(
            f"the calibration tail starting {pd.Timestamp(int(tail_times.min()), tz='UTC')} holds "
            f"{len(cal_idx)} rows ({len(np.unique(tail_times))} timestamps), at least {min_rows} "
            "needed (min_rows)",
            field="train_idx",
        )
    return fit_idx, cal_idx


def calibrator_graph(
    calibrator: Calibrator,
    *,
    input_name: str = "p_up" + _UNCALIBRATED_SUFFIX,
    output_name: str = "p_up",
    elem_type: int = TensorProto.FLOAT,
    opset: int = _MIN_OPSET,
) -> onnx.ModelProto:
    """The calibrator alone as an ONNX model ``[N, 1] -> [N, 1]`` of ``elem_type`` (float64 inside)."""
    if opset < _MIN_OPSET:
        raise ConfigError(f"calibrator graphs need opset >= {_MIN_OPSET}, got {opset}")
    nodes, initializers = _calibration_nodes(calibrator, input_name, output_name, elem_type)
    graph = helper.make_graph(
        nodes,
        "calibrator",
        [helper.make_tensor_value_info(input_name, elem_type, ["N", 1])],
        [helper.make_tensor_value_info(output_name, elem_type, ["N", 1])],
        initializer=initializers,
    )
    opsets = [helper.make_opsetid("", opset)]
    model = helper.make_model(
        graph, opset_imports=opsets, ir_version=helper.find_min_ir_version_for(opsets)
    )
    _set_calibration_props(model, calibrator)
    onnx.checker.check_model(model, full_check=True)
    return model


def with_calibration(
    model_proto: onnx.ModelProto, calibrator: Calibrator, *, output_name: str = "p_up"
) -> onnx.ModelProto:
    """A copy of a direction graph whose ``output_name`` (same name, type, shape) is calibrated.

    The model's own output is renamed ``<output_name>_uncalibrated`` and fed to the calibrator's
    nodes; the calibrator's JSON goes into the metadata under ``calibration``.
    """
    model = onnx.ModelProto()
    model.CopyFrom(model_proto)
    graph = model.graph
    outputs = [o.name for o in graph.output]
    if output_name not in outputs:
        raise ModelUnavailableError(
            f"calibration: the graph has no output {output_name!r} to calibrate (outputs {outputs})"
        )
    if any(p.key == CALIBRATION_PROP for p in model.metadata_props):
        raise ModelUnavailableError(
            f"calibration: graph {graph.name!r} is already calibrated (metadata {CALIBRATION_PROP!r})"
        )
    tensor = graph.output[outputs.index(output_name)].type.tensor_type
    if tensor.elem_type not in (TensorProto.FLOAT, TensorProto.DOUBLE):
        raise ModelUnavailableError(
            f"calibration: output {output_name!r} has element type "
            f"{TensorProto.DataType.Name(tensor.elem_type)}, expected FLOAT or DOUBLE"
        )
    dims = [d.dim_param or d.dim_value for d in tensor.shape.dim]
    if tensor.HasField("shape") and (len(dims) != 2 or dims[1] not in (0, 1)):
        raise ModelUnavailableError(
            f"calibration: output {output_name!r} has shape {dims}, expected [N, 1]"
        )
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)
    if opset is None:
        model.opset_import.append(helper.make_opsetid("", _MIN_OPSET))
    elif opset < _MIN_OPSET:
        raise ModelUnavailableError(
            f"calibration: graph imports default-domain opset {opset}, at least {_MIN_OPSET} needed"
        )
    raw_name = output_name + _UNCALIBRATED_SUFFIX
    taken = _tensor_names(graph)
    clashes = sorted(n for n in taken if n == raw_name or n.startswith(_NODE_PREFIX))
    if clashes:
        raise ModelUnavailableError(
            f"calibration: graph already has tensors named {clashes[:5]}; cannot add the calibrator"
        )
    for node in graph.node:
        node.input[:] = [raw_name if n == output_name else n for n in node.input]
        node.output[:] = [raw_name if n == output_name else n for n in node.output]
    for info in graph.value_info:
        if info.name == output_name:
            info.name = raw_name
    nodes, initializers = _calibration_nodes(calibrator, raw_name, output_name, tensor.elem_type)
    graph.node.extend(nodes)
    graph.initializer.extend(initializers)
    _set_calibration_props(model, calibrator)
    onnx.checker.check_model(model, full_check=True)
    return model


class CalibratedModel:
    """A fitted direction model followed by its calibrator (``DirectionModel`` protocol, fit aside).

    ``predict_proba`` and the ONNX graph both output the calibrated P(up), so
    ``models.onnx_parity.check_direction_parity`` checks the calibrated artifact unchanged.
    """

    def __init__(self, model: DirectionModel, calibrator: Calibrator) -> None:
        self.model = model
        self.calibrator = calibrator
        self.family: str = model.family

    def fit(self, data: DirectionDataset, train_idx: IndexArray) -> None:
        """Not supported: fit the base model and the calibrator apart (``fit_calibrated``)."""
        raise ConfigError(
            f"{self.family}: a calibrated model is not refitted in place; call fit_calibrated() "
            "with the base model so the calibrator sees rows the model was not fitted on"
        )

    def predict_proba(self, data: DirectionDataset, idx: IndexArray) -> FloatArray:
        """Calibrated P(up) for rows ``idx``."""
        return self.calibrator.apply(self.model.predict_proba(data, idx))

    def to_onnx(self) -> onnx.ModelProto:
        """The base model's graph with the calibrator appended; output ``p_up`` [N, 1] as before."""
        return with_calibration(self.model.to_onnx(), self.calibrator)

    def onnx_inputs(
        self, data: DirectionDataset, idx: IndexArray
    ) -> dict[str, npt.NDArray[np.float32]]:
        """The base model's graph inputs (the calibrator adds none)."""
        return self.model.onnx_inputs(data, idx)

    def params(self) -> dict[str, Any]:
        """The base model's params and the calibrator's (``calibration_*``)."""
        return {**self.model.params(), **self.calibrator.params()}


def fit_calibrated(
    model: DirectionModel,
    data: DirectionDataset,
    train_idx: IndexArray,
    *,
    method: CalibrationMethod = "isotonic",
    fraction: float = CALIBRATION_FRACTION,
    min_rows: int = MIN_CALIBRATION_ROWS,
) -> tuple[CalibratedModel, IndexArray]:
    """Fit ``model`` on ``train_idx`` minus its purged calibration tail, the calibrator on the tail.

    Returns the calibrated model and the tail's rows (rows the base model was not fitted on).
    """
    fit_idx, cal_idx = split_calibration_tail(
        train_idx, data.decision_ts, data.label_end_ts, fraction, min_rows=min_rows
    )
    model.fit(data, fit_idx)
    calibrator = fit_calibrator(
        model.predict_proba(data, cal_idx), data.y[cal_idx], method, min_rows=min_rows
    )
    return CalibratedModel(model, calibrator), cal_idx


# --- internals ----------------------------------------------------------------------------------


def _probabilities(values: npt.ArrayLike, name: str) -> FloatArray:
    """Finite values in [0, 1] as float64, or a DataValidationError naming the first bad one."""
    p = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~((p >= 0.0) & (p <= 1.0)).reshape(-1))  # NaN fails both comparisons
    if bad.size:
        raise DataValidationError(
            f"{name} has {bad.size} values outside [0, 1] or NaN, first {p.reshape(-1)[bad[0]]!r} "
            f"at position {int(bad[0])}",
            field=name,
        )
    return p


def _logit(p: FloatArray) -> FloatArray:
    """log(p / (1 - p)) of p clipped into [c, 1 - c]; the ONNX graph computes the same expression."""
    q = np.clip(p, LOGIT_INPUT_CLIP, 1.0 - LOGIT_INPUT_CLIP)
    out: FloatArray = np.log(q) - np.log(1.0 - q)
    return out


def _sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))  # no overflow warning for large |z|
    return out


def _fit_platt(logit_p: FloatArray, labels: FloatArray, base_rate: float) -> tuple[float, float]:
    """(coef >= 0, intercept) minimising log loss of sigmoid(coef * logit_p + intercept)."""
    base_logit = math.log(base_rate / (1.0 - base_rate))
    if np.ptp(logit_p) == 0:  # constant predictions carry no ranking: flat at the base rate
        return 0.0, base_logit
    from scipy.optimize import minimize

    # centre the feature so slope and intercept are nearly uncorrelated (faster, stabler L-BFGS-B)
    centre = float(logit_p.mean())
    x = logit_p - centre

    def loss_and_grad(theta: FloatArray) -> tuple[float, FloatArray]:
        z = theta[0] * x + theta[1]
        loss = float(np.mean(np.logaddexp(0.0, z) - labels * z))
        residual = _sigmoid(z) - labels
        return loss, np.array([np.mean(residual * x), np.mean(residual)])

    # the slope is bounded at 0 so the map stays non-decreasing, like isotonic's increasing=True
    result = minimize(
        loss_and_grad,
        np.array([1.0, base_logit]),
        jac=True,
        method="L-BFGS-B",
        bounds=[(0.0, None), (None, None)],
        options={"gtol": 1e-10, "ftol": 1e-15, "maxiter": 1000},
    )
    coef, shifted = (float(v) for v in result.x)
    if not (math.isfinite(coef) and math.isfinite(shifted)):
        raise DataValidationError(
            f"platt calibration did not converge: {result.message}", field="p_raw"
        )
    return coef, shifted - coef * centre


def _check_knots(knots_x: tuple[float, ...], knots_y: tuple[float, ...]) -> None:
    x, y = np.asarray(knots_x, dtype=np.float64), np.asarray(knots_y, dtype=np.float64)
    if len(x) == 0 or len(x) != len(y):
        raise DataValidationError(
            f"isotonic calibrator needs as many knots_y as knots_x (at least 1), got "
            f"{len(x)} and {len(y)}",
            field="knots_x",
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise DataValidationError("isotonic knots must be finite", field="knots_x")
    if np.any(np.diff(x) <= 0) or np.any(np.diff(y) < 0):
        raise DataValidationError(
            "isotonic knots_x must be strictly increasing and knots_y non-decreasing",
            field="knots_x",
        )
    if y[0] < 0 or y[-1] > 1:
        raise DataValidationError(
            f"isotonic knots_y must lie in [0, 1], got [{y[0]}, {y[-1]}]", field="knots_y"
        )


def _calibration_nodes(
    calibrator: Calibrator, input_name: str, output_name: str, elem_type: int
) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes and initializers computing the calibrated ``output_name`` [N, 1] from ``input_name``.

    Isotonic, gather-free: y = y0 + sum_i slope_i * min(max(p - x_i, 0), x_{i+1} - x_i), a MatMul
    of the clipped segment lengths with the slopes; p below the first knot gives y0, above the
    last y_last (as ``np.interp``). Platt: Log, Sub, Mul, Add, Sigmoid.
    """
    initializers: list[onnx.TensorProto] = []
    nodes: list[onnx.NodeProto] = []

    def const(name: str, value: npt.ArrayLike) -> str:
        full = _NODE_PREFIX + name
        initializers.append(numpy_helper.from_array(np.asarray(value, dtype=np.float64), full))
        return full

    def op(op_type: str, inputs: list[str], name: str, **attrs: Any) -> str:
        out = _NODE_PREFIX + name
        nodes.append(helper.make_node(op_type, inputs, [out], name=out, **attrs))
        return out

    p = op("Cast", [input_name], "p_raw_f64", to=TensorProto.DOUBLE)
    if calibrator.method == "isotonic":
        x, y = np.asarray(calibrator.knots_x), np.asarray(calibrator.knots_y)
        if len(x) == 1:
            calibrated = op(
                "Add", [op("Mul", [p, const("zero", 0.0)], "zeros"), const("y0", y[0])], "map"
            )
        else:
            widths = np.diff(x)
            slopes = np.diff(y) / widths
            offset = op("Sub", [p, const("knots_x", x[:-1])], "offset")  # [N, K-1]
            above = op("Max", [offset, const("zero", 0.0)], "above")
            segment = op("Min", [above, const("widths", widths)], "segment")
            rise = op("MatMul", [segment, const("slopes", slopes.reshape(-1, 1))], "rise")
            calibrated = op("Add", [rise, const("y0", y[0])], "map")
    else:
        low = op("Max", [p, const("logit_low", LOGIT_INPUT_CLIP)], "p_low")
        q = op("Min", [low, const("logit_high", 1.0 - LOGIT_INPUT_CLIP)], "p_clipped")
        complement = op("Sub", [const("one", 1.0), q], "complement")
        logit = op("Sub", [op("Log", [q], "log_p"), op("Log", [complement], "log_q")], "logit")
        scaled = op("Mul", [logit, const("coef", calibrator.coef)], "scaled")
        shifted = op("Add", [scaled, const("intercept", calibrator.intercept)], "shifted")
        calibrated = op("Sigmoid", [shifted], "map")
    floor = op("Max", [calibrated, const("eps_low", calibrator.eps)], "floored")
    clipped = op("Min", [floor, const("eps_high", 1.0 - calibrator.eps)], "clipped")
    nodes.append(
        helper.make_node(
            "Cast", [clipped], [output_name], name=_NODE_PREFIX + "output", to=elem_type
        )
    )
    return nodes, initializers


def _set_calibration_props(model: onnx.ModelProto, calibrator: Calibrator) -> None:
    """Add the calibrator's JSON to the model metadata, keeping the props already there."""
    entry = model.metadata_props.add()
    entry.key = CALIBRATION_PROP
    entry.value = json.dumps(calibrator.to_dict())


def _tensor_names(graph: onnx.GraphProto) -> set[str]:
    names = {t.name for t in graph.initializer} | {i.name for i in graph.input}
    names |= {v.name for v in graph.value_info}
    for node in graph.node:
        names.update(node.output)
        names.add(node.name)
    return names
