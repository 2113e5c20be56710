"""Labels look forward by exactly the horizon, and never across missing bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from features.labels import forward_labels
from sextant.errors import ConfigError
from tests.features.ingest.factories import candle_frame


def test_forward_return_and_sign() -> None:
    candles = candle_frame(10)
    labels = forward_labels(candles, "1h", horizon=4)
    close = candles["close"].to_numpy()
    assert labels["fwd_log_return"].iloc[2] == pytest.approx(np.log(close[6] / close[2]))
    assert labels["label_up"].iloc[2] == float(close[6] > close[2])
    assert labels["fwd_log_return"].iloc[-4:].isna().all()
    assert (labels["label_available_at"] - labels["available_at"] == pd.Timedelta(hours=4)).all()


def test_no_label_across_a_gap() -> None:
    candles = candle_frame(12).drop(index=[7]).reset_index(drop=True)
    labels = forward_labels(candles, "1h", horizon=2)
    # bars opening at 05:00 and 06:00 would reach past the missing 07:00 bar
    by_hour = dict(zip(candles["event_ts"].dt.hour, labels["fwd_log_return"], strict=True))
    assert np.isnan(by_hour[5]) and np.isnan(by_hour[6])
    assert not np.isnan(by_hour[4]) and not np.isnan(by_hour[8])


def test_horizon_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="horizon"):
        forward_labels(candle_frame(5), "1h", horizon=0)
