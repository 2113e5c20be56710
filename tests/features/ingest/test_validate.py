"""Row validation: every defect gets its reason code, valid rows come out sorted and unique."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.ingest.batch import Batch, Dataset
from features.ingest.validate import Reason, find_gaps, validate_batch
from sextant.errors import DataValidationError
from tests.features.ingest.factories import NOW, candle_batch, candle_frame, funding_frame


def reasons_of(frame: pd.DataFrame, **kw: object) -> dict[int, str]:
    result = validate_batch(candle_batch(frame, **kw))  # type: ignore[arg-type]
    return {
        int(ts.value): r
        for ts, r in zip(result.rejected["event_ts"], result.rejected["reason"], strict=True)
    }


def test_clean_candles_all_pass() -> None:
    frame = candle_frame(48)
    result = validate_batch(candle_batch(frame))
    assert len(result.valid) == 48
    assert result.rejected.empty
    pd.testing.assert_frame_equal(result.valid, frame)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("close", np.nan, Reason.MISSING_VALUE),
        ("open", np.inf, Reason.NON_FINITE),
        ("low", -1.0, Reason.NON_POSITIVE_PRICE),
        ("close", 0.0, Reason.NON_POSITIVE_PRICE),
        ("volume", -5.0, Reason.NEGATIVE_VOLUME),
    ],
)
def test_bad_value_is_rejected_with_its_reason(column: str, value: float, reason: Reason) -> None:
    frame = candle_frame(10)
    frame.loc[3, column] = value
    result = validate_batch(candle_batch(frame))
    assert len(result.valid) == 9
    assert result.rejected["reason"].tolist() == [reason.value]
    assert result.rejected["event_ts"].iloc[0] == frame["event_ts"].iloc[3]
    assert column in result.rejected["detail"].iloc[0]


def test_high_below_close_is_inconsistent() -> None:
    frame = candle_frame(10)
    frame.loc[4, "high"] = frame.loc[4, ["open", "close"]].max() * 0.99
    result = validate_batch(candle_batch(frame))
    assert result.rejected["reason"].tolist() == [Reason.HIGH_LOW_INCONSISTENT.value]


def test_off_grid_future_and_open_candles() -> None:
    frame = candle_frame(5, start=NOW - timedelta(hours=3))
    frame.loc[0, "event_ts"] = frame.loc[0, "event_ts"] + pd.Timedelta(minutes=7)
    # rows open at NOW-3h(+7min: off grid), NOW-2h, NOW-1h (closes at NOW), NOW (still open), NOW+1h
    result = validate_batch(candle_batch(frame))
    by_ts = dict(zip(result.rejected["event_ts"], result.rejected["reason"], strict=True))
    assert by_ts[frame.loc[0, "event_ts"]] == Reason.OFF_GRID
    assert by_ts[frame.loc[3, "event_ts"]] == Reason.CANDLE_NOT_CLOSED
    assert by_ts[frame.loc[4, "event_ts"]] == Reason.FUTURE_TIMESTAMP
    assert result.valid["event_ts"].tolist() == frame.loc[1:2, "event_ts"].tolist()


def test_exact_duplicates_collapse_and_conflicts_are_all_rejected() -> None:
    frame = candle_frame(6)
    exact = frame.iloc[[2]]
    clash = frame.iloc[[4]].assign(close=frame.loc[4, "close"] * 1.001)
    result = validate_batch(candle_batch(pd.concat([frame, exact, clash], ignore_index=True)))
    assert result.exact_duplicates == 1
    assert result.rejected["reason"].tolist() == [Reason.DUPLICATE_CONFLICT.value] * 2
    assert set(result.valid["event_ts"]) == set(frame["event_ts"]) - {frame.loc[4, "event_ts"]}


def test_out_of_order_rows_are_sorted_and_counted() -> None:
    frame = candle_frame(8)
    shuffled = frame.iloc[[0, 1, 5, 2, 3, 4, 6, 7]].reset_index(drop=True)
    result = validate_batch(candle_batch(shuffled))
    assert result.out_of_order == 1
    pd.testing.assert_frame_equal(result.valid, frame)


def test_rows_of_another_series_are_rejected() -> None:
    frame = candle_frame(4)
    frame.loc[1, "symbol"] = "ETH/USDT"
    result = validate_batch(candle_batch(frame))
    assert result.rejected["reason"].tolist() == [Reason.WRONG_SERIES.value]


def test_wrong_columns_raise_naming_the_input() -> None:
    frame = candle_frame(4).drop(columns=["close"])
    with pytest.raises(DataValidationError, match=r"missing \['close'\].*input=prices.csv"):
        validate_batch(candle_batch(frame, origin="prices.csv"))


def test_naive_timestamps_raise() -> None:
    frame = candle_frame(4)
    frame["event_ts"] = frame["event_ts"].dt.tz_localize(None)
    with pytest.raises(DataValidationError, match=r"tz-aware UTC.*field=event_ts"):
        validate_batch(candle_batch(frame))


def test_text_in_a_price_column_raises() -> None:
    frame = candle_frame(4)
    frame["close"] = frame["close"].astype(str)
    with pytest.raises(DataValidationError, match="field=close"):
        validate_batch(candle_batch(frame))


def test_funding_out_of_range_and_available_before_event() -> None:
    frame = funding_frame(5)
    frame.loc[1, "funding_rate"] = 0.5
    frame.loc[2, "available_at"] = frame.loc[2, "event_ts"] - pd.Timedelta(hours=1)
    batch = Batch(Dataset.FUNDING, "test", "unit", frame, symbol="BTC/USDT:USDT", now=NOW)
    result = validate_batch(batch)
    assert result.rejected["reason"].tolist() == [
        Reason.OUT_OF_RANGE.value,
        Reason.AVAILABLE_BEFORE_EVENT.value,
    ]


def test_find_gaps_reports_missing_bars() -> None:
    ts = candle_frame(10)["event_ts"].drop(index=[3, 4, 7]).reset_index(drop=True)
    gaps = find_gaps(ts, 3_600_000)
    assert [(g.after.hour, g.before.hour, g.missing_bars) for g in gaps] == [(2, 5, 2), (6, 8, 1)]


corruption = st.sampled_from(
    ["nan_close", "neg_low", "hl", "neg_vol", "dup", "clash", "offgrid", "future", "swap"]
)


@settings(max_examples=300, deadline=None)
@given(
    n=st.integers(min_value=1, max_value=60),
    edits=st.lists(st.tuples(corruption, st.integers(min_value=0, max_value=59)), max_size=12),
)
def test_validator_properties(n: int, edits: list[tuple[str, int]]) -> None:
    # Arrange: a clean series with random corruptions applied
    frame = candle_frame(n)
    extra = []
    for kind, pos in edits:
        i = pos % n
        if kind == "nan_close":
            frame.loc[i, "close"] = np.nan
        elif kind == "neg_low":
            frame.loc[i, "low"] = -1.0
        elif kind == "hl":
            frame.loc[i, "high"] = frame.loc[i, "low"] * 0.5
        elif kind == "neg_vol":
            frame.loc[i, "volume"] = -1.0
        elif kind == "dup":
            extra.append(frame.iloc[[i]].copy())
        elif kind == "clash":
            extra.append(frame.iloc[[i]].assign(volume=frame.loc[i, "volume"] + 1.0))
        elif kind == "offgrid":
            frame.loc[i, "event_ts"] += pd.Timedelta(seconds=1)
        elif kind == "future":
            frame.loc[i, "event_ts"] = pd.Timestamp(NOW) + pd.Timedelta(days=i + 1)
        elif kind == "swap" and n > 1:
            j = (i + 1) % n
            frame.iloc[[i, j]] = frame.iloc[[j, i]].to_numpy()
    data = pd.concat([frame, *extra], ignore_index=True)

    # Act
    result = validate_batch(candle_batch(data))
    valid = result.valid

    # Assert: nothing lost, nothing invalid kept, output sorted and unique
    assert len(valid) + len(result.rejected) + result.exact_duplicates == len(data)
    assert valid["event_ts"].is_monotonic_increasing and valid["event_ts"].is_unique
    prices = valid[["open", "high", "low", "close"]].to_numpy()
    assert np.isfinite(prices).all() and (prices > 0).all()
    assert (valid["high"] >= valid[["open", "close"]].max(axis=1)).all()
    assert (valid["low"] <= valid[["open", "close"]].min(axis=1)).all()
    assert (valid["volume"] >= 0).all()
    assert (valid["event_ts"].astype("int64") % 3_600_000_000_000 == 0).all()
    assert (valid["event_ts"] + pd.Timedelta(hours=1) <= pd.Timestamp(NOW)).all()
    assert set(result.rejected["reason"]) <= {r.value for r in Reason}
    # validating the output again changes nothing
    again = validate_batch(candle_batch(valid)) if len(valid) else None
    if again is not None:
        assert again.rejected.empty and len(again.valid) == len(valid)
