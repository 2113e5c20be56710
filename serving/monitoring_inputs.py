"""What the model-drift detectors read, from the stores `serving` may read (for `agents`).

- ``feature_history``: the feature tables' rows (every feature of every kind, as the models were
  trained on them) per symbol and bar close (``available_at``), from a start;
- ``matured_outcomes``: each decision bar's direction label and when it became known, from the
  candles (`features.labels.forward_labels`, the definition training uses).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds

from features.build import view_path
from features.definitions import FEATURE_VIEWS, Kind
from features.labels import forward_labels
from sextant.settings import Settings

__all__ = ["feature_files", "feature_history", "matured_outcomes"]

_KEYS = ["symbol", "event_ts", "available_at"]


def feature_files(settings: Settings) -> list[Path]:
    """The feature tables `feature_history` reads (one parquet file per kind)."""
    return [view_path(settings.paths.features_dir, FEATURE_VIEWS[kind]) for kind in Kind]


def feature_history(
    settings: Settings,
    symbols: Sequence[str],
    start: datetime | None,
    *,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``symbol, available_at`` and every feature (or those of ``columns`` the tables hold),
    rows with ``available_at >= start``."""
    merged: pd.DataFrame | None = None
    for path in feature_files(settings):
        if not path.is_file():
            return pd.DataFrame(columns=["symbol", "available_at"])
        wanted = ds.field("symbol").isin(list(symbols))
        if start is not None:
            wanted = wanted & (ds.field("available_at") >= pd.Timestamp(start))
        dataset = ds.dataset(path, format="parquet")
        names = None
        if columns is not None:
            stored = set(dataset.schema.names)
            names = [*_KEYS, *(c for c in columns if c in stored and c not in _KEYS)]
        table = dataset.to_table(columns=names, filter=wanted).to_pandas()
        merged = table if merged is None else merged.merge(table, on=_KEYS, how="inner")
    assert merged is not None
    merged["available_at"] = pd.to_datetime(merged["available_at"], utc=True)
    return merged.drop(columns=["event_ts"]).sort_values(["symbol", "available_at"])


def matured_outcomes(
    candles: pd.DataFrame, symbol: str, timeframe: str, horizon: int
) -> pd.DataFrame:
    """``symbol, ts`` (the decision's bar close), ``label_up`` (0/1) and ``known_at``; bars
    whose label is not known yet (or spans a hole) are left out."""
    labels = forward_labels(candles.assign(symbol=symbol), timeframe, horizon)
    known = labels.dropna(subset=["label_up"])
    return pd.DataFrame(
        {
            "symbol": symbol,
            "ts": pd.to_datetime(known["available_at"], utc=True),
            "label_up": known["label_up"].astype(float),
            "known_at": pd.to_datetime(known["label_available_at"], utc=True),
        }
    ).reset_index(drop=True)
