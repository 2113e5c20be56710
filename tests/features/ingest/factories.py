"""Small real-shaped frames for ingestion tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from features.ingest.batch import Batch, Dataset

T0 = datetime(2023, 1, 1, tzinfo=UTC)
NOW = datetime(2024, 1, 1, tzinfo=UTC)


def candle_frame(
    n: int = 48,
    *,
    symbol: str = "BTC/USDT",
    timeframe: str = "1h",
    start: datetime = T0,
    seed: int = 7,
) -> pd.DataFrame:
    """A consistent random-walk candle series on the timeframe grid."""
    rng = np.random.default_rng(seed)
    close = 20_000 * np.exp(np.cumsum(rng.normal(0, 0.005, n)))
    open_ = np.r_[close[0], close[:-1]]
    high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.003, n))
    low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.003, n))
    step = pd.Timedelta(timeframe)
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "event_ts": pd.date_range(start, periods=n, freq=step, tz="UTC"),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": rng.uniform(1, 100, n),
        }
    )


def candle_batch(
    frame: pd.DataFrame, *, source: str = "test", origin: str = "unit-test", now: datetime = NOW
) -> Batch:
    """Wrap a candle frame as a batch for its (single) symbol and timeframe."""
    return Batch(
        dataset=Dataset.CANDLES,
        source=source,
        origin=origin,
        frame=frame,
        symbol=str(frame["symbol"].iloc[0]) if len(frame) else "BTC/USDT",
        timeframe=str(frame["timeframe"].iloc[0]) if len(frame) else "1h",
        now=now,
    )


def funding_frame(n: int = 9, *, symbol: str = "BTC/USDT:USDT") -> pd.DataFrame:
    """Funding settlements every 8 hours."""
    ts = pd.date_range(T0, periods=n, freq=timedelta(hours=8), tz="UTC")
    return pd.DataFrame(
        {
            "symbol": symbol,
            "event_ts": ts,
            "available_at": ts,
            "funding_rate": np.linspace(-1e-4, 3e-4, n),
        }
    )
