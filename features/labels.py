"""Training labels: the only module that looks forward in time.

A label at bar t is the log return from t's close to the close ``horizon`` bars later, and its
sign. It becomes known only at that later close (``label_available_at``), which is what purged
cross-validation needs. Labels never enter a Feast feature view or the online store.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from sextant.errors import ConfigError
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["DEFAULT_HORIZON", "LABEL_COLUMNS", "forward_labels"]

DEFAULT_HORIZON = 4
LABEL_COLUMNS = ("fwd_log_return", "label_up", "label_available_at")


def forward_labels(
    candles: pd.DataFrame, timeframe: str, horizon: int = DEFAULT_HORIZON
) -> pd.DataFrame:
    """Per bar: ``symbol, event_ts, available_at`` (decision time) and the forward labels.

    Bars whose horizon runs past the data, or spans missing bars, get no label (NaN), so a
    label always covers exactly ``horizon`` bars of wall-clock time.
    """
    if horizon < 1:
        raise ConfigError(f"label horizon must be at least 1 bar, got {horizon}")
    step = timeframe_to_timedelta(timeframe)
    event_ts = candles["event_ts"].reset_index(drop=True)
    close = candles["close"].to_numpy(dtype=np.float64)
    log_close = np.log(close)
    fwd = np.full(len(close), np.nan)
    fwd[:-horizon] = log_close[horizon:] - log_close[:-horizon]
    later = event_ts.shift(-horizon)
    contiguous = (later - event_ts) == step * horizon
    fwd[~contiguous.to_numpy()] = np.nan
    up = np.where(np.isnan(fwd), np.nan, (fwd > 0).astype(np.float64))
    available_at = event_ts + step
    return pd.DataFrame(
        {
            "symbol": candles["symbol"].to_numpy(),
            "event_ts": event_ts,
            "available_at": available_at,
            "fwd_log_return": fwd,
            "label_up": up,
            "label_available_at": available_at + step * horizon,
        }
    )
