"""The simple past-return baseline: what it reads, and how it is chosen."""

from __future__ import annotations

import numpy as np
import pandas as pd

from models.baselines import (
    PastReturnBaseline,
    baseline_candidates,
    choose_baseline,
    past_log_returns,
    past_return_column,
)


def _candles(closes: list[float], stamps: pd.DatetimeIndex) -> pd.DataFrame:
    return pd.DataFrame({"event_ts": stamps, "close": closes})


def test_past_returns_are_backward_and_null_across_a_gap() -> None:
    stamps = pd.date_range("2024-01-01", periods=6, freq="h", tz="UTC")
    stamps = stamps.delete(3)  # 03:00 missing
    closes = [100.0, 110.0, 121.0, 133.1, 146.41]

    past = past_log_returns(_candles(closes, stamps), "1h", lags=(1, 2))

    r1 = past[past_return_column(1)].to_numpy()
    np.testing.assert_allclose(r1[:3], [np.nan, np.log(1.1), np.log(1.1)])
    assert np.isnan(r1[3])  # 02:00 -> 04:00 spans the gap
    np.testing.assert_allclose(r1[4], np.log(1.1))
    r2 = past[past_return_column(2)].to_numpy()
    assert np.isnan(r2[:2]).all() and np.isclose(r2[2], np.log(1.21))
    assert np.isnan(r2[3]) and np.isnan(r2[4])


def test_the_candidate_with_the_best_selection_auc_is_chosen() -> None:
    rng = np.random.default_rng(7)
    n = 4000
    frame = pd.DataFrame({past_return_column(lag): rng.normal(size=n) for lag in (1, 4, 24)})
    # planted reversal on the 4-bar return, on the selection rows only
    y = (rng.normal(size=n) - 0.8 * frame[past_return_column(4)].to_numpy() > 0).astype(np.int64)
    selection = np.arange(n) < n // 2
    y[~selection] = rng.integers(0, 2, size=(~selection).sum())

    chosen, aucs = choose_baseline(frame, y, selection)

    assert chosen == PastReturnBaseline(4, -1) and chosen.name == "reversal_4"
    assert set(aucs) == {c.name for c in baseline_candidates()}
    assert aucs["reversal_4"] > 0.65
    assert np.isclose(aucs["momentum_4"], 1.0 - aucs["reversal_4"])


def test_a_missing_past_return_scores_zero() -> None:
    frame = pd.DataFrame({past_return_column(4): [0.01, np.nan, -0.02]})
    np.testing.assert_allclose(PastReturnBaseline(4, -1).score(frame), [-0.01, 0.0, 0.02])
