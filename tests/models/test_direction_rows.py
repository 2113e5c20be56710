"""Validation tails cut on time across symbols, purged; symbol windows; index and feature checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.direction_rows import check_features, check_index, symbol_starts, validation_tail
from models.protocol import DirectionDataset
from sextant.errors import DataValidationError
from tests.models.direction_data import HORIZON, make_direction_data


@pytest.fixture
def data() -> DirectionDataset:
    """Two symbols × 100 hourly rows."""
    return make_direction_data("lstm_direction_v1", 100, planted=True, seed=1)


def test_tail_holds_the_latest_timestamps_of_every_symbol(data: DirectionDataset) -> None:
    train = np.arange(len(data.y), dtype=np.intp)

    fit, val = validation_tail("lstm", data, train, 0.2)

    decision = data.decision_ts
    tail_start = decision[val].min()
    assert len(val) == 40 and set(data.symbols[val]) == {"BTC/USDT", "ETH/USDT"}
    assert (decision[val] >= decision.iloc[80]).all()
    # purge: the last HORIZON bars before the tail have labels ending inside it
    assert (data.label_end_ts[fit] < tail_start).all()
    assert len(fit) == 2 * (80 - HORIZON)
    assert np.array_equal(fit, np.sort(fit)) and np.array_equal(val, np.sort(val))


def test_tail_leaves_no_rows_to_fit() -> None:
    one_bar = make_direction_data("lstm_direction_v1", 1, planted=True, seed=1)

    with pytest.raises(DataValidationError, match="1 distinct training timestamps cannot hold"):
        validation_tail("lstm", one_bar, np.arange(2, dtype=np.intp), 0.15)


def test_symbol_starts_point_at_each_symbols_first_row(data: DirectionDataset) -> None:
    starts = symbol_starts("lstm", data)

    assert (starts[:100] == 0).all() and (starts[100:] == 100).all()


def test_symbol_starts_refuse_time_going_backwards(data: DirectionDataset) -> None:
    frame = data.frame.copy()
    frame.loc[50, "decision_ts"] = pd.Timestamp("2023-01-01", tz="UTC")
    broken = DirectionDataset(data.feature_service, data.features, frame, data.X, data.y)

    with pytest.raises(
        DataValidationError, match="decision_ts of BTC/USDT not strictly increasing at row 50"
    ):
        symbol_starts("lstm", broken)


def test_index_checks(data: DirectionDataset) -> None:
    assert check_index("xgb", data, [3, 1]).dtype == np.intp
    with pytest.raises(DataValidationError, match=r"out of range \[0, 200\)"):
        check_index("xgb", data, [0, 200])
    with pytest.raises(DataValidationError, match="1-D integer array"):
        check_index("xgb", data, np.array([0.5]))


def test_feature_check_accepts_the_service_it_was_built_for(data: DirectionDataset) -> None:
    check_features("lstm", data, "lstm_direction_v1")

    with pytest.raises(
        DataValidationError,
        match="'lstm_direction_v1' with 18 features does not match 'xgb_direction_v1'",
    ):
        check_features("xgb", data, "xgb_direction_v1")
