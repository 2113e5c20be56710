"""GARCH as a served family: per-symbol fits in one ONNX graph, and walk-forward evaluation.

Serving feeds ``symbol_index`` (position in the model's symbol list, stored in the graph's
metadata), a return and the conditional variance before it; the graph gathers that symbol's
parameters and applies the one-step recursion of ``models.garch``. Serving runs it over each
symbol's online window of returns (`features.online.garch_variance`); `garch_window_parity`
checks, before registration, that this gives the variance filtered over the whole history.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
from onnx import TensorProto, helper, numpy_helper

from features.definitions import GARCH_WINDOW
from features.online import GARCH_VARIANCE_TOLERANCE, garch_variance
from models.cv import purged_walk_forward
from models.garch import (
    GarchConfig,
    GarchFit,
    GarchModel,
    filter_variance,
    standardized_quantile,
    value_at_risk,
)
from models.metrics import volatility_metrics
from models.onnx_garch import (
    INPUT_RETURN,
    INPUT_VARIANCE,
    OUTPUT_VARIANCE,
    PARITY_TOLERANCE,
    ParityReport,
    build_recursion_model,
    recursion_nodes,
)
from models.onnx_parity import cpu_session
from sextant.errors import DataValidationError

__all__ = [
    "INPUT_SYMBOL",
    "GarchEvaluation",
    "evaluate_garch",
    "garch_multi_onnx",
    "garch_multi_parity",
    "garch_window_parity",
    "qlike_losses",
    "rolling_variance_baseline",
    "variance_forecast_metrics",
]

INPUT_SYMBOL = "symbol_index"
BASELINE_WINDOW = 24
VAR_LEVEL = 0.99


def garch_multi_onnx(fits: Mapping[str, GarchFit]) -> onnx.ModelProto:
    """One graph for every symbol's fit: inputs symbol_index [N,1] int64, last_return, last_variance."""
    symbols = sorted(fits)
    if not symbols:
        raise DataValidationError("no GARCH fits to export")
    arrays = {
        name: np.array([getattr(fits[s].params, name) for s in symbols], dtype=np.float64)
        for name in ("mu", "omega", "alpha", "gamma", "beta")
    }
    initializers = [
        numpy_helper.from_array(values, name=f"{name}_table") for name, values in arrays.items()
    ]
    initializers += [
        numpy_helper.from_array(np.array(0.0, dtype=np.float64), name="zero"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), name="squeeze_axis"),
    ]
    nodes = [
        helper.make_node(
            "Squeeze", [INPUT_SYMBOL, "squeeze_axis"], ["symbol_flat"], name="flatten_index"
        )
    ]
    for name in arrays:
        nodes.append(
            helper.make_node(
                "Gather",
                [f"{name}_table", "symbol_flat"],
                [f"{name}_flat"],
                axis=0,
                name=f"gather_{name}",
            )
        )
        nodes.append(
            helper.make_node(
                "Unsqueeze", [f"{name}_flat", "squeeze_axis"], [name], name=f"column_{name}"
            )
        )
    nodes += recursion_nodes()
    first = fits[symbols[0]].config
    return build_recursion_model(
        "garch_one_step_multi",
        nodes,
        initializers,
        extra_inputs=[helper.make_tensor_value_info(INPUT_SYMBOL, TensorProto.INT64, ["N", 1])],
        doc="GARCH(1,1) one-step conditional variance per symbol, unscaled return units",
        props={
            "family": "garch",
            "symbols": json.dumps(symbols),
            "dist": first.dist,
            "gjr": str(first.gjr).lower(),
            "var99_quantile": json.dumps(
                {s: standardized_quantile(fits[s].params, VAR_LEVEL) for s in symbols}
            ),
            "nu": json.dumps({s: fits[s].params.nu for s in symbols}),
        },
    )


def garch_multi_parity(
    model: onnx.ModelProto,
    fits: Mapping[str, GarchFit],
    samples: Mapping[str, pd.Series],
    *,
    tolerance: float = PARITY_TOLERANCE,
) -> ParityReport:
    """ONNX against each symbol's native recursion on held-out returns continued from its final state."""
    symbols = sorted(fits)
    try:
        session = cpu_session(model)
    except Exception as exc:  # any runtime failure means the artifact cannot be served
        return _unrunnable(exc, sum(len(samples[s]) for s in symbols), tolerance)
    worst = (0.0, "", 0)
    n = 0
    for index, symbol in enumerate(symbols):
        fit = fits[symbol]
        returns = samples[symbol].to_numpy(dtype=np.float64)
        variances = filter_variance(fit.params, returns, state=fit.final_state)
        native = fit.params.next_variance(returns, variances)
        feed = {
            INPUT_SYMBOL: np.full((len(returns), 1), index, dtype=np.int64),
            INPUT_RETURN: returns.reshape(-1, 1),
            INPUT_VARIANCE: variances.reshape(-1, 1),
        }
        (out,) = session.run([OUTPUT_VARIANCE], feed)
        with np.errstate(invalid="ignore", divide="ignore"):
            rel = np.abs(np.asarray(out).reshape(-1) - native) / np.abs(native)
        rel = np.where(np.isfinite(rel), rel, math.inf)
        n += len(rel)
        if len(rel) and float(rel.max()) >= worst[0]:
            worst = (float(rel.max()), symbol, int(np.argmax(rel)))
    passed = worst[0] <= tolerance and n > 0
    verdict = "passed" if passed else "failed"
    message = (
        f"ONNX GARCH parity {verdict}: max relative error {worst[0]:.3g} over {n} rows of {len(symbols)} symbols "
        f"(tolerance {tolerance:.0e})" + ("" if passed else f"; worst: {worst[1]} row {worst[2]}")
    )
    return ParityReport(
        max_rel_err=worst[0], n=n, passed=passed, tolerance=tolerance, message=message
    )


def garch_window_parity(
    model: onnx.ModelProto,
    fits: Mapping[str, GarchFit],
    returns: Mapping[str, pd.Series],
    *,
    last: int = 500,
    window: int = GARCH_WINDOW,
    tolerance: float = GARCH_VARIANCE_TOLERANCE,
) -> ParityReport:
    """The served variance against the training side's, at each symbol's latest ``last`` bars.

    Served: the graph run over the bar's window of the last ``window`` returns
    (`features.online.garch_variance`, what serving computes from the online vector). Training
    side: the variance filtered over the symbol's whole return history, then one step. They
    differ by the window's forgotten start, beta**window times the seed's error: this checks
    that the fitted parameters forget it within ``tolerance`` (relative).
    """
    symbols = sorted(fits)
    windows, index, native, labels = [], [], [], []
    for position, symbol in enumerate(symbols):
        values = returns[symbol].to_numpy(dtype=np.float64)
        params = fits[symbol].params
        expected = params.next_variance(values, filter_variance(params, values))
        ends = np.arange(max(0, len(values) - last), len(values))
        padded = np.concatenate([np.full(window - 1, np.nan), values])
        windows.append(np.lib.stride_tricks.sliding_window_view(padded, window)[ends])
        index.append(np.full(len(ends), position, dtype=np.int64))
        native.append(expected[ends])
        labels += [(symbol, returns[symbol].index[int(i)]) for i in ends]
    n = len(labels)
    symbol_index = np.concatenate(index).reshape(-1, 1)
    try:
        session = cpu_session(model)

        def step(
            last_return: npt.NDArray[np.float64], last_variance: npt.NDArray[np.float64]
        ) -> npt.ArrayLike:
            feed = {
                INPUT_SYMBOL: symbol_index,
                INPUT_RETURN: last_return,
                INPUT_VARIANCE: last_variance,
            }
            (next_variance,) = session.run([OUTPUT_VARIANCE], feed)
            return np.asarray(next_variance, dtype=np.float64)

        served = garch_variance(step, np.vstack(windows))
    except Exception as exc:  # any runtime failure means the artifact cannot be served
        return _unrunnable(exc, n, tolerance)
    reference = np.concatenate(native)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(served - reference) / np.abs(reference)
    rel = np.where(np.isfinite(rel), rel, math.inf)
    worst = int(np.argmax(rel)) if n else 0
    max_rel = float(rel[worst]) if n else math.inf
    passed = n > 0 and max_rel <= tolerance
    verdict = "passed" if passed else "failed"
    where = f"; worst: {labels[worst][0]} at {labels[worst][1]}" if n and not passed else ""
    message = (
        f"GARCH online-window parity {verdict}: max relative error {max_rel:.3g} between the "
        f"variance recomputed from {window}-return windows and the whole-history filter over "
        f"{n} bars of {len(symbols)} symbols (tolerance {tolerance:.0e}){where}"
    )
    return ParityReport(
        max_rel_err=max_rel, n=n, passed=passed, tolerance=tolerance, message=message
    )


def _unrunnable(exc: Exception, n: int, tolerance: float) -> ParityReport:
    return ParityReport(
        max_rel_err=math.inf,
        n=n,
        passed=False,
        tolerance=tolerance,
        message=f"ONNX GARCH parity failed: onnxruntime could not run the graph: {exc}",
    )


def rolling_variance_baseline(
    returns: pd.Series, window: int = BASELINE_WINDOW
) -> npt.NDArray[np.float64]:
    """Naive forecast of each bar's variance: mean squared return of the previous ``window`` bars."""
    squared = returns.to_numpy(dtype=np.float64) ** 2
    baseline = pd.Series(squared).rolling(window, min_periods=window).mean().shift(1)
    return baseline.to_numpy(dtype=np.float64)


@dataclass(frozen=True, eq=False)
class GarchEvaluation:
    """Out-of-fold variance forecasts (and the naive baseline) with per-fold and pooled metrics."""

    oof: pd.DataFrame  # symbol, ts, fold, ret, forecast_var, baseline_var, var99, var_quantile
    fold_metrics: list[dict[str, float]]
    metrics: dict[str, float]
    fit_ts: pd.Series  # the first and last return any fold model was fitted on


def evaluate_garch(
    returns: Mapping[str, pd.Series],
    config: GarchConfig,
    *,
    n_splits: int,
    min_train_bars: int,
    embargo: pd.Timedelta,
    bar: pd.Timedelta,
    window: str = "expanding",
    max_train_bars: int | None = None,
) -> GarchEvaluation:
    """Purged walk-forward per symbol: fit on each training block, forecast its test block."""
    rows = []
    fitted: list[pd.Timestamp] = []
    for symbol, series in sorted(returns.items()):
        ts = pd.Series(series.index, dtype="datetime64[ns, UTC]")
        folds = purged_walk_forward(
            ts,
            ts + bar,  # the target (the next squared return) is known one bar later
            n_splits=n_splits,
            min_train_size=min_train_bars,
            embargo=embargo,
            min_embargo=bar,
            window=window,  # type: ignore[arg-type]
            max_train_size=max_train_bars,
        )
        values = series.to_numpy(dtype=np.float64)
        baseline = rolling_variance_baseline(series)
        for fold in folds:
            fit = GarchModel(config).fit(
                series.iloc[fold.train], origin=f"{symbol} fold {fold.index}"
            )
            last_train = int(fold.train.max())
            fitted += [ts.iloc[int(fold.train.min())], ts.iloc[last_train]]
            ahead = values[last_train + 1 : int(fold.test.max()) + 1]
            forecast = filter_variance(fit.params, ahead, state=fit.final_state)
            positions = fold.test - (last_train + 1)
            test_var = forecast[positions]
            var99 = value_at_risk(fit.params, VAR_LEVEL, test_var)
            rows.append(
                pd.DataFrame(
                    {
                        "symbol": symbol,
                        "ts": ts.iloc[fold.test].to_numpy(),
                        "fold": fold.index,
                        "ret": values[fold.test],
                        "forecast_var": test_var,
                        "baseline_var": baseline[fold.test],
                        "var99": var99,
                        # the fold's own innovation quantile: what a decision at the time could use
                        "var_quantile": standardized_quantile(fit.params, VAR_LEVEL),
                    }
                )
            )
    oof = pd.concat(rows, ignore_index=True)
    fold_metrics = [variance_forecast_metrics(group) for _, group in oof.groupby("fold", sort=True)]
    return GarchEvaluation(
        oof=oof,
        fold_metrics=fold_metrics,
        metrics=variance_forecast_metrics(oof),
        fit_ts=pd.Series(fitted, dtype="datetime64[ns, UTC]"),
    )


def qlike_losses(frame: pd.DataFrame, column: str) -> npt.NDArray[np.float64]:
    """Per-row QLIKE loss ``log(f) + r² / f`` of the variance forecast in ``column``."""
    forecast = frame[column].to_numpy(dtype=np.float64)
    realized = frame["ret"].to_numpy(dtype=np.float64) ** 2
    losses: npt.NDArray[np.float64] = np.log(forecast) + realized / forecast
    return losses


def variance_forecast_metrics(frame: pd.DataFrame) -> dict[str, float]:
    """QLIKE, MSE and VaR backtests of ``forecast_var``; the rolling baseline's QLIKE on its rows."""
    metrics = volatility_metrics(
        frame["ret"].to_numpy(dtype=np.float64),
        frame["forecast_var"].to_numpy(dtype=np.float64),
        frame["var99"].to_numpy(dtype=np.float64),
    )
    usable = frame["baseline_var"].notna() & (frame["baseline_var"] > 0)
    base = volatility_metrics(
        frame.loc[usable, "ret"].to_numpy(dtype=np.float64),
        frame.loc[usable, "baseline_var"].to_numpy(dtype=np.float64),
        frame.loc[usable, "var99"].to_numpy(dtype=np.float64),
    )
    same_rows = volatility_metrics(
        frame.loc[usable, "ret"].to_numpy(dtype=np.float64),
        frame.loc[usable, "forecast_var"].to_numpy(dtype=np.float64),
        frame.loc[usable, "var99"].to_numpy(dtype=np.float64),
    )
    out = {k: float(v) for k, v in metrics.items()}
    out["baseline_qlike"] = float(base["qlike"])
    out["qlike_vs_baseline_rows"] = float(same_rows["qlike"])
    return out
