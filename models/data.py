"""Training data: point-in-time features from Feast joined with forward labels from the market store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import numpy as np
import pandas as pd

from features.build import choose_candle_source
from features.definitions import GARCH_RETURN, service_features
from features.feast_store import training_frame
from features.ingest.store import MarketStore
from features.labels import forward_labels
from models.baselines import BASELINE_LAGS, past_log_returns, past_return_column
from models.protocol import DirectionDataset
from sextant.contracts import FEATURE_SERVICES
from sextant.errors import DataValidationError
from sextant.settings import Settings

__all__ = ["direction_dataset", "symbol_returns"]


def _labels(settings: Settings, symbols: Sequence[str], horizon: int) -> pd.DataFrame:
    frames = []
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol in symbols:
            source = choose_candle_source(store, symbol, settings.timeframe, settings.candle_source)
            candles = store.candles(symbol, settings.timeframe, source=source)
            labels = forward_labels(candles, settings.timeframe, horizon)
            # the simple baseline's inputs: past returns, known at the decision time
            frames.append(
                pd.concat([labels, past_log_returns(candles, settings.timeframe)], axis=1)
            )
    labels = pd.concat(frames, ignore_index=True)
    labels["available_at"] = labels["available_at"].dt.as_unit("ns")
    labels["label_available_at"] = labels["label_available_at"].dt.as_unit("ns")
    return labels


def direction_dataset(
    settings: Settings,
    feature_service: str,
    symbols: Sequence[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    horizon: int,
) -> DirectionDataset:
    """Every labelled bar close of the symbols in [start, end], with the service's features in order."""
    names = service_features(feature_service)
    features = training_frame(feature_service, symbols, start, end, settings=settings)
    features["event_timestamp"] = features["event_timestamp"].dt.as_unit("ns")
    labels = _labels(settings, symbols, horizon)
    past = [past_return_column(lag) for lag in BASELINE_LAGS]
    joined = features.merge(
        labels[
            ["symbol", "available_at", "fwd_log_return", "label_up", "label_available_at", *past]
        ],
        left_on=["symbol", "event_timestamp"],
        right_on=["symbol", "available_at"],
        how="inner",
        validate="one_to_one",
    )
    joined = joined[joined["fwd_log_return"].notna()]
    if joined.empty:
        raise DataValidationError(
            f"{feature_service}: no labelled rows for {', '.join(symbols)} between {start} and {end}"
        )
    joined = joined.sort_values(["symbol", "event_timestamp"], kind="stable").reset_index(drop=True)
    frame = pd.DataFrame(
        {
            "symbol": joined["symbol"].astype(str),
            "decision_ts": joined["event_timestamp"],
            "label_end_ts": joined["label_available_at"],
            "fwd_log_return": joined["fwd_log_return"].astype(np.float64),
            "label_up": joined["label_up"].astype(np.int64),
            **{column: joined[column].astype(np.float64) for column in past},
        }
    )
    matrix = joined.loc[:, list(names)].to_numpy(dtype=np.float32)
    return DirectionDataset(
        feature_service, tuple(names), frame, matrix, frame["label_up"].to_numpy(dtype=np.int64)
    )


def symbol_returns(
    settings: Settings,
    symbols: Sequence[str],
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    feature_service: str = FEATURE_SERVICES["garch"],
) -> dict[str, pd.Series]:
    """Hourly log returns per symbol (indexed by bar close) from the volatility feature service."""
    frame = training_frame(feature_service, symbols, start, end, settings=settings)
    out: dict[str, pd.Series] = {}
    for symbol, rows in frame.groupby("symbol", sort=True):
        series = rows.set_index("event_timestamp")[GARCH_RETURN].sort_index().astype(np.float64)
        out[str(symbol)] = series.dropna()
    missing = [s for s in symbols if s not in out]
    if missing:
        raise DataValidationError(
            f"{feature_service}: no returns for {missing} between {start} and {end}"
        )
    return out
