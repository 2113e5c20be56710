"""`sextant train`: walk-forward evaluation, final fit, ONNX export with parity, MLflow, registration.

Per family, in this order: assemble data (bad input fails here, before any fitting), purged
walk-forward CV (out-of-fold predictions and per-fold metrics), the incumbent champion's
configuration replayed on the very same folds (so promotion compares like with like), the final
fit on every row, ONNX export, parity and latency checks, and only then registration as
``challenger``. A failure at any step marks the MLflow run failed and registers nothing.
XGBoost's version also names its booster in xgboost's own format (tag ``native_model``): the
served trees with their covers, for exact TreeSHAP in explanations; serving runs the ONNX graph.
"""

from __future__ import annotations

import functools
import json
import logging
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Self

import numpy as np
import pandas as pd
from pydantic import AwareDatetime, model_validator

from models.calibration import MIN_CALIBRATION_ROWS, CalibrationMethod, fit_calibrated
from models.cv import Fold, Window, purged_walk_forward
from models.data import direction_dataset, symbol_returns
from models.drift_reference import build_drift_reference, log_drift_reference
from models.evaluation import CalibratedFold, DirectionEvaluation, evaluate_direction, split_folds
from models.garch import GarchConfig, GarchFit, GarchModel, GarchState, filter_variance
from models.garch_family import (
    BASELINE_WINDOW,
    evaluate_garch,
    garch_multi_onnx,
    garch_multi_parity,
    garch_window_parity,
    variance_forecast_metrics,
)
from models.lstm import LstmConfig, LstmDirectionModel
from models.onnx_parity import DIRECTION_PARITY_TOLERANCE, check_direction_parity, onnx_latency
from models.protocol import DirectionDataset, DirectionModel
from models.registry import champion_config, register_version
from models.spans import (
    REPORTED,
    SELECTION,
    SPAN_COLUMN,
    SPAN_NAMES,
    EvaluationSpans,
    find_reported_start,
    label_spans,
    span_text,
)
from models.tracking import EXPERIMENTS, Tracking, git_commit
from models.xgb import NATIVE_MODEL_FILE, XgbConfig, XgbDirectionModel
from sextant.config import (
    Names,
    NonNegativeInt,
    OpenFraction,
    PositiveInt,
    SextantConfig,
    config_hash,
)
from sextant.contracts import DIRECTION_FAMILIES, FAMILIES, ModelTag
from sextant.contracts import FEATURE_SERVICES as SERVICES
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "TABLE_COLUMNS",
    "CvConfig",
    "FamilyReport",
    "TrainConfig",
    "span_rows",
    "table_rows",
    "train_models",
]

log = logging.getLogger(__name__)


class CvConfig(SextantConfig):
    """Purged walk-forward settings; sizes count bars (distinct decision times)."""

    n_splits: PositiveInt = 4
    min_train_bars: PositiveInt = 2000
    embargo_bars: NonNegativeInt = 4  # must be >= the label horizon
    window: Window = "expanding"
    max_train_bars: PositiveInt | None = None  # window='sliding' only, and required there
    # the evaluation protocol (docs/models.md): each fold's calibration tail, and the later part of
    # the out-of-fold decisions that is reported and takes part in no choice
    calibration_fraction: OpenFraction = 0.2
    calibration_method: CalibrationMethod = "platt"
    reported_fraction: OpenFraction = 0.5

    @model_validator(mode="after")
    def _window_size(self) -> Self:
        if (self.window == "sliding") != (self.max_train_bars is not None):
            raise ConfigError(
                "CvConfig.max_train_bars is required with window='sliding' and applies to it "
                f"only, got window={self.window!r}, max_train_bars={self.max_train_bars}"
            )
        if self.max_train_bars is not None and self.max_train_bars < self.min_train_bars:
            raise ConfigError(
                f"CvConfig.max_train_bars ({self.max_train_bars}) must not be smaller than "
                f"min_train_bars ({self.min_train_bars})"
            )
        return self


class TrainConfig(SextantConfig):
    """Everything that determines a training run (its hash goes into every MLflow run)."""

    families: Names = FAMILIES
    symbols: Names = ()
    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    horizon: PositiveInt = 4
    cv: CvConfig = CvConfig()
    xgb: XgbConfig = XgbConfig()
    # larger batches and a shorter patience than LstmConfig's defaults keep two years of two
    # symbols inside the 5-minute training budget on 2 cores (make bench: train_lstm_*)
    lstm: LstmConfig = LstmConfig(batch_size=512, max_epochs=15, patience=3)
    garch: GarchConfig = GarchConfig()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ConfigError(
                f"TrainConfig.families: unknown model families {unknown}; known: {', '.join(FAMILIES)}"
            )
        if self.cv.embargo_bars < self.horizon:
            raise ConfigError(
                f"TrainConfig: embargo of {self.cv.embargo_bars} bars is shorter than the label "
                f"horizon of {self.horizon} bars"
            )
        return self

    @staticmethod
    def quick(**overrides: Any) -> TrainConfig:
        """Small but real models for `make run` and tests: few folds, few trees, a tiny LSTM."""
        base = TrainConfig(
            cv=CvConfig(n_splits=3, min_train_bars=1500),
            xgb=XgbConfig(n_estimators=150, max_depth=4),
            lstm=LstmConfig(seq_len=24, hidden=16, layers=1, max_epochs=3, patience=1),
        )
        return base.replace(**overrides)


@dataclass(slots=True)
class FamilyReport:
    """What training one family produced."""

    family: str
    run_id: str
    metrics: dict[str, float]
    parity: dict[str, Any]
    latency_ms: dict[str, float]
    model_version: str | None
    data_range: tuple[str, str]
    seconds: float
    spans: dict[str, str] = field(default_factory=dict)
    baseline: dict[str, Any] = field(default_factory=dict)  # name and its per-span metrics

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# the columns of the train table: every row has all of them, "-" where a family has no such figure
TABLE_METRICS = ("auc", "log_loss", "brier", "ece", "qlike", "var99_exceedance_rate")
TABLE_BASELINE_METRICS = ("auc", "qlike")
TABLE_COLUMNS = (
    "family",
    "version",
    "span",
    *TABLE_METRICS,
    "baseline",
    *(f"baseline_{k}" for k in TABLE_BASELINE_METRICS),
)


def table_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """A family report (``FamilyReport.to_json()``) as one row per span: model and baseline figures."""
    metrics, baseline = report["metrics"], report["baseline"]
    rows = []
    for span in (SELECTION, REPORTED):
        row: dict[str, Any] = {
            "family": report["family"],
            "version": report["model_version"],
            "span": span,
            "baseline": baseline.get("name"),
        }
        for key in TABLE_METRICS:
            value = metrics.get(f"{span}_{key}")
            row[key] = None if value is None else round(float(value), 5)
        for key in TABLE_BASELINE_METRICS:
            value = baseline.get(span, {}).get(key)
            row[f"baseline_{key}"] = None if value is None else round(float(value), 5)
        rows.append(row)
    return rows


def span_rows(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per family: its four spans (docs/models.md, "Evaluation protocol")."""
    return [{"family": r["family"], **{k: r["spans"].get(k) for k in SPAN_NAMES}} for r in reports]


# --- direction families ------------------------------------------------------------------------


def _direction_model(
    family: str, config: TrainConfig, override: dict[str, Any] | None = None
) -> DirectionModel:
    if family == "xgb":
        xgb_cfg = XgbConfig.from_dict(override) if override else config.xgb
        return XgbDirectionModel(xgb_cfg)
    lstm_cfg = LstmConfig.from_dict(override) if override else config.lstm
    return LstmDirectionModel(lstm_cfg)


def _family_config(family: str, config: TrainConfig) -> SextantConfig:
    family_config: SextantConfig = {"xgb": config.xgb, "lstm": config.lstm, "garch": config.garch}[
        family
    ]
    return family_config


def _direction_folds(data: DirectionDataset, config: TrainConfig, bar: pd.Timedelta) -> list[Fold]:
    cv = config.cv
    return purged_walk_forward(
        data.decision_ts,
        data.label_end_ts,
        n_splits=cv.n_splits,
        min_train_size=cv.min_train_bars,
        embargo=bar * cv.embargo_bars,
        min_embargo=bar * config.horizon,
        window=cv.window,
        max_train_size=cv.max_train_bars,
    )


def _check_folds(family: str, data: DirectionDataset, folds: list[CalibratedFold]) -> None:
    """Bad input fails before any fitting, naming the family, the period and the problem."""
    for fold in folds:
        for part, rows in (("fit", fold.fit), ("calibration", fold.calibration)):
            classes = np.unique(data.y[rows])
            if len(classes) < 2:
                times = data.decision_ts.iloc[rows]
                raise DataValidationError(
                    f"{family}: fold {fold.index} ({times.min()} .. {times.max()}) has a single label class "
                    f"{classes.tolist()} in its {part} rows"
                )


# --- orchestration -----------------------------------------------------------------------------


def train_models(settings: Settings, config: TrainConfig, tracking: Tracking) -> list[FamilyReport]:
    """Train, evaluate, export and register the configured families; returns one report each.

    Runs, artifacts and registered versions go to ``tracking`` (`Tracking.from_settings`).
    """
    symbols = config.symbols or settings.symbols
    config = config.replace(symbols=tuple(symbols))
    bar = pd.Timedelta(timeframe_to_timedelta(settings.timeframe))
    train_id = uuid.uuid4().hex[:12]
    common_tags = {
        "sextant.train_id": train_id,
        "sextant.config_hash": config_hash(config),
        "sextant.git_commit": git_commit(),
        "sextant.symbols": ",".join(symbols),
        "sextant.timeframe": settings.timeframe,
    }
    groups = [
        ("direction", [f for f in config.families if f in DIRECTION_FAMILIES]),
        ("volatility", [f for f in config.families if f not in DIRECTION_FAMILIES]),
    ]
    # the runs are logged through MLflow's fluent API (nested runs, mlflow.onnx.log_model), pointed
    # at ``tracking`` for this block only
    with tracking.fluent():
        return [
            report
            for task, families in groups
            if families
            for report in _train_group(settings, config, tracking, task, families, common_tags, bar)
        ]


def _train_group(
    settings: Settings,
    config: TrainConfig,
    tracking: Tracking,
    task: str,
    families: list[str],
    common_tags: dict[str, str],
    bar: pd.Timedelta,
) -> list[FamilyReport]:
    """One parent run in the task's experiment, one nested run per family."""
    import mlflow

    train_id = common_tags["sextant.train_id"]
    reports: list[FamilyReport] = []
    experiment_id = tracking.experiment_id(EXPERIMENTS[task])
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"train-{train_id}", tags=common_tags
    ):
        mlflow.log_params(
            {
                "families": ",".join(families),
                "horizon": config.horizon,
                **_flat("cv", config.cv.as_dict()),
            }
        )
        for family in families:
            with mlflow.start_run(
                experiment_id=experiment_id, run_name=family, nested=True, tags=common_tags
            ) as run:
                started = time.perf_counter()
                if family == "garch":
                    report = _train_garch(settings, config, tracking, run.info.run_id, bar)
                else:
                    report = _train_direction(
                        settings, config, tracking, family, run.info.run_id, bar
                    )
                report.seconds = time.perf_counter() - started
                mlflow.log_metric("train_seconds", report.seconds)
                reports.append(report)
    return reports


@contextmanager
def _context(family: str, symbols: Sequence[str], period: tuple[str, str]) -> Iterator[None]:
    """Bad input is reported with the model, the symbols and the period it concerns."""
    try:
        yield
    except DataValidationError as exc:
        raise DataValidationError(
            f"{family} on {', '.join(symbols)} {period[0]} .. {period[1]}: {exc}"
        ) from exc


def _flat(prefix: str, values: dict[str, Any]) -> dict[str, Any]:
    return {f"{prefix}.{k}": v for k, v in values.items() if not isinstance(v, (dict, list, tuple))}


def _train_direction(
    settings: Settings,
    config: TrainConfig,
    tracking: Tracking,
    family: str,
    run_id: str,
    bar: pd.Timedelta,
) -> FamilyReport:
    import mlflow

    service = SERVICES[family]
    cv = config.cv
    data = direction_dataset(
        settings,
        service,
        config.symbols,
        start=config.start,
        end=config.end,
        horizon=config.horizon,
    )
    data_range = (str(data.decision_ts.min()), str(data.decision_ts.max()))
    with _context(family, config.symbols, data_range):
        folds = _direction_folds(data, config, bar)
        calibrated_folds = split_folds(data, folds, cv.calibration_fraction, MIN_CALIBRATION_ROWS)
        _check_folds(family, data, calibrated_folds)
    family_config = _family_config(family, config)
    mlflow.log_params(
        {
            "family": family,
            "feature_service": service,
            "n_features": len(data.features),
            "rows": len(data.y),
            **_flat(family, family_config.as_dict()),
        }
    )
    mlflow.set_tags(
        {
            "sextant.feature_service": service,
            "sextant.data_range": f"{data_range[0]} .. {data_range[1]}",
            "sextant.family_config_hash": config_hash(family_config),
            "sextant.folds_hash": _folds_hash(data, folds),
        }
    )
    mlflow.log_dict({"feature_service": service, "features": list(data.features)}, "features.json")
    mlflow.log_dict(family_config.model_dump(mode="json"), "family_config.json")

    def make_model() -> DirectionModel:
        return _direction_model(family, config)

    incumbent = champion_config(tracking, family)
    make_champion: Callable[[], DirectionModel] | None = None
    if incumbent is not None:
        same = config_hash(incumbent) == config_hash(family_config)
        make_champion = (
            make_model if same else functools.partial(_direction_model, family, config, incumbent)
        )
    with _context(family, config.symbols, data_range):
        evaluation = evaluate_direction(
            family,
            data,
            calibrated_folds,
            make_model,
            make_champion=make_champion,
            calibration_method=cv.calibration_method,
            reported_fraction=cv.reported_fraction,
        )
    _log_direction_evaluation(evaluation)

    # the served model: fitted on every row but the latest tail, calibrated on that tail
    served, calibration_rows = fit_calibrated(
        _direction_model(family, config),
        data,
        np.arange(len(data.y), dtype=np.intp),
        method=config.cv.calibration_method,
        fraction=config.cv.calibration_fraction,
    )
    final, calibrator = served.model, served.calibrator
    proto = served.to_onnx()
    # parity on rows the model was not fitted on (the final calibration tail)
    held_out = calibration_rows[-min(500, len(calibration_rows)) :]
    raw_parity = check_direction_parity(final, data, held_out)
    mlflow.log_metrics({"parity_raw_max_abs_err": raw_parity.max_abs_err})
    raw_parity.raise_for_failure()
    # the calibrator's steepest step magnifies the raw graph's float32 rounding, and no more
    tolerance = DIRECTION_PARITY_TOLERANCE + calibrator.max_slope * raw_parity.max_abs_err
    parity = check_direction_parity(served, data, held_out, tolerance, model_proto=proto)
    mlflow.log_metrics({"parity_max_abs_err": parity.max_abs_err})
    parity.raise_for_failure()
    one_row = served.onnx_inputs(data, held_out[-1:])
    p50, p99 = onnx_latency(proto, one_row)
    mlflow.log_metrics({"onnx_p50_ms": p50, "onnx_p99_ms": p99})
    mlflow.log_params(
        {f"final.{k}": v for k, v in final.params().items() if not isinstance(v, (dict, list))}
    )
    _log_plots_direction(family, final, evaluation.oof)
    # what the monitor compares live inputs, outputs and calibration with (agents.monitoring.drift)
    drift_reference = log_drift_reference(
        build_drift_reference(
            family=family, data=data, oof=evaluation.oof, label_horizon=config.horizon
        )
    )
    # XGBoost: the served trees in xgboost's own format, for exact TreeSHAP in explanations
    native: dict[str, str] = {}
    if isinstance(final, XgbDirectionModel):
        native[ModelTag.NATIVE_MODEL] = _log_native_model(final)

    baseline = {
        "name": evaluation.baseline.name,
        "candidates_selection_auc": evaluation.baseline_candidates,
        **{span: values for span, values in evaluation.baseline_metrics.items()},
    }
    version = register_version(
        tracking,
        family=family,
        run_id=run_id,
        proto=proto,
        input_example=one_row,
        tags={
            ModelTag.FEATURE_SERVICE: service,
            ModelTag.FEATURES: json.dumps(list(data.features)),
            "data_range": f"{data_range[0]} .. {data_range[1]}",
            "config_hash": config_hash(family_config),
            ModelTag.FAMILY_CONFIG: family_config.model_dump_json(),
            "folds_hash": _folds_hash(data, folds),
            ModelTag.LABEL_HORIZON: str(config.horizon),
            "git_commit": git_commit(),
            "parity_max_abs_err": f"{parity.max_abs_err:.3g}",
            "onnx_p99_ms": f"{p99:.4f}",
            ModelTag.SELECTION_METRICS: json.dumps(evaluation.metrics[SELECTION]),
            ModelTag.REPORTED_METRICS: json.dumps(evaluation.metrics[REPORTED]),
            ModelTag.BASELINE: json.dumps(baseline),
            ModelTag.CALIBRATION: json.dumps(calibrator.to_dict()),
            ModelTag.DRIFT_REFERENCE: drift_reference,
            **native,
            ModelTag.CHAMPION_REPLAY_METRICS: json.dumps(
                evaluation.champion_metrics.get(SELECTION, {})
            ),
            **evaluation.spans.tags(),
        },
    )
    return FamilyReport(
        family=family,
        run_id=run_id,
        metrics=evaluation.flat_metrics(),
        parity={"max_abs_err": parity.max_abs_err, "n": parity.n, "passed": parity.passed},
        latency_ms={"p50": p50, "p99": p99},
        model_version=version,
        data_range=data_range,
        seconds=0.0,
        spans=evaluation.spans.to_json(),
        baseline=baseline,
    )


def _log_direction_evaluation(evaluation: DirectionEvaluation) -> None:
    """Per-fold and per-span metrics, the baseline, the spans and the OOF predictions."""
    import mlflow

    for fold_index, metrics in enumerate(evaluation.fold_metrics):
        mlflow.log_metrics(
            {f"fold_{k}": v for k, v in metrics.items() if np.isfinite(v)}, step=fold_index
        )
    mlflow.log_metrics({k: v for k, v in evaluation.flat_metrics().items() if np.isfinite(v)})
    mlflow.log_metrics(
        {
            f"baseline_candidate_{k}_selection_auc": v
            for k, v in evaluation.baseline_candidates.items()
        }
    )
    mlflow.log_params(
        {
            "baseline": evaluation.baseline.name,
            "baseline_candidates": len(evaluation.baseline_candidates),
        }
    )
    mlflow.set_tags(evaluation.spans.tags())
    _log_frame(evaluation.oof, "oof_predictions.parquet")


def _folds_hash(data: DirectionDataset, folds: Sequence[Fold]) -> str:
    spec = [
        (
            f.index,
            str(f.train_start),
            str(f.train_end),
            str(f.test_start),
            str(f.test_end),
            len(f.train),
            len(f.test),
        )
        for f in folds
    ]
    return config_hash({"service": data.feature_service, "folds": spec})


def _log_native_model(model: XgbDirectionModel) -> str:
    """Log the booster in XGBoost's own format in the active run; returns its artifact path.

    The ONNX graph keeps the trees but not their covers, which TreeSHAP weighs paths with;
    explanations (`agents.tools.contributions`) load this file, serving never does.
    """
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / NATIVE_MODEL_FILE
        path.write_bytes(model.native_model())
        mlflow.log_artifact(str(path))
    return NATIVE_MODEL_FILE


def _log_frame(frame: pd.DataFrame, name: str) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        frame.to_parquet(path, index=False)
        mlflow.log_artifact(str(path))


def _log_plots_direction(family: str, model: DirectionModel, oof: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow
    from sklearn.metrics import roc_curve

    from models.metrics import calibration_table

    fpr, tpr, _ = roc_curve(oof["label_up"], oof["p_up"])
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(fpr, tpr, label=family)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(
        xlabel="false positive rate", ylabel="true positive rate", title=f"{family} out-of-fold ROC"
    )
    mlflow.log_figure(fig, "plots/roc.png")
    plt.close(fig)

    # the reliability plot of the reported span: raw and calibrated probabilities
    reported = oof[oof[SPAN_COLUMN] == REPORTED]
    fig, ax = plt.subplots(figsize=(5, 5))
    for column, label in (("p_raw", "raw"), ("p_up", "calibrated")):
        table = calibration_table(reported["label_up"].to_numpy(), reported[column].to_numpy())
        ax.plot(table["mean_p"], table["frac_up"], marker="o", label=label)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(
        xlabel="mean predicted P(up)",
        ylabel="observed frequency of up",
        title=f"{family} reliability (reported span)",
    )
    ax.legend(loc="upper left")
    mlflow.log_figure(fig, "plots/calibration.png")
    plt.close(fig)

    importance = getattr(model, "feature_importance", None)
    if callable(importance):
        gains = importance().sort_values().tail(20)
        fig, ax = plt.subplots(figsize=(6, 6))
        ax.barh(gains.index, gains.to_numpy())
        ax.set(title=f"{family} feature importance (gain)")
        fig.tight_layout()
        mlflow.log_figure(fig, "plots/feature_importance.png")
        plt.close(fig)


# --- GARCH -------------------------------------------------------------------------------------


def _train_garch(
    settings: Settings, config: TrainConfig, tracking: Tracking, run_id: str, bar: pd.Timedelta
) -> FamilyReport:
    import mlflow

    returns = symbol_returns(settings, config.symbols, start=config.start, end=config.end)
    cv = config.cv
    data_range = (
        str(min(s.index.min() for s in returns.values())),
        str(max(s.index.max() for s in returns.values())),
    )
    mlflow.log_params(
        {
            "family": "garch",
            "feature_service": SERVICES["garch"],
            **_flat("garch", config.garch.as_dict()),
        }
    )
    mlflow.set_tags(
        {
            "sextant.feature_service": SERVICES["garch"],
            "sextant.data_range": f"{data_range[0]} .. {data_range[1]}",
            "sextant.family_config_hash": config_hash(config.garch),
        }
    )
    # the same folds for the challenger and for the champion's replay
    evaluate = functools.partial(
        evaluate_garch,
        returns,
        n_splits=cv.n_splits,
        min_train_bars=cv.min_train_bars,
        embargo=bar * cv.embargo_bars,
        bar=bar,
        window=cv.window,
        max_train_bars=cv.max_train_bars,
    )
    with _context("garch", config.symbols, data_range):
        evaluation = evaluate(config.garch)
        oof = evaluation.oof
        start = find_reported_start(oof["ts"], cv.reported_fraction)
        # a row's outcome, the squared return at ts, is taken as known one bar later (as in the CV)
        oof[SPAN_COLUMN] = label_spans(oof["ts"], oof["ts"] + bar, start)
        spans = EvaluationSpans.build(evaluation.fit_ts, pd.Series([], dtype=object), oof, "ts")
    incumbent = champion_config(tracking, "garch")
    if incumbent is not None:
        same = config_hash(incumbent) == config_hash(config.garch)
        replayed = evaluation if same else evaluate(GarchConfig.from_dict(incumbent))
        oof["champion_var"] = replayed.oof["forecast_var"].to_numpy()
    per_span = {
        span: variance_forecast_metrics(oof[oof[SPAN_COLUMN] == span])
        for span in (SELECTION, REPORTED)
    }
    replay = (
        {
            span: variance_forecast_metrics(
                oof[oof[SPAN_COLUMN] == span].assign(forecast_var=lambda f: f["champion_var"])
            )
            for span in (SELECTION, REPORTED)
        }
        if "champion_var" in oof
        else {}
    )
    for fold_index, metrics in enumerate(evaluation.fold_metrics):
        mlflow.log_metrics(
            {f"fold_{k}": v for k, v in metrics.items() if np.isfinite(v)}, step=fold_index
        )
    flat = {
        f"{prefix}{span}_{k}": float(v)
        for prefix, table in (("", per_span), ("champion_", replay))
        for span, values in table.items()
        for k, v in values.items()
    }
    mlflow.log_metrics({k: v for k, v in flat.items() if np.isfinite(v)})
    mlflow.set_tags(spans.tags())
    _log_frame(oof, "oof_predictions.parquet")

    fits, samples = _fit_garch_final(config.garch, returns)
    proto = garch_multi_onnx(fits)
    final_parity = garch_multi_parity(proto, fits, samples)
    mlflow.log_metrics({"parity_max_rel_err": final_parity.max_rel_err})
    final_parity.raise_for_failure()
    # serving recomputes the variance from each bar's online window of returns (features.online)
    window_parity = garch_window_parity(proto, fits, returns)
    mlflow.log_metrics({"window_parity_max_rel_err": window_parity.max_rel_err})
    window_parity.raise_for_failure()
    fits = {s: _advance(fit, samples[s]) for s, fit in fits.items()}
    first = sorted(fits)[0]
    one_row = {
        "symbol_index": np.zeros((1, 1), dtype=np.int64),
        "last_return": np.array([[fits[first].final_state.last_return]]),
        "last_variance": np.array([[fits[first].final_state.last_variance]]),
    }
    p50, p99 = onnx_latency(proto, one_row)
    mlflow.log_metrics({"onnx_p50_ms": p50, "onnx_p99_ms": p99})
    for symbol, fit in fits.items():
        mlflow.log_params({f"{symbol}.{k}": round(v, 10) for k, v in fit.params.as_dict().items()})
    _log_plot_var(oof)
    baseline = {
        "name": f"rolling_variance_{BASELINE_WINDOW}",
        **{span: {"qlike": values["baseline_qlike"]} for span, values in per_span.items()},
    }
    version = register_version(
        tracking,
        family="garch",
        run_id=run_id,
        proto=proto,
        input_example=one_row,
        tags={
            ModelTag.FEATURE_SERVICE: SERVICES["garch"],
            ModelTag.SYMBOLS: json.dumps(sorted(fits)),
            "data_range": f"{data_range[0]} .. {data_range[1]}",
            "config_hash": config_hash(config.garch),
            ModelTag.FAMILY_CONFIG: config.garch.model_dump_json(),
            "git_commit": git_commit(),
            "parity_max_rel_err": f"{final_parity.max_rel_err:.3g}",
            "parity_sample": json.dumps(
                {s: span_text(r.index.min(), r.index.max()) for s, r in samples.items()}
            ),
            "fit_range": json.dumps({s: span_text(f.start, f.end) for s, f in fits.items()}),
            "onnx_p99_ms": f"{p99:.4f}",
            ModelTag.SELECTION_METRICS: json.dumps(per_span[SELECTION]),
            ModelTag.REPORTED_METRICS: json.dumps(per_span[REPORTED]),
            ModelTag.BASELINE: json.dumps(baseline),
            "window_parity_max_rel_err": f"{window_parity.max_rel_err:.3g}",
            ModelTag.CHAMPION_REPLAY_METRICS: json.dumps(replay.get(SELECTION, {})),
            **spans.tags(),
        },
    )
    return FamilyReport(
        family="garch",
        run_id=run_id,
        metrics=flat,
        parity={
            "max_rel_err": final_parity.max_rel_err,
            "n": final_parity.n,
            "passed": final_parity.passed,
        },
        latency_ms={"p50": p50, "p99": p99},
        model_version=version,
        data_range=data_range,
        seconds=0.0,
        spans=spans.to_json(),
        baseline=baseline,
    )


def _fit_garch_final(
    config: GarchConfig, returns: dict[str, pd.Series]
) -> tuple[dict[str, GarchFit], dict[str, pd.Series]]:
    """Per symbol: a fit on every return but the latest ones, and those latest ones (parity sample).

    The parity sample is out of sample: the recursion continues from the fit's final state over
    returns the fit never saw, as serving will.
    """
    holdout = max(50, min(500, min(len(s) for s in returns.values()) // 10))
    fits = {
        s: GarchModel(config).fit(series.iloc[:-holdout], origin=s) for s, series in returns.items()
    }
    return fits, {s: series.iloc[-holdout:] for s, series in returns.items()}


def _advance(fit: GarchFit, returns: pd.Series) -> GarchFit:
    """The fit with its state carried through ``returns`` (the registered input example)."""
    variances = filter_variance(fit.params, returns, state=fit.final_state)
    state = GarchState(float(returns.iloc[-1]), float(variances[-1]))
    return replace(fit, final_state=state)


def _log_plot_var(oof: pd.DataFrame) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import mlflow

    fig, axes = plt.subplots(
        len(oof["symbol"].unique()), 1, figsize=(9, 3.5 * oof["symbol"].nunique()), squeeze=False
    )
    for ax, (symbol, rows) in zip(axes[:, 0], oof.groupby("symbol"), strict=True):
        hits = rows["ret"] < -rows["var99"]
        ax.plot(rows["ts"], rows["ret"], linewidth=0.5, label="return")
        ax.plot(rows["ts"], -rows["var99"], linewidth=0.8, label="-VaR 99%")
        ax.scatter(
            rows.loc[hits, "ts"],
            rows.loc[hits, "ret"],
            color="red",
            s=8,
            label=f"exceedances ({int(hits.sum())})",
        )
        ax.set(title=f"{symbol}: out-of-fold VaR(99%)")
        ax.legend(loc="lower left", fontsize=7)
    fig.tight_layout()
    mlflow.log_figure(fig, "plots/var_exceedances.png")
    plt.close(fig)
