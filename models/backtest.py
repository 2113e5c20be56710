"""`sextant backtest`: replay the decision engine over out-of-fold predictions, honestly.

Inputs: the out-of-fold predictions of each family's **champion** (a family without one is
absent, as it is for the live path, and the report says so), the simple past-return baseline's
calibrated predictions, the TA features of the feature tables, candles and perpetual funding
from the market store. The evaluation protocol (docs/models.md) splits the predictions at the
reported start, the latest of the champions' own reported starts: fuser settings are chosen on
the selection span before it, every strategy (the simple baseline among them) is reported on the
reported span after it, which took part in no choice of model, baseline or setting. The deflated
Sharpe ratio counts every configuration tried on the selection span: direction model candidates
and baseline candidates times fuser settings. Results go to MLflow (`sextant-backtest`) and an
HTML/PNG report.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.build import choose_candle_source, view_path
from features.compute import perp_symbol
from features.definitions import FEATURE_VIEWS, Kind
from features.ingest.store import MarketStore
from models.baselines import baseline_candidates
from models.spans import EvaluationSpans
from models.tracking import EXPERIMENTS, Tracking, git_commit
from sextant.backtest.engine import (
    BacktestInputs,
    BacktestResult,
    run_backtest,
    run_buy_and_hold,
    run_strategies,
)
from sextant.backtest.metrics import performance_metrics
from sextant.backtest.report import ReportPaths, write_report
from sextant.config import config_hash
from sextant.contracts import CHAMPION, DIRECTION_FAMILIES, REGISTERED_MODELS, ModelTag
from sextant.decision._kernels import FEATURES_USED
from sextant.decision.config import (
    DecisionConfig,
    FuserConfig,
    FuserMode,
    RiskConfig,
    SizingConfig,
)
from sextant.errors import ConfigError, DataValidationError
from sextant.execution import ExecutionConfig
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["SELECTION_GRID", "BacktestReport", "load_backtest_frames", "run_backtest_study"]

log = logging.getLogger(__name__)

MODES: tuple[FuserMode, ...] = ("weighted", "agreement", "ml_gated")
THRESHOLDS = (0.1, 0.2, 0.3)
SELECTION_GRID = tuple((m, t) for m in MODES for t in THRESHOLDS)
# reliability figures of a direction champion that the backtest report repeats
RELIABILITY = ("brier", "log_loss", "ece")


@dataclass(slots=True)
class BacktestReport:
    """What one backtest study produced."""

    run_id: str
    periods: dict[str, str]
    chosen: dict[str, Any]
    trials: list[dict[str, Any]]
    metrics: dict[str, dict[str, float]]
    rejections: dict[str, int]
    model_versions: dict[str, str]
    report_html: str
    trial_count: dict[str, int]
    absent: list[str]  # families without a champion, left out as the live path leaves them
    size_binding: dict[str, dict[str, int]]  # per strategy: how often each sizing cap bound

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "periods": self.periods,
            "chosen": self.chosen,
            "trials": self.trials,
            "metrics": self.metrics,
            "rejections": self.rejections,
            "model_versions": self.model_versions,
            "report_html": self.report_html,
            "trial_count": self.trial_count,
            "absent": self.absent,
            "size_binding": self.size_binding,
        }


@dataclass(frozen=True)
class _Reported:
    """What the report needs of one strategy: equity, positions (notional per symbol), metrics."""

    equity: pd.Series
    positions: pd.DataFrame
    metrics: dict[str, float]


@dataclass(frozen=True)
class _Predictions:
    """One family's out-of-fold predictions, the version they come from and its spans."""

    frame: pd.DataFrame
    version: str
    spans: EvaluationSpans
    baseline: str  # the simple baseline that run chose ("" for GARCH)
    reported: dict[str, float]  # the version's own reported-span metrics (calibration figures)
    baseline_reported: dict[str, float]  # the same of its simple baseline


def _champion_predictions(tracking: Tracking, family: str) -> _Predictions | None:
    """Out-of-fold predictions of the family's champion; None when it has no champion."""
    version = tracking.alias_version(REGISTERED_MODELS[family], CHAMPION)
    if version is None:
        return None
    return _predictions_of(tracking, version, f"{version.version} ({CHAMPION})")


def _predictions_of(tracking: Tracking, version: Any, label: str) -> _Predictions | None:
    spans = EvaluationSpans.from_tags(version.tags)
    if spans is None:  # registered before the evaluation protocol: no selection span to respect
        log.warning("%s version %s has no evaluation spans: retrain it", version.name, label)
        return None
    path = tracking.download(run_id=version.run_id, path="oof_predictions.parquet")
    recorded = json.loads(version.tags.get(ModelTag.BASELINE, "{}"))
    reported = json.loads(version.tags.get(ModelTag.REPORTED_METRICS, "{}"))
    return _Predictions(
        pd.read_parquet(path),
        label,
        spans,
        str(recorded.get("name", "")),
        reported,
        recorded.get("reported", {}),
    )


def _baseline_predictions(
    tracking: Tracking, champions: dict[str, _Predictions]
) -> _Predictions | None:
    """The simple baseline's predictions: from a direction champion's run, else the latest run.

    The baseline is not a model choice (its lag was chosen on that run's selection span), so a
    challenger's run serves when no direction family has a champion.
    """
    for family in DIRECTION_FAMILIES:
        if family in champions:
            return champions[family]
    latest = []
    for family in DIRECTION_FAMILIES:
        versions = tracking.client.search_model_versions(f"name='{REGISTERED_MODELS[family]}'")
        latest += [v for v in versions if EvaluationSpans.from_tags(v.tags) is not None]
    if not latest:
        return None
    newest = max(latest, key=lambda v: int(v.creation_timestamp))
    return _predictions_of(tracking, newest, f"{newest.name} {newest.version}")


def direction_candidates(tracking: Tracking) -> int:
    """How many direction models were ever compared on a selection span (every registered version)."""
    return sum(
        len(tracking.client.search_model_versions(f"name='{REGISTERED_MODELS[family]}'"))
        for family in DIRECTION_FAMILIES
    )


@dataclass(frozen=True)
class BacktestSources:
    """What the frames were built from: versions used, families absent, the reported start."""

    versions: dict[str, str]
    # reliability on the reported span of each probability traded: direction champions, baseline
    calibration: dict[str, dict[str, float]]
    spans: dict[str, EvaluationSpans]  # each source's four spans (champions, baseline's run)
    absent: tuple[str, ...]
    reported_start: pd.Timestamp
    baseline: str


def load_backtest_frames(
    settings: Settings,
    tracking: Tracking,
    symbols: Sequence[str],
    start: datetime | None,
    end: datetime | None,
) -> tuple[dict[str, pd.DataFrame], BacktestSources]:
    """Per symbol, a frame indexed by bar open with prices, TA features, OOF outputs and funding.

    The predictions are the champions' (and the simple baseline's) in ``tracking``'s registry.
    """
    bar = pd.Timedelta(timeframe_to_timedelta(settings.timeframe))
    champions = {
        family: found
        for family in ("xgb", "lstm", "garch")
        if (found := _champion_predictions(tracking, family)) is not None
    }
    baseline = _baseline_predictions(tracking, champions)
    if baseline is None:
        raise DataValidationError(
            "no out-of-fold predictions of xgb or lstm: run `sextant train` first"
        )
    used = [*champions.values(), baseline]
    # the reported span starts where every source's own reported span has started
    reported_start = max(pd.Timestamp(p.spans.reported_start) for p in used)
    oof = {family: p.frame for family, p in champions.items()}
    ta = pd.read_parquet(view_path(settings.paths.features_dir, FEATURE_VIEWS[Kind.TA]))
    frames: dict[str, pd.DataFrame] = {}
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol in symbols:
            source = choose_candle_source(store, symbol, settings.timeframe, settings.candle_source)
            candles = store.candles(symbol, settings.timeframe, source=source)
            frame = candles[["open", "high", "low", "close", "volume"]].astype(np.float64)
            frame.index = pd.DatetimeIndex(candles["event_ts"]).tz_convert("UTC").as_unit("ns")
            rows = ta[ta["symbol"] == symbol]
            features = rows[list(FEATURES_USED)].set_axis(
                pd.DatetimeIndex(rows["event_ts"]).tz_convert("UTC").as_unit("ns"), axis=0
            )
            frame = frame.join(features, how="left")
            index = pd.DatetimeIndex(frame.index)
            for family, column in (("xgb", "p_xgb"), ("lstm", "p_lstm")):
                frame[column] = _by_open(
                    oof.get(family), symbol, "decision_ts", "p_up", -bar, index
                )
            frame["p_baseline"] = _by_open(
                baseline.frame, symbol, "decision_ts", "p_baseline", -bar, index
            )
            # the variance forecast for the bar after a decision is the OOF row one bar later
            frame["garch_variance"] = _by_open(
                oof.get("garch"), symbol, "ts", "forecast_var", -2 * bar, index
            )
            frame["var_quantile"] = _by_open(
                oof.get("garch"), symbol, "ts", "var_quantile", -2 * bar, index
            )
            frame["funding_rate"] = _funding(store, symbol, settings.timeframe, index)
            if start is not None:
                frame = frame[frame.index >= pd.Timestamp(start)]
            if end is not None:
                frame = frame[frame.index <= pd.Timestamp(end)]
            frames[symbol] = frame
    sources = BacktestSources(
        versions={family: p.version for family, p in champions.items()},
        calibration={
            **{
                family: _reliability(p.reported)
                for family, p in champions.items()
                if family != "garch"
            },
            "simple_baseline": _reliability(baseline.baseline_reported),
        },
        spans={
            **{family: p.spans for family, p in champions.items()},
            "simple_baseline": baseline.spans,
        },
        absent=tuple(f for f in ("xgb", "lstm", "garch") if f not in champions),
        # a decision at a bar's close is made at the next bar's open in these frames' index
        reported_start=reported_start - bar,
        baseline=f"{baseline.baseline} (calibrated, from {baseline.version})",
    )
    return frames, sources


def _reliability(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(metrics[k]) for k in RELIABILITY if k in metrics}


def _funding(
    store: MarketStore, symbol: str, timeframe: str, index: pd.DatetimeIndex
) -> npt.NDArray[np.float64]:
    """Funding rate charged at each bar (the sum of settlements within it), 0 without any."""
    funding = store.query(
        "SELECT event_ts, any_value(funding_rate ORDER BY source) AS rate FROM funding_rates "
        "WHERE symbol = ? GROUP BY event_ts",
        [perp_symbol(symbol)],
    )
    settle = funding["event_ts"].dt.tz_convert("UTC").dt.floor(timeframe.replace("m", "min"))
    rates = (
        pd.Series(funding["rate"].to_numpy(), index=settle.dt.as_unit("ns")).groupby(level=0).sum()
    )
    values: npt.NDArray[np.float64] = rates.reindex(index).fillna(0.0).to_numpy(dtype=np.float64)
    return values


def _by_open(
    oof: pd.DataFrame | None,
    symbol: str,
    ts_column: str,
    value: str,
    shift: pd.Timedelta,
    index: pd.DatetimeIndex,
) -> np.ndarray:
    if oof is None or value not in oof.columns:  # no such family, or predictions of an older format
        return np.full(len(index), np.nan)
    rows = oof[oof["symbol"] == symbol]
    stamps = pd.to_datetime(rows[ts_column], utc=True).dt.as_unit("ns") + shift
    series = pd.Series(rows[value].to_numpy(dtype=np.float64), index=stamps.to_numpy())
    series = series[~series.index.duplicated()]
    return series.reindex(index).to_numpy(dtype=np.float64)


def _prediction_span(frames: dict[str, pd.DataFrame]) -> tuple[pd.Timestamp, pd.Timestamp]:
    covered = [f.index[f["p_baseline"].notna()] for f in frames.values()]
    if any(len(c) == 0 for c in covered):
        spans = [
            f"{s} {f.index.min()} .. {f.index.max()}" if len(f) else f"{s} (no bars in range)"
            for (s, f), c in zip(frames.items(), covered, strict=True)
            if len(c) == 0
        ]
        raise DataValidationError(
            f"no out-of-fold predictions for {'; '.join(spans)}: train the models over a period that covers it"
        )
    return max(c.min() for c in covered), min(c.max() for c in covered)


def _window(
    frames: dict[str, pd.DataFrame], first: pd.Timestamp, last: pd.Timestamp
) -> dict[str, pd.DataFrame]:
    return {s: f[(f.index >= first) & (f.index <= last)] for s, f in frames.items()}


def _sharpe(result: BacktestResult, bars_per_year: float) -> float:
    returns = result.equity.pct_change().dropna().to_numpy()
    if len(returns) < 2 or returns.std(ddof=1) == 0:
        return 0.0
    return float(returns.mean() / returns.std(ddof=1) * np.sqrt(bars_per_year))


def run_backtest_study(
    settings: Settings,
    tracking: Tracking,
    *,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    fuser_mode: str | None = None,
    base: DecisionConfig | None = None,
    execution: ExecutionConfig | None = None,
) -> BacktestReport:
    """Select fuser settings on the selection span, report every strategy on the reported span.

    Champions and predictions are read from ``tracking``, and the study is logged there.
    ``base`` must size for the settings' timeframe (its default does).
    """
    chosen_symbols = tuple(symbols or settings.symbols)
    # The live gate keeps a drawdown halt until a person resets it; a replay has no person, so a
    # halt lifts after a week (fixed here, never tuned on the reported period).
    base = base or DecisionConfig(
        sizing=SizingConfig(timeframe=settings.timeframe), risk=RiskConfig(halt_reset_days=7)
    )
    if base.sizing.timeframe != settings.timeframe:
        raise ConfigError(
            f"DecisionConfig.sizing.timeframe {base.sizing.timeframe!r} differs from the "
            f"settings' timeframe {settings.timeframe!r}: sizing would annualize the wrong bars"
        )
    execution = execution or ExecutionConfig()
    bar = pd.Timedelta(timeframe_to_timedelta(settings.timeframe))
    bars_per_year = base.sizing.bars_per_year
    frames, sources = load_backtest_frames(settings, tracking, chosen_symbols, start, end)
    first, last = _prediction_span(frames)
    cut = sources.reported_start
    if not first < cut <= last:
        raise DataValidationError(
            f"predictions {first} .. {last} do not hold both a selection span and the reported span "
            f"starting {cut}: widen --start/--end around it"
        )
    selection = BacktestInputs.from_frames(_window(frames, first, cut - bar), settings.timeframe)
    reported = BacktestInputs.from_frames(_window(frames, cut, last), settings.timeframe)
    periods = {
        "selection (fuser mode and entry threshold chosen here)": f"{selection.index[0]} .. {selection.index[-1]}",
        "reported (every figure below)": f"{reported.index[0]} .. {reported.index[-1]}",
    }

    grid = [(m, t) for m, t in SELECTION_GRID if fuser_mode is None or m == fuser_mode]
    if not grid:
        raise DataValidationError(f"unknown fuser mode {fuser_mode!r}; known: {', '.join(MODES)}")
    has_ml = any(family in sources.versions for family in DIRECTION_FAMILIES)
    primary = "fused" if has_ml else "simple_baseline"
    if has_ml:
        trials, best_fuser = _select_fuser(selection, base, execution, grid, bars_per_year)
        config = base.replace(fuser=best_fuser)
        results = run_strategies(reported, config, execution)
    else:  # no direction champion: the ML and fused strategies have nothing to trade
        trials, config = [], base
        results = {
            "buy_and_hold": run_buy_and_hold(reported, execution),
            "ta_only": run_backtest(reported, base.ta_only(), execution, strategy="ta_only"),
        }
    baseline_inputs = BacktestInputs.from_frames(
        _window(_as_baseline(frames), cut, last), settings.timeframe
    )
    results["simple_baseline"] = run_backtest(
        baseline_inputs, config.ml_only(), execution, strategy="ml_only"
    )
    model_candidates = direction_candidates(tracking) + len(baseline_candidates())
    n_trials = model_candidates * len(grid) if has_ml else len(baseline_candidates())
    # what each strategy's deflated Sharpe ratio counts: the fused strategy every model and
    # baseline candidate with every fuser setting, the baseline its own candidates
    strategy_trials = {"fused": n_trials, "simple_baseline": len(baseline_candidates())}
    trial_sharpes = np.array([t["sharpe"] for t in trials])
    metrics = {
        name: performance_metrics(
            result.equity,
            trades=result.trades,
            positions=result.position_value,
            bars_per_year=bars_per_year,
            n_trials=strategy_trials.get(name, 1),
            trial_sharpes=trial_sharpes if name == "fused" and len(trials) > 1 else None,
        )
        for name, result in results.items()
    }
    chosen = {"mode": config.fuser.mode, "entry_threshold": config.fuser.entry_threshold}
    trial_count = {
        "direction_model_candidates": model_candidates - len(baseline_candidates()),
        "baseline_candidates": len(baseline_candidates()),
        "fuser_settings": len(grid) if has_ml else 0,
        "n_trials": n_trials,
    }
    rejections = results[primary].rejections
    binding = {
        name: result.size_binding_counts()
        for name, result in results.items()
        if name != "buy_and_hold"
    }
    notes = _study_notes(sources, trials, chosen, trial_count, binding)
    study_id = uuid.uuid4().hex[:12]
    out_dir = settings.paths.reports_dir / f"backtest-{study_id}"
    paths: ReportPaths = write_report(
        out_dir,
        title=f"sextant backtest {study_id}: {', '.join(chosen_symbols)}",
        strategies={
            name: _Reported(result.equity, result.position_value, metrics[name])
            for name, result in results.items()
        },
        rejections=rejections,
        periods=periods,
        notes=notes,
        primary=primary,
    )
    run_id = _log_study(
        tracking,
        study_id,
        chosen_symbols,
        sources,
        periods,
        chosen,
        trials,
        trial_count,
        metrics,
        rejections,
        binding,
        config,
        execution,
        out_dir,
    )
    return BacktestReport(
        run_id=run_id,
        periods=periods,
        chosen=chosen,
        trials=trials,
        metrics=metrics,
        rejections=rejections,
        model_versions=sources.versions,
        report_html=str(Path(paths.html)),
        trial_count=trial_count,
        absent=list(sources.absent),
        size_binding=binding,
    )


def _study_notes(
    sources: BacktestSources,
    trials: list[dict[str, Any]],
    chosen: dict[str, Any],
    trial_count: dict[str, int],
    binding: dict[str, dict[str, int]],
) -> list[str]:
    """The report's notes: sources and absent families, calibration, choices, trials, sizing."""
    if trials:
        best = max(t["sharpe"] for t in trials)
        choice = (
            f"Fuser settings tried on the selection period: {len(trials)}; chosen: mode "
            f"{chosen['mode']}, entry threshold {chosen['entry_threshold']} (selection Sharpe {best:.3f})."
        )
        counted = (
            f"Deflated Sharpe ratio trials: {trial_count['n_trials']} = "
            f"({trial_count['direction_model_candidates']} direction model candidates + "
            f"{trial_count['baseline_candidates']} baseline candidates) x "
            f"{trial_count['fuser_settings']} fuser settings."
        )
    else:
        choice = (
            "No direction champion: the ML-only and fused strategies are not run and no fuser "
            "setting is chosen; the simple baseline is the primary strategy."
        )
        counted = (
            f"Deflated Sharpe ratio trials: {trial_count['n_trials']} (the simple baseline's "
            "candidates; no fuser setting was chosen)."
        )
    versions = ", ".join(f"{k} {v}" for k, v in sources.versions.items()) or "none"
    return [
        f"Models (champions only): {versions}; predictions are out-of-fold only.",
        *(
            f"{family}: no champion, so it is absent here as in the live path"
            + (" (no volatility forecast: no position is sized)" if family == "garch" else "")
            + "."
            for family in sources.absent
        ),
        *(
            f"{family} calibration on its reported span: "
            + ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
            + "."
            for family, figures in sources.calibration.items()
        ),
        f"Simple baseline strategy: {sources.baseline}, traded ML-only with the chosen settings.",
        *(
            f"{name} spans: train {s.train}; calibration {s.calibration}; selection "
            f"{s.selection}; reported {s.reported}."
            for name, s in sources.spans.items()
        ),
        choice,
        counted,
        "Decisions at bar close, fills at the next bar's open; taker/maker fees, volatility- and "
        "size-dependent slippage, perpetual funding at settlements, stops before targets when both "
        "touch in one bar.",
        "Which sizing cap set the entry size (decisions with a direction): "
        + "; ".join(
            f"{name} " + ", ".join(f"{cap} {count}" for cap, count in counts.items())
            for name, counts in binding.items()
        )
        + ".",
    ]


def _select_fuser(
    selection: BacktestInputs,
    base: DecisionConfig,
    execution: ExecutionConfig,
    grid: list[tuple[FuserMode, float]],
    bars_per_year: float,
) -> tuple[list[dict[str, Any]], FuserConfig]:
    """Every fuser setting's Sharpe on the selection span, and the best setting."""
    trials: list[dict[str, Any]] = []
    best_sharpe, best_fuser = -np.inf, base.fuser
    for mode, threshold in grid:
        fuser = base.fuser.replace(mode=mode, entry_threshold=threshold)
        result = run_backtest(selection, base.replace(fuser=fuser), execution, strategy="fused")
        sharpe = _sharpe(result, bars_per_year)
        trials.append({"mode": mode, "entry_threshold": threshold, "sharpe": sharpe})
        if sharpe > best_sharpe:
            best_sharpe, best_fuser = sharpe, fuser
    return trials, best_fuser


def _as_baseline(frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames with the simple baseline's probability as the only ML input."""
    return {s: f.assign(p_xgb=f["p_baseline"], p_lstm=np.nan) for s, f in frames.items()}


def _log_study(
    tracking: Tracking,
    study_id: str,
    symbols: tuple[str, ...],
    sources: BacktestSources,
    periods: dict[str, str],
    chosen: dict[str, Any],
    trials: list[dict[str, Any]],
    trial_count: dict[str, int],
    metrics: dict[str, dict[str, float]],
    rejections: dict[str, int],
    binding: dict[str, dict[str, int]],
    config: DecisionConfig,
    execution: ExecutionConfig,
    out_dir: Path,
) -> str:
    """One MLflow run in ``sextant-backtest`` with everything the report shows; returns its id."""
    import mlflow

    experiment_id = tracking.experiment_id(EXPERIMENTS["backtest"])
    with (
        tracking.fluent(),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"backtest-{study_id}") as run,
    ):
        mlflow.set_tags(
            {
                "sextant.git_commit": git_commit(),
                "sextant.symbols": ",".join(symbols),
                "sextant.model_versions": json.dumps(sources.versions),
                "sextant.absent_families": ",".join(sources.absent),
                "sextant.simple_baseline": sources.baseline,
                **{
                    f"sextant.spans.{name}": json.dumps(spans.to_json())
                    for name, spans in sources.spans.items()
                },
                "sextant.config_hash": config_hash({"decision": config, "execution": execution}),
                # what each decision record of this configuration carries
                "sextant.decision_config_hash": config.config_hash(),
                **{f"sextant.period.{k.split(' ')[0]}": v for k, v in periods.items()},
            }
        )
        mlflow.log_params(
            {
                "fuser_mode": chosen["mode"],
                "entry_threshold": chosen["entry_threshold"],
                **trial_count,
            }
        )
        mlflow.log_params({f"execution.{k}": v for k, v in execution.as_dict().items()})
        for name, values in metrics.items():
            mlflow.log_metrics(
                {f"{name}.{k}": float(v) for k, v in values.items() if np.isfinite(v)}
            )
        mlflow.log_metrics({f"rejections.{k}": float(v) for k, v in rejections.items()})
        mlflow.log_metrics(
            {
                f"calibration.{family}.{k}": v
                for family, figures in sources.calibration.items()
                for k, v in figures.items()
            }
        )
        mlflow.log_metrics(
            {
                f"size_binding.{name}.{cap}": float(count)
                for name, counts in binding.items()
                for cap, count in counts.items()
            }
        )
        mlflow.log_dict({"trials": trials, **trial_count}, "selection_trials.json")
        mlflow.log_dict(config.model_dump(mode="json"), "decision_config.json")
        mlflow.log_artifacts(str(out_dir), artifact_path="report")
        return str(run.info.run_id)
