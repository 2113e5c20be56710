"""Per-service feature vectors: each model service's features packed into one list value per bar.

Feast's online read costs per feature and per view: about 1 ms for the 50 features of
`xgb_direction_v1` spread over three views, most of it building one response value per feature.
The online path of a service therefore reads a single packed feature, `<service>_vector:vector`
(one sqlite row). `sextant features build` packs the vectors from the per-kind tables with the
point-in-time rule Feast applies to training frames: at each bar close, every view's latest row at
or before it, no older than the TTL. So the online vector of a bar is that bar's training row, and
a test holds the two equal.

Each vector table records the feature order it was packed with (parquet metadata); a table packed
for another version of the service is refused at materialization instead of being served.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
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
    Kind,
    by_name,
)
from sextant.errors import DataValidationError

__all__ = [
    "FEATURES_METADATA_KEY",
    "pack_service_vectors",
    "packed_features",
    "read_kind_tables",
    "write_service_vectors",
]

FEATURES_METADATA_KEY = b"sextant.features"
KEY_COLUMNS = ("symbol", "event_ts", "available_at")
# Views whose rows are bar closes: a vector is packed at each bar close, never at an alt-data time
BAR_KINDS = (Kind.TA, Kind.STAT)


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


def pack_service_vectors(tables: Mapping[Kind, pd.DataFrame]) -> dict[str, pa.Table]:
    """One table per service: symbol, event_ts, available_at and the packed ``vector`` per bar close."""
    keys, columns = _as_of_bar_closes(tables)
    features = by_name()
    packed = {}
    for service, names in FEATURE_SERVICES.items():
        for name in names:
            if name not in columns:
                view = FEATURE_VIEWS[features[name].kind]
                raise DataValidationError(
                    f"feature table for view {view!r} lacks column {name!r} "
                    f"(needed by {service!r}); run `sextant features build`",
                    field=name,
                )
        values = np.column_stack([columns[name] for name in names])
        if (
            values.size >= 2**31
        ):  # list offsets are int32 (Feast reads list<double>, not large_list)
            raise DataValidationError(
                f"{service!r} vectors hold {values.size} values, over the 2**31 a parquet list "
                "column can index; build fewer symbols per home"
            )
        offsets = pa.array(np.arange(len(keys) + 1, dtype="int64") * len(names), type=pa.int32())
        vectors = pa.ListArray.from_arrays(offsets, pa.array(values.ravel(), type=pa.float64()))
        table = pa.table(
            {
                "symbol": pa.array(keys["symbol"].to_numpy(dtype=object), type=pa.string()),
                "event_ts": pa.array(keys["event_ts"]),
                "available_at": pa.array(keys["available_at"]),
                VECTOR_FIELD: vectors,
            }
        )
        packed[service] = table.replace_schema_metadata(
            {FEATURES_METADATA_KEY: json.dumps(list(names)).encode()}
        )
    return packed


def write_service_vectors(
    features_dir: Path, tables: Mapping[Kind, pd.DataFrame] | None = None
) -> dict[str, int]:
    """Pack and write every service's vector table (atomically); rows written per vector view."""
    source = read_kind_tables(features_dir) if tables is None else tables
    written = {}
    for service, table in pack_service_vectors(source).items():
        view = SERVICE_VECTOR_VIEWS[service]
        path = features_dir / f"{view}.parquet"
        tmp = path.with_suffix(".parquet.tmp")
        # snappy: half zstd's write time on float lists, for 8% more bytes (a serving layout)
        pq.write_table(table, tmp, compression="snappy")
        tmp.replace(path)  # readers never see a half-written table
        written[view] = table.num_rows
    return written


def packed_features(path: Path) -> tuple[str, ...] | None:
    """The feature order a vector table was packed with (None when the table does not say)."""
    metadata = pq.read_schema(path).metadata or {}
    raw = metadata.get(FEATURES_METADATA_KEY)
    return None if raw is None else tuple(json.loads(raw))


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
