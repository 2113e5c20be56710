"""Per-service feature vectors: each service's last rows of features packed into one list per bar.

Feast's online read costs per feature and per view: about 1 ms for the 50 features of
`xgb_direction_v1` spread over three views, most of it building one response value per feature.
The online path of a service therefore reads a single packed feature, `<service>_vector:vector`
(one sqlite row). `sextant features build` packs the vectors from the per-kind tables with the
point-in-time rule Feast applies to training frames: at each bar close, every view's latest row at
or before it, no older than the TTL. A vector holds the last `window` such rows of its symbol
(`features.definitions.VectorLayout`: one for XGBoost and the decision, the LSTM's input sequence,
GARCH's return window), so the online vector of a bar is the training frame's rows up to that
bar, and tests hold the two equal.

Each vector table records the layout it was packed with (feature order and window, parquet
metadata); a table packed for another version of the service is refused at materialization
instead of being served.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_TTL,
    FEATURE_VIEWS,
    SERVICE_VECTOR_VIEWS,
    VECTOR_FIELD,
    VECTOR_ROW_GROUP_ROWS,
    Kind,
    VectorLayout,
    by_name,
    vector_layout,
)
from sextant.errors import DataValidationError

__all__ = [
    "FEATURES_METADATA_KEY",
    "WINDOW_METADATA_KEY",
    "packed_layout",
    "read_kind_tables",
    "write_service_vectors",
]

FEATURES_METADATA_KEY = b"sextant.features"
WINDOW_METADATA_KEY = b"sextant.window"
KEY_COLUMNS = ("symbol", "event_ts", "available_at")
# Views whose rows are bar closes: a vector is packed at each bar close, never at an alt-data time
BAR_KINDS = (Kind.TA, Kind.STAT)
# Values packed per record batch (one parquet row group): a window repeats each row `window`
# times, so a whole windowed table held at once would cost `window` times the kind tables
BATCH_VALUES = 1 << 22


def read_kind_tables(features_dir: Path) -> dict[Kind, pd.DataFrame]:
    """The per-kind feature tables `sextant features build` wrote under ``features_dir``."""
    tables = {}
    for kind, view in FEATURE_VIEWS.items():
        path = features_dir / f"{view}.parquet"
        if not path.is_file():
            raise DataValidationError(
                f"feature table for view {view!r} not built yet; run `sextant features build`",
                origin=str(path),
            )
        tables[kind] = pd.read_parquet(path)
    return tables


def write_service_vectors(
    features_dir: Path, tables: Mapping[Kind, pd.DataFrame] | None = None
) -> dict[str, int]:
    """Pack and write every service's vector table (atomically); rows written per vector view."""
    source = read_kind_tables(features_dir) if tables is None else tables
    keys, columns = _as_of_bar_closes(source)
    keys, columns = _by_symbol_and_time(keys, columns)
    starts = _symbol_starts(keys["symbol"].to_numpy(dtype=object))
    features = by_name()
    written = {}
    for service, names in FEATURE_SERVICES.items():
        for name in names:
            if name not in columns:
                view = FEATURE_VIEWS[features[name].kind]
                raise DataValidationError(
                    f"feature table for view {view!r} lacks column {name!r} "
                    f"(needed by {service!r}); run `sextant features build`",
                    field=name,
                )
        layout = vector_layout(service)
        matrix = np.column_stack([columns[name] for name in names])
        view = SERVICE_VECTOR_VIEWS[service]
        path = features_dir / f"{view}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        batches = _vector_batches(keys, matrix, starts, layout)
        first = next(batches)  # there is always one (empty for an empty table): it fixes the schema
        # one row (snappy): half zstd's write time on float lists, for 8% more bytes (a serving
        # layout); a window repeats its rows (zstd finds them: a tenth of snappy's bytes, and
        # faster, where a dictionary only overflows)
        windowed = layout.window > 1
        with pq.ParquetWriter(
            tmp,
            first.schema,
            compression="zstd" if windowed else "snappy",
            use_dictionary=not windowed,
        ) as writer:
            writer.write_batch(first, row_group_size=VECTOR_ROW_GROUP_ROWS)
            for batch in batches:
                writer.write_batch(batch, row_group_size=VECTOR_ROW_GROUP_ROWS)
        tmp.replace(path)  # readers never see a half-written table
        written[view] = len(keys)
    return written


def packed_layout(path: Path) -> VectorLayout | None:
    """The layout a vector table was packed with (None when the table does not say)."""
    metadata = pq.read_schema(path).metadata or {}
    features, window = metadata.get(FEATURES_METADATA_KEY), metadata.get(WINDOW_METADATA_KEY)
    if features is None or window is None:
        return None
    return VectorLayout(tuple(json.loads(features)), int(window))


def _vector_batches(
    keys: pd.DataFrame, matrix: np.ndarray, starts: np.ndarray, layout: VectorLayout
) -> Iterator[pa.RecordBatch]:
    """Record batches of symbol, event_ts, available_at and the packed vector, rows in order.

    Row i's vector is ``matrix`` rows i - window + 1 .. i flattened, NaN for the rows before its
    symbol's first row (``starts[i]``). Always yields at least one (possibly empty) batch.
    """
    rows = len(keys)
    width = layout.size
    keyed = {
        "symbol": pa.array(keys["symbol"].to_numpy(dtype=object), type=pa.string()),
        "event_ts": pa.array(keys["event_ts"]),
        "available_at": pa.array(keys["available_at"]),
    }
    metadata = {
        FEATURES_METADATA_KEY: json.dumps(list(layout.features)).encode(),
        WINDOW_METADATA_KEY: str(layout.window).encode(),
    }
    lags = np.arange(1 - layout.window, 1, dtype=np.int64)
    step = max(1, BATCH_VALUES // max(width, 1))  # list offsets are int32 per batch
    for lo in range(0, max(rows, 1), step):
        hi = min(rows, lo + step)
        positions = np.arange(lo, hi, dtype=np.int64)[:, None] + lags
        values = matrix[np.maximum(positions, 0)]  # rows x window x features
        values[positions < starts[lo:hi, None]] = np.nan
        offsets = pa.array(np.arange(hi - lo + 1, dtype=np.int64) * width, type=pa.int32())
        vectors = pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), type=pa.float64()))
        columns = {name: array.slice(lo, hi - lo) for name, array in keyed.items()}
        batch = pa.RecordBatch.from_pydict({**columns, VECTOR_FIELD: vectors})
        yield batch.replace_schema_metadata(metadata)


def _by_symbol_and_time(
    keys: pd.DataFrame, columns: dict[str, np.ndarray]
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Keys and columns with each symbol's rows together, oldest first (a window's precondition).

    The kind tables are written time-major (`features.build.write_view_table`): reordered,
    stably (a no-op for tables already in this order).
    """
    order = keys.sort_values(["symbol", "available_at"], kind="stable").index.to_numpy()
    if np.array_equal(order, np.arange(len(keys))):
        return keys, columns
    reordered = keys.iloc[order].reset_index(drop=True)
    return reordered, {name: values[order] for name, values in columns.items()}


def _symbol_starts(symbols: np.ndarray) -> np.ndarray:
    """Per row, the position of its symbol's first row (rows grouped by symbol)."""
    if len(symbols) == 0:
        return np.empty(0, dtype=np.int64)
    first = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
    counts = np.diff(np.r_[first, len(symbols)])
    starts: np.ndarray = np.repeat(first, counts).astype(np.int64)
    return starts


def _as_of_bar_closes(
    tables: Mapping[Kind, pd.DataFrame],
) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Every bar close (rows of the bar views) and each feature's latest value known by then.

    This is the rule Feast's point-in-time join applies (latest ``available_at`` <= the entity
    time, at most the TTL older); it matters for tables whose rows fall elsewhere (an alt row
    published between bars). The build writes every view at the same bar closes, in the same
    order: then the rule is an exact match and the columns are taken as they are (no copy).
    Returns the key columns and one float64 array per feature, aligned with the keys.
    """
    given = list(tables.values())
    if all(_same_keys(given[0], other) for other in given[1:]):
        bars, wide = given[0], given
    else:
        keyed = [_keyed(table) for table in given]
        bars = (
            pd.concat([_keyed(tables[k]).loc[:, list(KEY_COLUMNS)] for k in BAR_KINDS])
            .drop_duplicates(["symbol", "available_at"])
            .sort_values(["available_at", "symbol"], kind="stable")
        )
        merged = bars
        for frame in keyed:
            names = [c for c in frame.columns if c not in KEY_COLUMNS]
            rows = frame.loc[:, ["symbol", "available_at", *names]].sort_values(
                "available_at", kind="stable"
            )
            merged = pd.merge_asof(
                merged,
                rows,
                on="available_at",
                by="symbol",
                direction="backward",
                tolerance=pd.Timedelta(FEATURE_TTL),
            )
        bars = merged = merged.sort_values(["symbol", "available_at"], kind="stable")
        wide = [merged]
    columns = {
        name: frame[name].to_numpy(dtype="float64")
        for frame in wide
        for name in frame.columns
        if name not in KEY_COLUMNS
    }
    return bars.loc[:, list(KEY_COLUMNS)].reset_index(drop=True), columns


def _keyed(table: pd.DataFrame) -> pd.DataFrame:
    """The table with nanosecond UTC ``available_at`` (parquet may give microseconds)."""
    if table["available_at"].dtype == "datetime64[ns, UTC]":
        return table
    return table.assign(available_at=table["available_at"].dt.as_unit("ns"))


def _same_keys(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Whether two tables hold the same (symbol, available_at) rows in the same order."""
    if len(a) != len(b):
        return False

    def column(table: pd.DataFrame, name: str) -> pd.Series:
        values = table[name].reset_index(drop=True)
        return values.dt.as_unit("ns") if name == "available_at" else values

    return all(column(a, name).equals(column(b, name)) for name in ("symbol", "available_at"))
