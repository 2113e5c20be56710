"""The simple baseline every direction model is measured against: the sign of a past return.

A quant's first try for a direction label is the past k-bar log return, as momentum (+r_k) or as
reversal (-r_k). The candidates are a handful of lags and both signs; the one with the best AUC
on the selection span is the baseline, scored like a model (its score ranks rows; its calibrated
probability, fitted per fold like a model's, feeds the backtest). A model that cannot beat one
past return is not worth its latency, and the promotion gate says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.errors import DataValidationError
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "BASELINE_LAGS",
    "PastReturnBaseline",
    "baseline_candidates",
    "choose_baseline",
    "past_log_returns",
    "past_return_column",
]

BASELINE_LAGS = (1, 4, 24)


def past_return_column(lag: int) -> str:
    """Name of the past ``lag``-bar log return column in a direction dataset's frame."""
    return f"past_log_return_{lag}"


def past_log_returns(
    candles: pd.DataFrame, timeframe: str, lags: tuple[int, ...] = BASELINE_LAGS
) -> pd.DataFrame:
    """Per bar close: ``log(close_t / close_{t-k})`` for each lag; NaN where the k bars have a gap."""
    step = pd.Timedelta(timeframe_to_timedelta(timeframe))
    event_ts = pd.to_datetime(candles["event_ts"], utc=True).reset_index(drop=True)
    log_close = np.log(candles["close"].to_numpy(dtype=np.float64))
    out = {}
    for lag in lags:
        values = np.full(len(log_close), np.nan)
        values[lag:] = log_close[lag:] - log_close[:-lag]
        contiguous = (event_ts - event_ts.shift(lag)) == step * lag
        values[~contiguous.to_numpy()] = np.nan
        out[past_return_column(lag)] = values
    return pd.DataFrame(out)


@dataclass(frozen=True)
class PastReturnBaseline:
    """Score ``sign × r_lag``: sign +1 is momentum, -1 reversal. A missing return scores 0."""

    lag: int
    sign: int

    @property
    def name(self) -> str:
        return f"{'momentum' if self.sign > 0 else 'reversal'}_{self.lag}"

    def score(self, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
        column = past_return_column(self.lag)
        if column not in frame.columns:
            raise DataValidationError(f"baseline {self.name} needs column {column!r}")
        values = frame[column].to_numpy(dtype=np.float64)
        return np.where(np.isfinite(values), self.sign * values, 0.0)


def baseline_candidates(lags: tuple[int, ...] = BASELINE_LAGS) -> list[PastReturnBaseline]:
    """Every lag with both signs."""
    return [PastReturnBaseline(lag, sign) for lag in lags for sign in (1, -1)]


def choose_baseline(
    frame: pd.DataFrame, y: npt.NDArray[np.int64], rows: npt.NDArray[np.bool_]
) -> tuple[PastReturnBaseline, dict[str, float]]:
    """The candidate with the best AUC on ``rows`` (the selection span), and every candidate's AUC."""
    from sklearn.metrics import roc_auc_score

    chosen_y = y[rows]
    if len(np.unique(chosen_y)) < 2:
        raise DataValidationError(
            f"the selection span has {int(rows.sum())} rows of a single label class: "
            "no baseline can be chosen"
        )
    aucs = {
        c.name: float(roc_auc_score(chosen_y, c.score(frame)[rows])) for c in baseline_candidates()
    }
    best = max(baseline_candidates(), key=lambda c: aucs[c.name])
    return best, aucs
