"""The evaluation protocol's four spans: train, calibrate, select, report.

Walk-forward CV gives every decision after the first training block an out-of-fold prediction.
Those decisions are split once, by time: the earlier part **selects** (the promotion gate, the
simple baseline's lag, the backtest's fuser settings), the later part is **reported** and takes
part in no choice. A selection row counts only if its label was known when the reported span
starts, so no label that ends inside the reported span informs a choice. Inside each fold, the
model is fitted on the training block minus its latest part, the **calibration** tail, on which
the probability calibrator is fitted (`models/calibration.py`). See docs/models.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.errors import ConfigError, DataValidationError

__all__ = [
    "SPAN_COLUMN",
    "SPAN_NAMES",
    "EvaluationSpans",
    "find_reported_start",
    "label_spans",
    "span_text",
]

SPAN_COLUMN = "span"
SELECTION, REPORTED, PURGED = "selection", "reported", "purged"
SPAN_NAMES = ("train", "calibration", "selection", "reported")


def span_text(first: Any, last: Any) -> str:
    """``first .. last`` as ISO times (the form tags, reports and the CLI show)."""
    return f"{pd.Timestamp(first).isoformat()} .. {pd.Timestamp(last).isoformat()}"


def _nanoseconds(stamps: pd.Series | npt.NDArray[Any]) -> npt.NDArray[np.int64]:
    """UTC nanoseconds since the epoch of tz-aware (or UTC-naive) timestamps."""
    stamps_utc = pd.to_datetime(pd.Series(stamps), utc=True).dt.as_unit("ns")
    nanoseconds = np.asarray(stamps_utc.astype("int64"), dtype=np.int64)
    return nanoseconds


def find_reported_start(decision_ts: pd.Series | npt.NDArray[Any], fraction: float) -> pd.Timestamp:
    """First decision time of the reported span: the later ``fraction`` of the distinct OOF times."""
    if not 0.0 < fraction < 1.0:
        raise ConfigError(f"reported_fraction must be in (0, 1), got {fraction}")
    times = np.unique(_nanoseconds(decision_ts))
    cut = int(np.floor(len(times) * (1.0 - fraction)))
    if cut < 1 or cut >= len(times):
        raise DataValidationError(
            f"{len(times)} out-of-fold decision times cannot be split into a selection and a "
            f"reported span (reported_fraction {fraction})"
        )
    return pd.Timestamp(int(times[cut]), tz="UTC")


def label_spans(
    decision_ts: pd.Series, known_at: pd.Series, start_reported: pd.Timestamp
) -> npt.NDArray[np.object_]:
    """Per OOF row: ``selection`` (label known by the reported start), ``reported``, or ``purged``."""
    decided, known = _nanoseconds(decision_ts), _nanoseconds(known_at)
    cut = pd.Timestamp(start_reported).as_unit("ns").value
    spans = np.full(len(decided), PURGED, dtype=object)
    spans[known <= cut] = SELECTION
    spans[decided >= cut] = REPORTED
    return spans


@dataclass(frozen=True)
class EvaluationSpans:
    """The four spans of one training run, as ``first .. last`` texts, and the reported start."""

    train: str
    calibration: str
    selection: str
    reported: str
    reported_start: str

    def tags(self) -> dict[str, str]:
        """MLflow tags ``sextant.span.<name>`` (runs and model versions carry the same)."""
        return {f"sextant.span.{k}": v for k, v in asdict(self).items()}

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    @staticmethod
    def from_tags(tags: dict[str, str]) -> EvaluationSpans | None:
        """The spans a model version was registered with; None for versions from before spans."""
        keys = [f"sextant.span.{k}" for k in (*SPAN_NAMES, "reported_start")]
        if not all(k in tags for k in keys):
            return None
        return EvaluationSpans(*(tags[k] for k in keys))

    @staticmethod
    def build(
        fit_ts: pd.Series, calibration_ts: pd.Series, oof: pd.DataFrame, ts_column: str
    ) -> EvaluationSpans:
        """From the fold models' fit rows, their calibration rows and the span-labelled OOF frame."""
        selected = oof.loc[oof[SPAN_COLUMN] == SELECTION, ts_column]
        reported = oof.loc[oof[SPAN_COLUMN] == REPORTED, ts_column]
        if selected.empty or reported.empty:
            raise DataValidationError(
                f"out-of-fold rows {oof[ts_column].min()} .. {oof[ts_column].max()} leave "
                f"{len(selected)} selection and {len(reported)} reported rows: train on a longer period"
            )
        return EvaluationSpans(
            train=span_text(fit_ts.min(), fit_ts.max()),
            calibration=span_text(calibration_ts.min(), calibration_ts.max())
            if len(calibration_ts)
            else "none",
            selection=span_text(selected.min(), selected.max()),
            reported=span_text(reported.min(), reported.max()),
            reported_start=pd.Timestamp(reported.min()).isoformat(),
        )
