"""The drift reference of a direction model: what its inputs, outputs and calibration looked like.

Recorded at training (`build_drift_reference`), logged as ``drift_reference.json`` in the model's
MLflow run (`log_drift_reference`) and named by the version's ``drift_reference`` tag, so the
monitor (`agents.monitoring.drift`) compares live windows with the reference of the very version
it serves. Per symbol (one pooled model still sees BTC and ETH at different volatility levels, so
a BTC window is compared with BTC's training rows):

* **features**: for each model input, over the training rows (every row of the dataset the
  served model was fitted and calibrated on): decile bin edges of the finite values, the share
  of rows in each bin plus a NaN bin, the 0.5 % and 99.5 % quantiles (the support), and a
  reference sample for the two-sample KS test;
* **output**: the same for the calibrated P(up) out of fold on the **reported** span: out of
  sample like a live prediction (the served model's in-sample outputs would be overconfident),
  the latest rows training has (the closest to live), and the span the calibration figures come
  from, so output and calibration references describe the same rows. No choice reads it;
* **calibration**: Brier score and log loss of those reported-span predictions, with the
  per-row standard deviation of each loss (what a decay test needs to size its noise).

* **window PSI**: for each input, the PSI of the training rows' own contiguous windows of
  ``window_rows`` rows (one every ``window_stride`` rows) against the whole, at the quantile
  ``window_quantile``: how different an ordinary training week already is from the year. Slow
  regime features (Fear & Greed, funding, weekly volatility) sit in a narrow part of their range
  for a week at a time, so a week of them is far from the year by any test; the monitor judges a
  live window's PSI against this line (`agents.monitoring.drift.feature_drift`), so "drift"
  means "more unlike training than training weeks were", not "a week is not a year".

The KS sample is deterministic: the finite values' quantiles at the midpoints ``(i + 0.5) / m``,
a sample of ``m`` values whose empirical CDF is within ``1 / (2m)`` of the training rows' (a
random draw of the same size is off by about ``1 / sqrt(m)``); so ``m = 100`` keeps the file
small (about 40 KB per symbol for 50 features) without a seed to record.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.spans import REPORTED, SPAN_COLUMN, span_text
from sextant.config import PositiveInt, SextantConfig, int_range, interval
from sextant.errors import DataValidationError

if TYPE_CHECKING:
    from models.protocol import DirectionDataset

__all__ = [
    "DRIFT_REFERENCE_FILE",
    "OUTPUT_SPAN",
    "PSI_FLOOR",
    "SCHEMA_VERSION",
    "CalibrationReference",
    "Distribution",
    "DriftReference",
    "DriftReferenceConfig",
    "build_drift_reference",
    "log_drift_reference",
    "population_stability_index",
    "psi_rows",
]

DRIFT_REFERENCE_FILE = "drift_reference.json"  # artifact path inside the model's run
SCHEMA_VERSION = 2  # 2: window PSI lines (`Distribution.window_psi`, `window_rows`)
READABLE_SCHEMAS = (1, 2)  # a version-1 reference has no window lines: the fixed line applies
OUTPUT_SPAN = REPORTED  # the out-of-fold span the output and calibration references come from
_DIGITS = 6  # significant digits kept in the JSON (bin edges, shares, sample values)

FloatArray = npt.NDArray[np.float64]


class DriftReferenceConfig(SextantConfig):
    """How the reference is summarised: ``bins`` quantile bins, a KS sample of ``sample_size``."""

    bins: Annotated[int, int_range(2, 100)] = 10
    sample_size: PositiveInt = 100
    # the support is [q(tail), q(1 - tail)] of the finite values
    tail: Annotated[float, interval(0.0, 0.5, hi_open=True)] = 0.005
    # the window PSI line: windows of the monitor's length (`FeatureDriftConfig.window_bars`)
    window_rows: PositiveInt = 168
    window_stride: PositiveInt = 24
    window_quantile: Annotated[float, interval(0.5, 1.0)] = 1.0


def _round(value: float) -> float:
    return float(f"{value:.{_DIGITS}g}")


def _f32(value: Any) -> float:
    """``value`` as float32, written as the shortest decimal that reads back as that float32."""
    return float(np.format_float_scientific(np.float32(value), unique=True))


@dataclass(frozen=True)
class Distribution:
    """One variable's reference distribution.

    Bins are ``(-inf, e0], (e0, e1], ..., (e_last, inf)`` over ``edges`` (right-closed, so a
    discrete value that is an edge keeps its own bin), then one bin for NaN; ``proportions`` has
    ``len(edges) + 2`` shares summing to 1. ``e0`` lies just below the training minimum and
    ``e_last`` is its maximum, so the first and last bins (reference share 0) hold what training
    never saw; ``e1`` is the minimum itself; between them the deciles. A constant variable has a single bin between those
    two edges; one that is always NaN has no edges, an empty sample and no support. Values are
    compared in float32, the model's input type.
    """

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    sample: tuple[float, ...]  # KS reference sample (finite values, sorted)
    lower: float | None  # support: quantile ``tail`` of the finite values
    upper: float | None  # quantile ``1 - tail``
    mean: float | None
    sd: float | None
    n: int  # rows summarised (NaN included)
    # PSI of the training rows' own windows at the reference's window quantile (None: not built,
    # or fewer rows than one window)
    window_psi: float | None = None

    def __post_init__(self) -> None:
        if len(self.proportions) != len(self.edges) + 2:
            raise DataValidationError(
                f"drift reference: {len(self.proportions)} proportions for {len(self.edges)} "
                "edges (expected edges + 2)",
                field="proportions",
            )
        if any(b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)):
            raise DataValidationError(
                "drift reference: bin edges must be strictly increasing", field="edges"
            )

    @classmethod
    def of(
        cls, values: npt.ArrayLike, config: DriftReferenceConfig, *, windows: bool = False
    ) -> Distribution:
        """Summarise ``values`` (NaN allowed, infinities refused); ``windows``: in time order,
        with the window PSI line."""
        array = np.asarray(values, dtype=np.float64).ravel()
        if np.isinf(array).any():
            raise DataValidationError("drift reference: infinite values", field="values")
        finite = np.sort(array[np.isfinite(array)])
        if len(finite) == 0:
            return cls((), (0.0, 1.0), (), None, None, None, None, len(array))
        # edges and sample in float32, the model's input type: a discrete value (hour_sin, ...)
        # is then the same number in the reference and in a live window read as float64
        low, high = np.float32(finite[0]), np.float32(finite[-1])
        quantiles = np.quantile(finite, np.arange(1, config.bins) / config.bins)
        interior = {_f32(v) for v in quantiles if low < np.float32(v) < high}
        # a bin below the training minimum and one above the maximum (reference share 0); the
        # minimum ends a bin of its own, so a discrete feature's lowest value is not merged
        below = _f32(np.nextafter(low, np.float32(-np.inf)))
        edges = tuple(sorted({below, _f32(low), *interior, _f32(high)}))
        sample_at = (np.arange(config.sample_size) + 0.5) / config.sample_size
        sample = tuple(_f32(v) for v in np.quantile(finite, sample_at))
        lower, upper = np.quantile(finite, [config.tail, 1.0 - config.tail])
        index = _bin_index(edges, array)
        shares = _shares(index, len(edges))
        rounded = tuple(_round(v) for v in shares)
        return cls(
            edges,
            rounded,
            sample,
            _f32(lower),
            _f32(upper),
            _round(float(np.mean(finite))),
            _round(float(np.std(finite))),
            len(array),
            _window_psi(index, rounded, len(edges), config) if windows else None,
        )

    def bin_index(self, values: npt.ArrayLike) -> npt.NDArray[np.intp]:
        """Each value's bin: 0 .. len(edges) for finite values, len(edges) + 1 for NaN."""
        return _bin_index(self.edges, np.asarray(values, dtype=np.float64))

    def counts(self, values: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """How many of ``values`` fall in each bin (the NaN bin last)."""
        return np.bincount(self.bin_index(values), minlength=len(self.edges) + 2).astype(np.int64)

    def shares(self, values: npt.ArrayLike) -> FloatArray:
        """The share of ``values`` in each bin (all zeros for no values)."""
        return _shares(self.bin_index(values), len(self.edges))

    def to_json(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "proportions": list(self.proportions),
            "sample": list(self.sample),
            "lower": self.lower,
            "upper": self.upper,
            "mean": self.mean,
            "sd": self.sd,
            "n": self.n,
            "window_psi": self.window_psi,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], where: str) -> Distribution:
        try:
            return cls(
                edges=tuple(float(v) for v in value["edges"]),
                proportions=tuple(float(v) for v in value["proportions"]),
                sample=tuple(float(v) for v in value["sample"]),
                lower=_optional(value["lower"]),
                upper=_optional(value["upper"]),
                mean=_optional(value["mean"]),
                sd=_optional(value["sd"]),
                n=int(value["n"]),
                window_psi=_optional(value.get("window_psi")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(f"drift reference {where}: {exc!r}", field=where) from None


PSI_FLOOR = 1e-4  # an empty bin counts as this share, so PSI stays finite


def population_stability_index(live: npt.ArrayLike, reference: npt.ArrayLike) -> float:
    """PSI = sum (live - ref) * ln(live / ref) over bins of two share vectors (each sums to 1).

    Empty bins are floored at ``PSI_FLOOR``. 0 for identical shares; 0.1 is a small shift, 0.25
    a large one by the usual reading; for ``n`` rows drawn from the reference, ``n * PSI`` is
    roughly chi-square with (bins - 1) degrees of freedom.
    """
    a = np.asarray(live, dtype=np.float64)
    b = np.asarray(reference, dtype=np.float64)
    if a.shape != b.shape:
        raise DataValidationError(f"PSI over {a.shape} and {b.shape} bins", field="bins")
    return float(psi_rows(a, b))


def psi_rows(live: npt.ArrayLike, reference: npt.ArrayLike) -> FloatArray:
    """`population_stability_index` of each row of ``live`` (shares over the last axis) against
    ``reference`` (one share vector, or one per row), empty bins floored at ``PSI_FLOOR``: the
    same floats as one call per row."""
    a = np.maximum(np.asarray(live, dtype=np.float64), PSI_FLOOR)
    b = np.maximum(np.asarray(reference, dtype=np.float64), PSI_FLOOR)
    return np.asarray(np.sum((a - b) * np.log(a / b), axis=-1), dtype=np.float64)


def _window_psi(
    index: npt.NDArray[np.intp],
    proportions: Sequence[float],
    n_edges: int,
    config: DriftReferenceConfig,
) -> float | None:
    """The ``window_quantile`` of the PSI of every ``window_rows``-row window (stride
    ``window_stride``) of the binned values against ``proportions``: counts of all windows at
    once from cumulative per-bin counts."""
    n = len(index)
    if n < config.window_rows:
        return None
    one_hot = np.zeros((n + 1, n_edges + 2), dtype=np.int64)
    one_hot[np.arange(1, n + 1), index] = 1
    cumulative = np.cumsum(one_hot, axis=0)
    starts = np.arange(0, n - config.window_rows + 1, config.window_stride)
    counts = cumulative[starts + config.window_rows] - cumulative[starts]
    psi = psi_rows(counts / config.window_rows, proportions)
    return _round(float(np.quantile(psi, config.window_quantile)))


def _bin_index(edges: Sequence[float], values: FloatArray) -> npt.NDArray[np.intp]:
    """Right-closed bins compared in float32 (see `Distribution.of`), NaN in the last bin."""
    index = np.searchsorted(
        np.asarray(edges, dtype=np.float32), values.astype(np.float32), side="left"
    )
    return np.where(np.isnan(values), len(edges) + 1, index).astype(np.intp)


def _shares(index: npt.NDArray[np.intp], n_edges: int) -> FloatArray:
    counts = np.bincount(index.ravel(), minlength=n_edges + 2).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def _optional(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class CalibrationReference:
    """Brier score and log loss of the model's reported-span predictions, and their noise.

    ``brier_sd`` / ``log_loss_sd``: the standard deviation of the per-row loss, so a decay test
    can size the sampling noise of a live window's mean loss.
    """

    brier: float
    log_loss: float
    brier_sd: float
    log_loss_sd: float
    base_rate: float
    n: int

    @classmethod
    def of(cls, label_up: npt.ArrayLike, p_up: npt.ArrayLike) -> CalibrationReference:
        y = np.asarray(label_up, dtype=np.float64)
        p = np.asarray(p_up, dtype=np.float64)
        brier, log_loss = brier_losses(y, p), log_losses(y, p)
        return cls(
            brier=_round(float(brier.mean())),
            log_loss=_round(float(log_loss.mean())),
            brier_sd=_round(float(brier.std(ddof=1))),
            log_loss_sd=_round(float(log_loss.std(ddof=1))),
            base_rate=_round(float(y.mean())),
            n=len(y),
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "brier": self.brier,
            "log_loss": self.log_loss,
            "brier_sd": self.brier_sd,
            "log_loss_sd": self.log_loss_sd,
            "base_rate": self.base_rate,
            "n": self.n,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any], where: str) -> CalibrationReference:
        try:
            return cls(
                brier=float(value["brier"]),
                log_loss=float(value["log_loss"]),
                brier_sd=float(value["brier_sd"]),
                log_loss_sd=float(value["log_loss_sd"]),
                base_rate=float(value["base_rate"]),
                n=int(value["n"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(f"drift reference {where}: {exc!r}", field=where) from None


_PROBABILITY_FLOOR = 1e-15  # as scikit-learn's log_loss clips


def brier_losses(y: FloatArray, p: FloatArray) -> FloatArray:
    """Per-row Brier loss ``(p - y)^2``."""
    _check_probabilities(y, p)
    out: FloatArray = (p - y) ** 2
    return out


def log_losses(y: FloatArray, p: FloatArray) -> FloatArray:
    """Per-row log loss ``-log(p)`` for an up label, ``-log(1 - p)`` for a down one."""
    _check_probabilities(y, p)
    clipped = np.clip(p, _PROBABILITY_FLOOR, 1.0 - _PROBABILITY_FLOOR)
    out: FloatArray = -(y * np.log(clipped) + (1.0 - y) * np.log1p(-clipped))
    return out


def _check_probabilities(y: FloatArray, p: FloatArray) -> None:
    if y.shape != p.shape:
        raise DataValidationError(f"{len(y)} labels for {len(p)} probabilities", field="label_up")
    if len(y) and not np.isin(y, (0.0, 1.0)).all():
        raise DataValidationError("labels must be 0 or 1", field="label_up")
    if len(p) and not ((p >= 0.0) & (p <= 1.0)).all():  # NaN fails too
        raise DataValidationError("probabilities must be in [0, 1]", field="p_up")


@dataclass(frozen=True)
class DriftReference:
    """A direction model version's drift reference (see the module docstring), per symbol."""

    family: str
    feature_service: str
    features: tuple[str, ...]
    label_horizon: int  # bars until a decision's label is known
    data_range: str  # the training rows' decision times
    output_span: str  # the reported span's decision times
    inputs: Mapping[str, Mapping[str, Distribution]]  # symbol -> feature -> distribution
    output: Mapping[str, Distribution]  # symbol -> calibrated P(up)
    calibration: Mapping[str, CalibrationReference]  # symbol -> reported-span figures
    window_rows: int | None = None  # the window the inputs' ``window_psi`` lines are for

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(sorted(self.inputs))

    def for_symbol(self, symbol: str) -> Mapping[str, Distribution]:
        """The symbol's feature references; ``DataValidationError`` for a symbol not trained on."""
        try:
            return self.inputs[symbol]
        except KeyError:
            raise DataValidationError(
                f"{self.family} drift reference has no symbol {symbol!r} (trained on "
                f"{', '.join(self.symbols)})",
                field="symbol",
            ) from None

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "family": self.family,
            "feature_service": self.feature_service,
            "features": list(self.features),
            "label_horizon": self.label_horizon,
            "data_range": self.data_range,
            "output_span": self.output_span,
            "output_span_name": OUTPUT_SPAN,
            "inputs": {
                s: {f: d.to_json() for f, d in by_feature.items()}
                for s, by_feature in self.inputs.items()
            },
            "output": {s: d.to_json() for s, d in self.output.items()},
            "calibration": {s: c.to_json() for s, c in self.calibration.items()},
            "window_rows": self.window_rows,
        }

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> DriftReference:
        """Parse what `to_json` wrote; ``DataValidationError`` naming what is missing or wrong."""
        if not isinstance(value, Mapping):
            raise DataValidationError("drift reference must be a JSON object", field="reference")
        version = value.get("schema_version")
        if version not in READABLE_SCHEMAS:
            raise DataValidationError(
                f"drift reference schema_version {version!r}, this code reads "
                f"{', '.join(str(v) for v in READABLE_SCHEMAS)}",
                field="schema_version",
            )
        try:
            features = tuple(str(f) for f in value["features"])
            inputs = {
                str(s): {
                    f: Distribution.from_json(by_feature[f], f"inputs.{s}.{f}") for f in features
                }
                for s, by_feature in value["inputs"].items()
            }
            return cls(
                family=str(value["family"]),
                feature_service=str(value["feature_service"]),
                features=features,
                label_horizon=int(value["label_horizon"]),
                data_range=str(value["data_range"]),
                output_span=str(value["output_span"]),
                inputs=inputs,
                output={
                    str(s): Distribution.from_json(d, f"output.{s}")
                    for s, d in value["output"].items()
                },
                calibration={
                    str(s): CalibrationReference.from_json(c, f"calibration.{s}")
                    for s, c in value["calibration"].items()
                },
                window_rows=None if value.get("window_rows") is None else int(value["window_rows"]),
            )
        except (KeyError, TypeError, AttributeError) as exc:
            raise DataValidationError(
                f"drift reference is missing or has a malformed {exc}", field="reference"
            ) from None


def build_drift_reference(
    *,
    family: str,
    data: DirectionDataset,
    oof: pd.DataFrame,
    label_horizon: int,
    config: DriftReferenceConfig | None = None,
) -> DriftReference:
    """The reference of a model trained on ``data`` whose out-of-fold predictions are ``oof``.

    ``oof`` holds ``symbol``, ``decision_ts``, ``p_up``, ``label_up`` and the span column
    (`models.evaluation.evaluate_direction`); only its reported-span rows are read.
    """
    config = config or DriftReferenceConfig()
    missing = [
        c for c in ("symbol", "decision_ts", "p_up", "label_up", SPAN_COLUMN) if c not in oof
    ]
    if missing:
        raise DataValidationError(f"out-of-fold frame lacks {missing}", field="oof")
    reported = oof[oof[SPAN_COLUMN] == OUTPUT_SPAN]
    if reported.empty:
        raise DataValidationError(
            f"no {OUTPUT_SPAN}-span rows in the out-of-fold frame", field="oof"
        )
    symbols = np.asarray(data.symbols)
    inputs: dict[str, dict[str, Distribution]] = {}
    output: dict[str, Distribution] = {}
    calibration: dict[str, CalibrationReference] = {}
    for symbol in sorted(set(symbols.tolist())):
        rows = data.X[symbols == symbol]
        inputs[symbol] = {  # rows are in time order within a symbol (`DirectionDataset`)
            name: Distribution.of(rows[:, j], config, windows=True)
            for j, name in enumerate(data.features)
        }
        predicted = reported[reported["symbol"] == symbol]
        if predicted.empty:
            raise DataValidationError(
                f"{family}: no {OUTPUT_SPAN}-span predictions for {symbol}", field="symbol"
            )
        output[symbol] = Distribution.of(predicted["p_up"].to_numpy(dtype=np.float64), config)
        calibration[symbol] = CalibrationReference.of(predicted["label_up"], predicted["p_up"])
    return DriftReference(
        family=family,
        feature_service=data.feature_service,
        features=tuple(data.features),
        label_horizon=label_horizon,
        data_range=span_text(data.decision_ts.min(), data.decision_ts.max()),
        output_span=span_text(reported["decision_ts"].min(), reported["decision_ts"].max()),
        inputs=inputs,
        output=output,
        calibration=calibration,
        window_rows=config.window_rows,
    )


def log_drift_reference(reference: DriftReference) -> str:
    """Log the reference as ``drift_reference.json`` in the active MLflow run; returns its path.

    Called inside the model's run (`models.training` runs inside ``Tracking.fluent()``).
    """
    import mlflow

    mlflow.log_dict(reference.to_json(), DRIFT_REFERENCE_FILE)
    return DRIFT_REFERENCE_FILE
