"""Out-of-fold evaluation of a direction family under the four-span protocol (`models/spans.py`).

Per walk-forward fold: the model is fitted on the training block minus its calibration tail, the
calibrator on the model's predictions for that tail, and the fold's test block is scored with
both. The simple baseline and the incumbent champion's configuration are scored on the very
same rows, the baseline calibrated on the same tails. The out-of-fold rows are then labelled
selection / reported / purged, and every figure is computed per span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from models.baselines import PastReturnBaseline, choose_baseline
from models.calibration import (
    CalibrationMethod,
    Calibrator,
    fit_calibrator,
    split_calibration_tail,
)
from models.cv import Fold
from models.metrics import direction_metrics
from models.protocol import DirectionDataset, DirectionModel, IndexArray
from models.spans import (
    REPORTED,
    SELECTION,
    SPAN_COLUMN,
    EvaluationSpans,
    find_reported_start,
    label_spans,
)

__all__ = ["CalibratedFold", "DirectionEvaluation", "evaluate_direction", "split_folds"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CalibratedFold:
    """One fold's rows: fit the model on ``fit``, its calibrator on ``calibration``, score ``test``."""

    index: int
    fit: IndexArray
    calibration: IndexArray
    test: IndexArray


@dataclass(frozen=True)
class DirectionEvaluation:
    """What the out-of-fold evaluation of one direction family produced."""

    oof: pd.DataFrame
    spans: EvaluationSpans
    baseline: PastReturnBaseline
    baseline_candidates: dict[str, float]  # AUC of every candidate on the selection span
    metrics: dict[str, dict[str, float]]  # per span: the model's (calibrated) metrics
    raw_metrics: dict[str, dict[str, float]]  # per span: before calibration
    baseline_metrics: dict[str, dict[str, float]]  # per span
    champion_metrics: dict[str, dict[str, float]]  # per span; {} without a champion
    fold_metrics: list[dict[str, float]]

    def flat_metrics(self) -> dict[str, float]:
        """``<span>_<metric>``, ``raw_<span>_…``, ``baseline_<span>_…``, ``champion_<span>_…``."""
        out: dict[str, float] = {}
        for prefix, table in (
            ("", self.metrics),
            ("raw_", self.raw_metrics),
            ("baseline_", self.baseline_metrics),
            ("champion_", self.champion_metrics),
        ):
            for span, values in table.items():
                out.update({f"{prefix}{span}_{k}": float(v) for k, v in values.items()})
        return out


def split_folds(
    data: DirectionDataset, folds: list[Fold], fraction: float, min_rows: int
) -> list[CalibratedFold]:
    """Each fold's training block split into fit rows and a purged calibration tail."""
    out = []
    for fold in folds:
        fit, calibration = split_calibration_tail(
            fold.train, data.decision_ts, data.label_end_ts, fraction, min_rows=min_rows
        )
        out.append(CalibratedFold(fold.index, fit, calibration, fold.test))
    return out


def _score_folds(
    data: DirectionDataset,
    folds: list[CalibratedFold],
    make_model: Callable[[], DirectionModel],
    method: CalibrationMethod,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Raw and calibrated P(up) for every test row, in the order of the folds' test rows."""
    raw, calibrated = [], []
    for fold in folds:
        model = make_model()
        model.fit(data, fold.fit)
        calibrator = fit_calibrator(
            model.predict_proba(data, fold.calibration), data.y[fold.calibration], method
        )
        p_raw = model.predict_proba(data, fold.test)
        raw.append(p_raw)
        calibrated.append(calibrator.apply(p_raw))
    return np.concatenate(raw), np.concatenate(calibrated)


def _calibrate_scores(
    scores: npt.NDArray[np.float64],
    y: npt.NDArray[np.int64],
    folds: list[CalibratedFold],
    method: CalibrationMethod,
) -> npt.NDArray[np.float64]:
    """A parameter-free score calibrated per fold on that fold's calibration tail."""
    parts = []
    for fold in folds:
        # a monotone map into (0, 1) scaled on the calibration rows, so the calibrator (Platt on
        # the logit) sees the score in units of its own spread and nothing saturates
        spread = float(np.std(scores[fold.calibration])) or 1.0
        calibrator: Calibrator = fit_calibrator(
            _sigmoid(scores[fold.calibration] / spread), y[fold.calibration], method
        )
        parts.append(calibrator.apply(_sigmoid(scores[fold.test] / spread)))
    return np.concatenate(parts)


def _sigmoid(z: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    out: npt.NDArray[np.float64] = 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))
    return out


def _per_span(
    oof: pd.DataFrame, column: str, spans: tuple[str, ...] = (SELECTION, REPORTED)
) -> dict[str, dict[str, float]]:
    out = {}
    for span in spans:
        rows = oof[oof[SPAN_COLUMN] == span]
        out[span] = direction_metrics(
            rows["label_up"].to_numpy(), rows[column].to_numpy(), rows["fwd_log_return"].to_numpy()
        )
    return out


def evaluate_direction(
    family: str,
    data: DirectionDataset,
    folds: list[CalibratedFold],
    make_model: Callable[[], DirectionModel],
    *,
    make_champion: Callable[[], DirectionModel] | None,
    calibration_method: CalibrationMethod,
    reported_fraction: float,
) -> DirectionEvaluation:
    """Score the family, its champion's configuration and the baseline on the same rows, per span.

    ``make_champion`` is None without a champion, and ``make_model`` itself when the champion has
    the challenger's configuration (then its predictions are the challenger's, not recomputed).
    """
    test_rows = np.concatenate([f.test for f in folds])
    p_raw, p_up = _score_folds(data, folds, make_model, calibration_method)
    oof = pd.DataFrame(
        {
            "symbol": data.symbols[test_rows],
            "decision_ts": data.decision_ts.iloc[test_rows].to_numpy(),
            "label_end_ts": data.label_end_ts.iloc[test_rows].to_numpy(),
            "fold": np.concatenate([np.full(len(f.test), f.index) for f in folds]),
            "p_raw": p_raw,
            "p_up": p_up,
            "label_up": data.y[test_rows],
            "fwd_log_return": data.fwd_return[test_rows],
        }
    )
    start = find_reported_start(oof["decision_ts"], reported_fraction)
    oof[SPAN_COLUMN] = label_spans(oof["decision_ts"], oof["label_end_ts"], start)

    selection = (oof[SPAN_COLUMN] == SELECTION).to_numpy()
    baseline, candidates = choose_baseline(
        data.frame.iloc[test_rows].reset_index(drop=True), oof["label_up"].to_numpy(), selection
    )
    scores = baseline.score(data.frame)
    oof["baseline_score"] = scores[test_rows]
    oof["p_baseline"] = _calibrate_scores(scores, data.y, folds, calibration_method)

    champion_metrics: dict[str, dict[str, float]] = {}
    if make_champion is make_model:  # same configuration, same seeds, same folds: same numbers
        oof["p_champion"] = oof["p_up"]
    elif make_champion is not None:
        _, oof["p_champion"] = _score_folds(data, folds, make_champion, calibration_method)
    if make_champion is not None:
        champion_metrics = _per_span(oof, "p_champion")

    fold_metrics = [
        direction_metrics(rows["label_up"], rows["p_up"], rows["fwd_log_return"])
        for _, rows in oof.groupby("fold", sort=True)
    ]
    for index, metrics in enumerate(fold_metrics):
        log.info("%s fold %d: auc %.4f", family, index, metrics["auc"])
    fit_ts = data.decision_ts.iloc[np.concatenate([f.fit for f in folds])]
    calibration_ts = data.decision_ts.iloc[np.concatenate([f.calibration for f in folds])]
    return DirectionEvaluation(
        oof=oof,
        spans=EvaluationSpans.build(fit_ts, calibration_ts, oof, "decision_ts"),
        baseline=baseline,
        baseline_candidates=candidates,
        metrics=_per_span(oof, "p_up"),
        raw_metrics=_per_span(oof, "p_raw"),
        baseline_metrics=_per_span(oof, "p_baseline"),
        champion_metrics=champion_metrics,
        fold_metrics=fold_metrics,
    )
