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
import pyarrow as pa
import pyarrow.compute as pc
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
    rows with ``available_at >= start``, ordered by symbol then ``available_at`` (index 0..n-1).

    A table's row groups whose ``available_at`` statistics end before ``start`` are not decoded
    (the build writes the tables time-major: a read of recent rows decodes the last groups);
    the rows are then filtered exactly. The kinds' tables are joined on their keys in arrow;
    tables written by one build hold the same keys in the same order, and are then put side by
    side without a join (same rows)."""
    wanted = ds.field("symbol").isin(list(symbols))
    if start is not None:
        wanted = wanted & (ds.field("available_at") >= pd.Timestamp(start))
    tables: list[pa.Table] = []
    for path in feature_files(settings):
        if not path.is_file():
            return pd.DataFrame(columns=["symbol", "available_at"])
        # the dataset scan skips the row groups whose statistics cannot match the filter
        dataset = ds.dataset(path, format="parquet")
        names = None
        if columns is not None:
            stored = set(dataset.schema.names)
            names = [*_KEYS, *(c for c in columns if c in stored and c not in _KEYS)]
        # in the calling thread: the monitor reads this alongside its market reads, on a
        # machine of a few cores, where arrow's own pool would compete with them for the cores
        tables.append(dataset.to_table(columns=names, filter=wanted, use_threads=False))
    merged = _joined(tables)
    frame = merged.drop_columns(["event_ts"]).to_pandas()
    at = frame["available_at"]
    frame["available_at"] = (
        at.dt.tz_convert("UTC")  # stored tz-aware: no parsing pass
        if isinstance(at.dtype, pd.DatetimeTZDtype)
        else pd.to_datetime(at, utc=True)
    )
    result: pd.DataFrame = frame
    return result


_BY_SYMBOL_AND_TIME = [("symbol", "ascending"), ("available_at", "ascending")]


def _joined(tables: Sequence[pa.Table]) -> pa.Table:
    """The inner join of the tables on `_KEYS`, ordered by symbol then ``available_at``."""
    order = pc.sort_indices(tables[0].select(_KEYS), sort_keys=_BY_SYMBOL_AND_TIME)
    first = tables[0].take(order)
    keys = tables[0].select(_KEYS)
    if _unique_keys(first.select(_KEYS)) and all(
        t.num_rows == keys.num_rows and t.select(_KEYS).equals(keys) for t in tables[1:]
    ):  # the same unique keys in the same order: the join is the columns side by side
        merged = first
        for table in tables[1:]:
            rest = table.drop_columns(_KEYS).take(order)
            for name in rest.column_names:
                merged = merged.append_column(rest.field(name), rest.column(name))
        return merged
    merged = first
    for table in tables[1:]:
        merged = merged.join(table, keys=_KEYS, join_type="inner")
    return merged.sort_by(_BY_SYMBOL_AND_TIME)


def _unique_keys(keys: pa.Table) -> bool:
    """Whether sorted keys are unique: (symbol, available_at) strictly increasing, and so the
    third key too (one row per symbol and bar close)."""
    if any(keys.column(name).null_count for name in _KEYS):
        return False
    if keys.num_rows < 2:
        return True
    symbol = keys.column("symbol")
    at = keys.column("available_at")
    same_symbol = pc.equal(symbol.slice(1), symbol.slice(0, keys.num_rows - 1))
    later = pc.greater(at.slice(1), at.slice(0, keys.num_rows - 1))
    return bool(pc.all(pc.or_(pc.invert(same_symbol), later)).as_py())


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
