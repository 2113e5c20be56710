"""Synthetic direction datasets: two symbols of hourly rows, with a planted signal or pure noise.

Each symbol is a random walk of 1-bar log returns r_t. Row t (decision at the close of bar t)
has ``log_return_1 = r_t`` and ``log_return_4`` (bars t-3..t) as features, and the label is the
sign of ``fwd_log_return = r_{t+1} + ... + r_{t+4}``. The label is thus written into the
*following* rows' ``log_return_1``: a model that peeks at later rows (a sequence window running
forward, a validation split on row positions across symbols) beats chance on pure noise.

With ``planted=True`` the feature ``PLANTED`` is the standardized forward return plus unit noise
(NaN in a share of rows, so missing-value handling matters); otherwise it is noise like the rest.
Alternative-data features are NaN for each symbol's first fifth (before "coverage") and at random.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from features.definitions import ALT_FEATURES, service_features
from models.protocol import DirectionDataset, IndexArray

__all__ = ["HORIZON", "PLANTED", "SYMBOLS", "make_direction_data", "time_split"]

SYMBOLS = ("BTC/USDT", "ETH/USDT")
PLANTED = "rsi_14"  # in both xgb_direction_v1 and lstm_direction_v1
HORIZON = 4  # bars
START = pd.Timestamp("2024-01-01", tz="UTC")


def make_direction_data(
    service: str,
    n_per_symbol: int,
    *,
    planted: bool,
    seed: int,
    signal: float = 1.0,
    nan_share: float = 0.1,
) -> DirectionDataset:
    """Rows sorted by (symbol, decision_ts); ``signal`` scales the planted feature's information."""
    rng = np.random.default_rng(seed)
    features = service_features(service)
    frames, blocks = [], []
    for symbol in SYMBOLS:
        r = rng.normal(0.0, 0.01, n_per_symbol + HORIZON)
        fwd = np.lib.stride_tricks.sliding_window_view(r[1:], HORIZON).sum(axis=1)[:n_per_symbol]
        X = rng.normal(size=(n_per_symbol, len(features)))
        columns = {name: j for j, name in enumerate(features)}
        X[:, columns["log_return_1"]] = r[:n_per_symbol] * 100
        lr4 = np.full(n_per_symbol, np.nan)
        if n_per_symbol >= HORIZON:
            lr4[HORIZON - 1 :] = np.convolve(r[:n_per_symbol], np.ones(HORIZON), mode="valid") * 100
        X[:, columns["log_return_4"]] = lr4
        if planted:
            scale = fwd.std() if n_per_symbol > 1 else 1.0
            X[:, columns[PLANTED]] = signal * fwd / scale + rng.normal(size=n_per_symbol)
        X[rng.random(n_per_symbol) < nan_share, columns[PLANTED]] = np.nan
        for name in ALT_FEATURES:
            if name in columns:
                j = columns[name]
                X[: n_per_symbol // 5, j] = np.nan
                X[rng.random(n_per_symbol) < nan_share, j] = np.nan
        decision = pd.date_range(START, periods=n_per_symbol, freq="h", tz="UTC")
        frames.append(
            pd.DataFrame(
                {
                    "symbol": symbol,
                    "decision_ts": decision,
                    "label_end_ts": decision + pd.Timedelta(hours=HORIZON),
                    "fwd_log_return": fwd,
                    "label_up": (fwd > 0).astype(np.int64),
                }
            )
        )
        blocks.append(X)
    frame = pd.concat(frames, ignore_index=True)
    X_all = np.vstack(blocks).astype(np.float32)
    y = frame["label_up"].to_numpy(dtype=np.int64)
    return DirectionDataset(service, features, frame, X_all, y)


def time_split(data: DirectionDataset, test_fraction: float) -> tuple[IndexArray, IndexArray]:
    """(train, test) rows: the latest ``test_fraction`` of timestamps, training rows purged."""
    decision = data.decision_ts
    times = np.sort(decision.unique())
    test_start = times[int(len(times) * (1 - test_fraction))]
    test: npt.NDArray[np.intp] = np.flatnonzero((decision >= test_start).to_numpy())
    train: npt.NDArray[np.intp] = np.flatnonzero((data.label_end_ts < test_start).to_numpy())
    return train, test
