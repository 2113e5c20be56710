"""`sextant train`: walk-forward evaluation, final fit, ONNX export with parity, MLflow, registration.

Per family, in this order: assemble data (bad input fails here, before any fitting), purged
walk-forward CV (out-of-fold predictions and per-fold metrics), the incumbent champion's
configuration replayed on the very same folds (so promotion compares like with like), the final
fit on every row, ONNX export, parity and latency checks, and only then registration as
``challenger``. A failure at any step marks the MLflow run failed and registers nothing.
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
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from models.cv import Fold, purged_walk_forward
from models.data import direction_dataset, symbol_returns
from models.garch import GarchConfig, GarchModel
from models.garch_family import evaluate_garch, garch_multi_onnx, garch_multi_parity
from models.lstm import LstmConfig, LstmDirectionModel
from models.metrics import direction_metrics
from models.onnx_parity import check_direction_parity, onnx_latency
from models.protocol import DirectionDataset, DirectionModel
from models.registry import champion_config, register_version
from models.tracking import EXPERIMENTS, config_hash, ensure_experiment, git_commit, use_home
from models.xgb import XgbConfig, XgbDirectionModel
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["CvConfig", "FamilyReport", "TrainConfig", "train_models"]

log = logging.getLogger(__name__)

FAMILIES = ("garch", "xgb", "lstm")
SERVICES = {"xgb": "xgb_direction_v1", "lstm": "lstm_direction_v1", "garch": "garch_vol_v1"}


@dataclass(frozen=True)
class CvConfig:
    """Purged walk-forward settings; sizes count bars (distinct decision times)."""

    n_splits: int = 4
    min_train_bars: int = 2000
    embargo_bars: int = 4  # must be >= the label horizon
    window: str = "expanding"
    max_train_bars: int | None = None


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run (its hash goes into every MLflow run)."""

    families: tuple[str, ...] = FAMILIES
    symbols: tuple[str, ...] = ()
    start: datetime | None = None
    end: datetime | None = None
    horizon: int = 4
    cv: CvConfig = field(default_factory=CvConfig)
    xgb: XgbConfig = field(default_factory=XgbConfig)
    # larger batches and a shorter patience than LstmConfig's defaults keep two years of two
    # symbols inside the 5-minute training budget on 2 cores (make bench: train_lstm_*)
    lstm: LstmConfig = field(
        default_factory=lambda: LstmConfig(batch_size=512, max_epochs=15, patience=3)
    )
    garch: GarchConfig = field(default_factory=GarchConfig)

    def __post_init__(self) -> None:
        unknown = [f for f in self.families if f not in FAMILIES]
        if unknown:
            raise ConfigError(f"unknown model families {unknown}; known: {', '.join(FAMILIES)}")
        if self.cv.embargo_bars < self.horizon:
            raise ConfigError(
                f"embargo of {self.cv.embargo_bars} bars is shorter than the label horizon of {self.horizon} bars"
            )

    @staticmethod
    def quick(**overrides: Any) -> TrainConfig:
        """Small but real models for `make run` and tests: few folds, few trees, a tiny LSTM."""
        base = TrainConfig(
            cv=CvConfig(n_splits=3, min_train_bars=1500),
            xgb=XgbConfig(n_estimators=150, max_depth=4),
            lstm=LstmConfig(seq_len=24, hidden=16, layers=1, max_epochs=3, patience=1),
        )
        return replace(base, **overrides)


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

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


# --- direction families ------------------------------------------------------------------------


def _direction_model(
    family: str, config: TrainConfig, override: dict[str, Any] | None = None
) -> DirectionModel:
    if family == "xgb":
        xgb_cfg = XgbConfig(**override) if override else config.xgb
        return XgbDirectionModel(xgb_cfg)
    lstm_cfg = LstmConfig(**override) if override else config.lstm
    return LstmDirectionModel(lstm_cfg)


def _family_config(family: str, config: TrainConfig) -> Any:
    return {"xgb": config.xgb, "lstm": config.lstm, "garch": config.garch}[family]


def _direction_folds(data: DirectionDataset, config: TrainConfig, bar: pd.Timedelta) -> list[Fold]:
    cv = config.cv
    return purged_walk_forward(
        data.decision_ts,
        data.label_end_ts,
        n_splits=cv.n_splits,
        min_train_size=cv.min_train_bars,
        embargo=bar * cv.embargo_bars,
        min_embargo=bar * config.horizon,
        window=cv.window,  # type: ignore[arg-type]
        max_train_size=cv.max_train_bars,
    )


def _check_folds(family: str, data: DirectionDataset, folds: list[Fold]) -> None:
    """Bad input fails before any fitting, naming the family, the period and the problem."""
    for fold in folds:
        classes = np.unique(data.y[fold.train])
        if len(classes) < 2:
            raise DataValidationError(
                f"{family}: fold {fold.index} ({fold.train_start} .. {fold.train_end}) has a single label class "
                f"{classes.tolist()} in its training rows"
            )


def cross_validate(
    family: str,
    data: DirectionDataset,
    folds: list[Fold],
    make_model: Callable[[], DirectionModel],
) -> tuple[pd.DataFrame, list[dict[str, float]], dict[str, float]]:
    """Out-of-fold P(up) for every test row, per-fold metrics and pooled metrics."""
    parts = []
    fold_metrics = []
    for fold in folds:
        model = make_model()
        model.fit(data, fold.train)
        p_up = model.predict_proba(data, fold.test)
        fold_metrics.append(direction_metrics(data.y[fold.test], p_up, data.fwd_return[fold.test]))
        parts.append(
            pd.DataFrame(
                {
                    "symbol": data.symbols[fold.test],
                    "decision_ts": data.decision_ts.iloc[fold.test].to_numpy(),
                    "fold": fold.index,
                    "p_up": p_up,
                    "label_up": data.y[fold.test],
                    "fwd_log_return": data.fwd_return[fold.test],
                }
            )
        )
        log.info("%s fold %d: auc %.4f", family, fold.index, fold_metrics[-1]["auc"])
    oof = pd.concat(parts, ignore_index=True)
    pooled = direction_metrics(
        oof["label_up"].to_numpy(), oof["p_up"].to_numpy(), oof["fwd_log_return"].to_numpy()
    )
    return oof, fold_metrics, pooled


# --- orchestration -----------------------------------------------------------------------------


def train_models(settings: Settings, config: TrainConfig) -> list[FamilyReport]:
    """Train, evaluate, export and register the configured families; returns one report each."""
    import mlflow

    symbols = config.symbols or settings.symbols
    config = replace(config, symbols=tuple(symbols))
    bar = pd.Timedelta(timeframe_to_timedelta(settings.timeframe))
    use_home(settings.paths)
    train_id = uuid.uuid4().hex[:12]
    common_tags = {
        "sextant.train_id": train_id,
        "sextant.config_hash": config_hash(config),
        "sextant.git_commit": git_commit(),
        "sextant.symbols": ",".join(symbols),
        "sextant.timeframe": settings.timeframe,
    }
    reports: list[FamilyReport] = []
    groups = [
        ("direction", [f for f in config.families if f in ("xgb", "lstm")]),
        ("volatility", [f for f in config.families if f == "garch"]),
    ]
    for task, families in groups:
        if not families:
            continue
        experiment_id = ensure_experiment(settings.paths, EXPERIMENTS[task])
        with mlflow.start_run(
            experiment_id=experiment_id, run_name=f"train-{train_id}", tags=common_tags
        ):
            mlflow.log_params(
                {
                    "families": ",".join(families),
                    "horizon": config.horizon,
                    **_flat("cv", asdict(config.cv)),
                }
            )
            for family in families:
                with mlflow.start_run(
                    experiment_id=experiment_id, run_name=family, nested=True, tags=common_tags
                ) as run:
                    started = time.perf_counter()
                    if family == "garch":
                        report = _train_garch(settings, config, run.info.run_id, bar)
                    else:
                        report = _train_direction(settings, config, family, run.info.run_id, bar)
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
    settings: Settings, config: TrainConfig, family: str, run_id: str, bar: pd.Timedelta
) -> FamilyReport:
    import mlflow

    service = SERVICES[family]
    data = direction_dataset(
        settings,
        service,
        config.symbols,
        start=config.start,
        end=config.end,
        horizon=config.horizon,
    )
    with _context(
        family, config.symbols, (str(data.decision_ts.min()), str(data.decision_ts.max()))
    ):
        folds = _direction_folds(data, config, bar)
        _check_folds(family, data, folds)
    family_config = _family_config(family, config)
    data_range = (str(data.decision_ts.min()), str(data.decision_ts.max()))
    mlflow.log_params(
        {
            "family": family,
            "feature_service": service,
            "n_features": len(data.features),
            "rows": len(data.y),
            **_flat(family, asdict(family_config)),
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
    mlflow.log_dict(asdict(family_config), "family_config.json")

    oof, fold_metrics, pooled = cross_validate(
        family, data, folds, lambda: _direction_model(family, config)
    )
    for fold_index, metrics in enumerate(fold_metrics):
        mlflow.log_metrics(
            {f"fold_{k}": v for k, v in metrics.items() if np.isfinite(v)}, step=fold_index
        )
    mlflow.log_metrics({f"cv_{k}": v for k, v in pooled.items() if np.isfinite(v)})
    replay = _champion_replay(settings, family, family_config, data, folds, pooled, config)
    mlflow.log_metrics({f"champion_replay_{k}": v for k, v in replay.items() if np.isfinite(v)})
    _log_frame(oof, "oof_predictions.parquet")

    final = _direction_model(family, config)
    all_rows = np.arange(len(data.y), dtype=np.intp)
    final.fit(data, all_rows)
    proto = final.to_onnx()
    held_out = folds[-1].test[-min(500, len(folds[-1].test)) :]
    parity = check_direction_parity(final, data, held_out)
    mlflow.log_metrics({"parity_max_abs_err": parity.max_abs_err})
    parity.raise_for_failure()
    one_row = final.onnx_inputs(data, held_out[-1:])
    p50, p99 = onnx_latency(proto, one_row)
    mlflow.log_metrics({"onnx_p50_ms": p50, "onnx_p99_ms": p99})
    mlflow.log_params(
        {f"final.{k}": v for k, v in final.params().items() if not isinstance(v, (dict, list))}
    )
    _log_plots_direction(family, final, oof)

    version = register_version(
        family=family,
        run_id=run_id,
        proto=proto,
        input_example=one_row,
        tags={
            "feature_service": service,
            "features": json.dumps(list(data.features)),
            "data_range": f"{data_range[0]} .. {data_range[1]}",
            "config_hash": config_hash(family_config),
            "family_config": json.dumps(asdict(family_config), default=str),
            "folds_hash": _folds_hash(data, folds),
            "git_commit": git_commit(),
            "parity_max_abs_err": f"{parity.max_abs_err:.3g}",
            "onnx_p99_ms": f"{p99:.4f}",
            "cv_metrics": json.dumps(pooled),
            "champion_replay_metrics": json.dumps(replay),
        },
    )
    return FamilyReport(
        family=family,
        run_id=run_id,
        metrics={k: float(v) for k, v in pooled.items()},
        parity={"max_abs_err": parity.max_abs_err, "n": parity.n, "passed": parity.passed},
        latency_ms={"p50": p50, "p99": p99},
        model_version=version,
        data_range=data_range,
        seconds=0.0,
    )


def _champion_replay(
    settings: Settings,
    family: str,
    family_config: Any,
    data: DirectionDataset,
    folds: list[Fold],
    pooled: dict[str, float],
    config: TrainConfig,
) -> dict[str, float]:
    """The live champion's configuration scored on these folds; {} when there is no champion."""
    incumbent = champion_config(family)
    if incumbent is None:
        return {}
    if config_hash(incumbent) == config_hash(asdict(family_config)):
        return dict(pooled)  # same configuration, same seed, same folds: the same numbers
    _, _, replayed = cross_validate(
        family, data, folds, lambda: _direction_model(family, config, incumbent)
    )
    return replayed


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

    table = calibration_table(oof["label_up"].to_numpy(), oof["p_up"].to_numpy())
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(table["mean_p"], table["frac_up"], marker="o")
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey")
    ax.set(
        xlabel="mean predicted P(up)",
        ylabel="observed frequency of up",
        title=f"{family} calibration",
    )
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
    settings: Settings, config: TrainConfig, run_id: str, bar: pd.Timedelta
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
            **_flat("garch", asdict(config.garch)),
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
    for fold_index, metrics in enumerate(evaluation.fold_metrics):
        mlflow.log_metrics(
            {f"fold_{k}": v for k, v in metrics.items() if np.isfinite(v)}, step=fold_index
        )
    mlflow.log_metrics({f"cv_{k}": v for k, v in evaluation.metrics.items() if np.isfinite(v)})
    _log_frame(evaluation.oof, "oof_predictions.parquet")
    incumbent = champion_config("garch")
    if incumbent is None:
        replay: dict[str, float] = {}
    elif config_hash(incumbent) == config_hash(asdict(config.garch)):
        replay = dict(evaluation.metrics)
    else:
        replay = evaluate(GarchConfig(**incumbent)).metrics
    mlflow.log_metrics({f"champion_replay_{k}": v for k, v in replay.items() if np.isfinite(v)})

    # parity sample: each symbol's last returns, the recursion continued from the fit's final state
    holdout = max(50, min(500, min(len(s) for s in returns.values()) // 10))
    fits = {s: GarchModel(config.garch).fit(series, origin=s) for s, series in returns.items()}
    samples = {s: series.iloc[-holdout:] for s, series in returns.items()}
    proto = garch_multi_onnx(fits)
    final_parity = garch_multi_parity(proto, fits, samples)
    mlflow.log_metrics({"parity_max_rel_err": final_parity.max_rel_err})
    final_parity.raise_for_failure()
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
    _log_plot_var(evaluation.oof)
    version = register_version(
        family="garch",
        run_id=run_id,
        proto=proto,
        input_example=one_row,
        tags={
            "feature_service": SERVICES["garch"],
            "symbols": json.dumps(sorted(fits)),
            "data_range": f"{data_range[0]} .. {data_range[1]}",
            "config_hash": config_hash(config.garch),
            "family_config": json.dumps(asdict(config.garch), default=str),
            "git_commit": git_commit(),
            "parity_max_rel_err": f"{final_parity.max_rel_err:.3g}",
            "onnx_p99_ms": f"{p99:.4f}",
            "cv_metrics": json.dumps(evaluation.metrics),
            "final_state": json.dumps({s: asdict(f.final_state) for s, f in fits.items()}),
            "champion_replay_metrics": json.dumps(replay),
        },
    )
    return FamilyReport(
        family="garch",
        run_id=run_id,
        metrics=evaluation.metrics,
        parity={
            "max_rel_err": final_parity.max_rel_err,
            "n": final_parity.n,
            "passed": final_parity.passed,
        },
        latency_ms={"p50": p50, "p99": p99},
        model_version=version,
        data_range=data_range,
        seconds=0.0,
    )


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
