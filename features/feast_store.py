"""Feast read/write helpers: apply the declarations, materialize, point-in-time training frames, online reads.

Everything follows the active home: the registry lives under `<home>/feast/`, the parquet
tables (written by `sextant features build`) under `<home>/features/`. The online and offline
stores are settings (``SEXTANT_FEAST_ONLINE_STORE``, ``SEXTANT_FEAST_OFFLINE_STORE``, each a
``feature_store.yaml`` block as JSON); by default a sqlite online store under `<home>/feast/`
and the duckdb offline store, so nothing needs a server. `feast` is imported lazily: importing it costs seconds and sets environment
variables (prometheus multiprocess directory), which importing this module must not do.
"""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from features.change_token import ChangeToken
from features.definitions import (
    FEATURE_VIEWS,
    SERVICE_VECTOR_VIEWS,
    VECTOR_FIELD,
    Kind,
    by_name,
    service_features,
    vector_layout,
)
from features.feast_declarations import Declarations, load_declarations
from features.online import unpack_vectors
from features.vectors import packed_layout
from sextant.contracts import ONLINE_SERVICES
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import Settings

if TYPE_CHECKING:
    from feast import FeatureService, FeatureStore, FeatureView, RepoConfig

__all__ = [
    "FeastStore",
    "OnlineVectors",
    "ViewReport",
    "feast_config",
    "materialize",
    "online_features",
    "online_store_block",
    "training_frame",
]

log = logging.getLogger(__name__)

BUILD_HINT = "run `sextant features build`"
MATERIALIZE_HINT = "run `sextant features materialize`"
ENTITY_COLUMNS = ("symbol", "event_timestamp")
# Views whose rows are bar closes: a training row is a bar close, never an alternative-data time.
BAR_VIEWS = (FEATURE_VIEWS[Kind.TA], FEATURE_VIEWS[Kind.STAT])
_ONE_US = timedelta(microseconds=1)
_ROW = "__entity_row"  # restores the caller's row order: Feast returns rows in its own order


@dataclass(frozen=True, slots=True)
class OnlineVectors:
    """A service's online vector per symbol, unpacked, and the bar close each one describes."""

    service: str
    symbols: tuple[str, ...]
    features: tuple[str, ...]
    # symbols x window rows x features, float64, oldest row first (`VectorLayout`); NaN where a
    # value is null or the row lies before the symbol's first bar
    window: np.ndarray
    as_of: tuple[pd.Timestamp | None, ...]  # the vector's available_at (bar close), UTC

    @property
    def values(self) -> np.ndarray:
        """The latest row per symbol (symbols x features): the bar close ``as_of`` names."""
        latest: np.ndarray = self.window[:, -1, :]
        return latest

    def to_json(self) -> dict[str, Any]:
        """The `sextant features online --json` record: the latest row (NaN is null)."""
        return {
            "service": self.service,
            "features": list(self.features),
            "window": int(self.window.shape[1]),
            "rows": [
                {
                    "symbol": symbol,
                    "as_of": None if as_of is None else as_of.isoformat(),
                    "values": {
                        name: None if np.isnan(value) else float(value)
                        for name, value in zip(self.features, row, strict=True)
                    },
                }
                for symbol, as_of, row in zip(self.symbols, self.as_of, self.values, strict=True)
            ],
        }


@dataclass(frozen=True, slots=True)
class ViewReport:
    """What one materialization of one feature view wrote into the online store."""

    view: str
    rows: int  # table rows loaded: newer than what the online store held for their symbol
    start: datetime
    end: datetime
    seconds: float
    incremental: bool  # False for the view's first (backfill) run

    def to_json(self) -> dict[str, Any]:
        """The `sextant features materialize --json` record."""
        return {
            "view": self.view,
            "rows": self.rows,
            "start": self.start.isoformat(),
            "end": self.end.isoformat(),
            "seconds": round(self.seconds, 3),
            "incremental": self.incremental,
        }


def online_store_block(settings: Settings) -> dict[str, Any]:
    """The settings' Feast online store block; a sqlite store without a path lives in the home."""
    block: dict[str, Any] = dict(settings.feast_online_store)
    if block["type"] == "sqlite":
        block.setdefault("path", str(settings.paths.feast_dir / "online.db"))
    return block


def _online_store_name(settings: Settings) -> str:
    """Where online reads come from, for error messages: a sqlite path, else the store's type."""
    block = online_store_block(settings)
    return str(block["path"]) if block["type"] == "sqlite" else f"{block['type']} online store"


def feast_config(settings: Settings) -> RepoConfig:
    """Feast configuration of one home: file registry under it, online and offline stores as set.

    What ``feature_store.yaml`` would hold, built in Python so that paths follow the home.
    """
    from feast import RepoConfig

    paths = settings.paths
    return RepoConfig(
        project="sextant",
        provider="local",
        registry=str(paths.feast_dir / "registry.db"),
        online_store=online_store_block(settings),
        offline_store=dict(settings.feast_offline_store),
        entity_key_serialization_version=3,  # 0.67's default; lower versions are deprecated
        repo_path=str(paths.feast_dir),
    )


class FeastStore:
    """One home's feature store: declarations bound to its tables, its registry and online store.

    Hold one per process for repeated online reads; the module-level functions open one per call.
    """

    def __init__(self, settings: Settings, *, repo_dir: Path | None = None) -> None:
        self.settings = settings
        self.paths = settings.paths
        self._repo_dir = repo_dir
        self._declarations: Declarations | None = None
        self._store: FeatureStore | None = None
        self._services: dict[str, FeatureService] = {}
        self._vector_refs: dict[str, str] = {}
        self._vector_views: dict[str, Any] = {}  # service -> its packed vector FeatureView
        online = online_store_block(settings)
        self._online_version = ChangeToken(
            Path(str(online["path"])) if online["type"] == "sqlite" else None
        )

    @property
    def declarations(self) -> Declarations:
        """The repo's declarations, sources bound to this home's features directory."""
        if self._declarations is None:
            self._declarations = load_declarations(self.paths.features_dir, self._repo_dir)
        return self._declarations

    @property
    def store(self) -> FeatureStore:
        """The underlying Feast `FeatureStore` (created on first use)."""
        if self._store is None:
            from feast import FeatureStore

            self._store = FeatureStore(config=feast_config(self.settings))
        return self._store

    def table_path(self, view: str) -> Path:
        """The parquet table a feature view reads."""
        return self.paths.features_dir / f"{view}.parquet"

    def apply(self) -> None:
        """Register the declarations (idempotent); re-run whenever the home moves."""
        self.paths.feast_dir.mkdir(parents=True, exist_ok=True)
        online = online_store_block(self.settings)
        if online["type"] == "sqlite":  # sqlite creates its file, not the directory
            Path(str(online["path"])).parent.mkdir(parents=True, exist_ok=True)
        self.store.apply(self.declarations.all())
        self._services.clear()
        self._vector_refs.clear()

    def materialize(self, *, end: datetime | None = None) -> list[ViewReport]:
        """Apply, then load each view's rows not yet online, up to ``end``, into the online store.

        ``end`` defaults to just after each table's latest ``available_at`` (data may be
        historical, so never wall-clock now). What is new is judged per symbol against the
        timestamp the online store holds for it, not against Feast's per-view watermark
        (`materialize_incremental`): that watermark would skip the catch-up rows of a symbol
        whose ingest lagged behind another's, and its first run (now - ttl) skips history.
        As in Feast, an explicit ``end`` earlier than what is online rewinds the symbols that
        have rows in the loaded interval to their latest row at or before ``end``.
        """
        tables = {
            v.name: self._read(v.name, ["symbol", "available_at"]) for v in self.declarations.views
        }
        for name, table in tables.items():
            if table.empty:
                raise DataValidationError(
                    f"feature table for view {name!r} has no rows; {BUILD_HINT}",
                    origin=str(self.table_path(name)),
                )
        self._check_vector_layouts(tables)
        self.apply()
        return [self._materialize_view(v, tables[v.name], end) for v in self.declarations.views]

    def _check_vector_layouts(self, tables: dict[str, pd.DataFrame]) -> None:
        """Refuse a vector table packed for another layout than its service's (stale build)."""
        for service, view in SERVICE_VECTOR_VIEWS.items():
            if view not in tables:
                continue
            packed = packed_layout(self.table_path(view))
            if packed != vector_layout(service):
                raise DataValidationError(
                    f"vector table of {service!r} was packed for other features or another "
                    f"window than the service's now; {BUILD_HINT}",
                    origin=str(self.table_path(view)),
                    field=VECTOR_FIELD,
                )

    def _materialize_view(
        self, view: FeatureView, table: pd.DataFrame, end: datetime | None
    ) -> ViewReport:
        began = time.perf_counter()
        view_end = _utc(end, "end") if end is not None else _after(table["available_at"].max())
        incremental = bool(self.store.get_feature_view(view.name).materialization_intervals)
        online = self._online_watermarks(view, sorted(set(table["symbol"])))
        known = table["symbol"].map(online)  # NaT where the symbol is not online yet
        at = table["available_at"].dt.floor("us")  # Feast keeps microseconds
        new = at[(known.isna() | (at > known)) & (at <= view_end)]
        start = _at_or_before(new.min()) if not new.empty else view_end
        if not new.empty:
            with _quiet():
                self.store.materialize(start, view_end, feature_views=[view.name])
        return ViewReport(
            view=view.name,
            rows=len(new),
            start=start,
            end=view_end,
            seconds=time.perf_counter() - began,
            incremental=incremental,
        )

    def _online_watermarks(self, view: FeatureView, symbols: list[str]) -> pd.Series:
        """Per symbol, the ``available_at`` of the row the online store holds for ``view``."""
        from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

        feature = f"{view.name}:{view.features[0].name}"
        response = self.store.get_online_features(
            features=[feature], entity_rows=[{"symbol": s} for s in symbols]
        )
        names = list(response.proto.metadata.feature_names.val)
        vector = response.proto.results[names.index(view.features[0].name)]
        held = {
            symbol: pd.Timestamp(vector.event_timestamps[row].ToDatetime(), tz="UTC")
            for row, symbol in enumerate(symbols)
            if vector.statuses[row] != FieldStatus.NOT_FOUND
        }
        return pd.Series(held, dtype="datetime64[ns, UTC]")

    def training_frame(
        self,
        feature_service: str,
        symbols: Sequence[str] | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        *,
        entity_df: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Point-in-time features of a service at every bar close of ``symbols`` in [start, end].

        Alternatively ``entity_df`` (columns symbol, event_timestamp) asks for arbitrary times;
        rows come back in its order. Columns: symbol, event_timestamp (UTC), then the service's
        features in registry order; a value not yet available at a row's time is NaN.
        """
        names = _service_names(feature_service)
        views = _service_views(names)
        for view in views:
            self._require_table(view)
        if entity_df is None:
            if symbols is None:
                raise ConfigError(
                    "training_frame needs symbols (start/end optional) or an entity_df"
                )
            entities = self._bar_closes(
                symbols,
                None if start is None else _utc(start, "start"),
                None if end is None else _utc(end, "end"),
            )
        else:
            if symbols is not None or start is not None or end is not None:
                raise ConfigError(
                    "training_frame takes either symbols/start/end or entity_df, not both"
                )
            entities = self._checked_entities(entity_df)
        if entities.empty:
            return _empty_frame(names)
        self._ensure_applied()  # the registry must point at this home's tables
        service = self._service(feature_service)
        with _quiet():
            job = self.store.get_historical_features(
                entity_df=entities.assign(**{_ROW: range(len(entities))}), features=service
            )
            result = job.to_df().sort_values(_ROW).reset_index(drop=True)
        result["event_timestamp"] = _as_utc_ns(result["event_timestamp"])
        return result[[*ENTITY_COLUMNS, *names]].astype(dict.fromkeys(names, "float64"))

    def online_features(self, feature_service: str, symbols: Sequence[str]) -> pd.DataFrame:
        """Latest materialized features of a service per symbol: symbol, then features in order.

        The latest row of the service's window (`online_vectors` has the whole window).
        """
        names = _service_names(feature_service)
        frame = pd.DataFrame(self.online_array(feature_service, symbols), columns=list(names))
        frame.insert(0, "symbol", list(symbols))
        return frame

    def online_array(self, feature_service: str, symbols: Sequence[str]) -> np.ndarray:
        """The same values as `online_features` as a float64 matrix (symbols x features): no pandas.

        Reads the service's packed vector view (`features.vectors`): one Feast online read of
        one value per symbol, instead of one value per feature from each of the kind views.
        """
        window, _ = self._read_online_vectors((feature_service,), symbols)[feature_service]
        latest: np.ndarray = window[:, -1, :]
        return latest

    def online_vectors(self, feature_service: str, symbols: Sequence[str]) -> OnlineVectors:
        """A service's whole online window per symbol, and the bar close it describes."""
        return self.online_read(symbols, (feature_service,))[feature_service]

    def online_version(self) -> tuple[int, int] | None:
        """A token that changes whenever the online store's content may have changed (None: a
        store that cannot be watched, read it every time); see `features.change_token`."""
        return self._online_version.token()

    def online_read(
        self, symbols: Sequence[str], services: Sequence[str] = ONLINE_SERVICES
    ) -> dict[str, OnlineVectors]:
        """Every service's online vector per symbol: one read of each service's packed view, for
        all symbols at once (one row per symbol and view).

        By default the services the decision engine reads (`sextant.contracts.ONLINE_SERVICES`):
        the TA signal's features, each model family's input (the LSTM's whole sequence, GARCH's
        return window; `features.online` turns them into model inputs).
        """
        read = self._read_online_vectors(tuple(dict.fromkeys(services)), symbols)
        return {
            service: OnlineVectors(
                service=service,
                symbols=tuple(symbols),
                features=_service_names(service),
                window=window,
                as_of=stamps,
            )
            for service, (window, stamps) in read.items()
        }

    def _read_online_vectors(
        self, services: tuple[str, ...], symbols: Sequence[str]
    ) -> dict[str, tuple[np.ndarray, tuple[pd.Timestamp | None, ...]]]:
        """Per service: windows (symbols x rows x features) and each vector's bar close.

        One row per symbol and view through the provider's ``online_read`` (Feast's public
        provider interface, what ``get_online_features`` reads with): the packed vectors need
        none of ``get_online_features``' per-feature response building, which cost about 0.55
        of its 0.7 ms for the four decision views of one symbol (docs/serving.md, "Latency").
        """
        layouts = {service: vector_layout(service) for service in services}
        if not symbols:
            return {
                service: (np.empty((0, layout.window, len(layout.features))), ())
                for service, layout in layouts.items()
            }
        from feast.protos.feast.types.EntityKey_pb2 import EntityKey
        from feast.protos.feast.types.Value_pb2 import Value

        keys = [
            EntityKey(join_keys=["symbol"], entity_values=[Value(string_val=s)]) for s in symbols
        ]
        store = self.store
        read = {}
        for service in services:
            view = self._vector_view(service)
            rows = store.provider.online_read(
                config=store.config, table=view, entity_keys=keys, requested_features=[VECTOR_FIELD]
            )
            matrix, stamps = _vectors_of(rows, service, layouts[service].size)
            missing = [s for s, stamp in zip(symbols, stamps, strict=True) if stamp is None]
            if missing:
                raise DataValidationError(
                    f"no online features of {service!r} for symbol(s) {', '.join(missing)}; "
                    f"{MATERIALIZE_HINT} (and {BUILD_HINT} if the symbol is new)",
                    origin=_online_store_name(self.settings),
                    field="symbol",
                )
            read[service] = (unpack_vectors(matrix, layouts[service]), stamps)
        return read

    def online_per_feature(self, feature_service: str, symbols: Sequence[str]) -> np.ndarray:
        """The service's features read one by one from the kind views (Feast's service read).

        Slower than `online_array` (Feast builds a value per feature): the reference the packed
        vectors are checked against (tests) and measured against (`make bench`).
        """
        names = _service_names(feature_service)
        if not symbols:
            return np.empty((0, len(names)))
        self._require_registry()
        response = self.store.get_online_features(
            features=self._service(feature_service),
            entity_rows=[{"symbol": s} for s in symbols],
        )
        matrix, _ = _read_response(response.proto, names, len(symbols))
        return matrix

    # --- internals ------------------------------------------------------------------------------

    def _ensure_applied(self) -> None:
        """Apply only when the registry lacks a declaration or holds another version of it.

        Reads stay read-only in the common case: Feast rewrites its file registry in place, so an
        apply racing another process's read is best avoided. Specs hold the source paths, so a
        home that moved is re-applied.
        """
        if not self._registry_is_current():
            self.apply()

    def _registry_is_current(self) -> bool:
        from feast.errors import FeastObjectNotFoundException, ProjectNotFoundException

        if not (self.paths.feast_dir / "registry.db").is_file():
            return False
        declared = self.declarations
        lookups = (
            (self.store.get_entity, declared.entities),
            (self.store.get_feature_view, declared.views),
            (self.store.get_feature_service, declared.services),
        )
        try:
            return all(
                get(obj.name).to_proto().spec == obj.to_proto().spec
                for get, objects in lookups
                for obj in objects
            )
        except (FeastObjectNotFoundException, ProjectNotFoundException):
            return False

    def _require_registry(self) -> None:
        if not (self.paths.feast_dir / "registry.db").exists():
            raise ConfigError(f"no Feast registry in {self.paths.feast_dir}; {MATERIALIZE_HINT}")

    def _vector_ref(self, service: str) -> str:
        """``<vector view>:vector`` of a service, once checked to be registered (cached)."""
        ref = self._vector_refs.get(service)
        if ref is None:
            from feast.errors import FeatureViewNotFoundException

            view = SERVICE_VECTOR_VIEWS[service]
            self._require_registry()
            try:
                self._vector_views[service] = self.store.get_feature_view(view)
            except FeatureViewNotFoundException:
                raise ConfigError(
                    f"feature view {view!r} is not in the Feast registry of {self.paths.feast_dir}; "
                    f"{MATERIALIZE_HINT}"
                ) from None
            ref = self._vector_refs[service] = f"{view}:{VECTOR_FIELD}"
        return ref

    def _vector_view(self, service: str) -> Any:
        """The service's packed vector view (a Feast ``FeatureView``), checked and cached."""
        self._vector_ref(service)
        return self._vector_views[service]

    def _service(self, name: str) -> FeatureService:
        """The registered service (cached: the hot path of online reads)."""
        service = self._services.get(name)
        if service is None:
            from feast.errors import FeatureServiceNotFoundException

            self.declarations.service(name)  # ConfigError when the repo does not declare it
            try:
                service = self.store.get_feature_service(name)
            except FeatureServiceNotFoundException:
                raise ConfigError(
                    f"feature service {name!r} is not in the Feast registry of {self.paths.feast_dir}; "
                    f"{MATERIALIZE_HINT}"
                ) from None
            self._services[name] = service
        return service

    def _require_table(self, view: str) -> Path:
        path = self.table_path(view)
        if not path.is_file():
            raise DataValidationError(
                f"feature table for view {view!r} not built yet; {BUILD_HINT}", origin=str(path)
            )
        return path

    def _read(self, view: str, columns: list[str]) -> pd.DataFrame:
        import pyarrow.parquet as pq

        path = self._require_table(view)
        try:
            present = set(pq.read_schema(path).names)
        except (ValueError, OSError) as exc:  # pyarrow's ArrowInvalid is a ValueError
            raise DataValidationError(
                f"unreadable feature table ({exc}); {BUILD_HINT}", origin=str(path)
            ) from exc
        missing = [c for c in columns if c not in present]
        if missing:
            raise DataValidationError(
                f"feature table for view {view!r} lacks column(s) {', '.join(missing)}; {BUILD_HINT}",
                origin=str(path),
                field=missing[0],
            )
        frame = pd.read_parquet(path, columns=columns)
        frame["available_at"] = _as_utc_ns(frame["available_at"], origin=path)
        return frame

    def _bar_rows(self) -> pd.DataFrame:
        frames = [self._read(v, ["symbol", "available_at"]) for v in BAR_VIEWS]
        return pd.concat(frames, ignore_index=True).drop_duplicates()

    def _require_symbols(self, symbols: Sequence[str], known: set[str]) -> None:
        missing = [s for s in dict.fromkeys(symbols) if s not in known]
        if missing:
            raise DataValidationError(
                f"no feature rows for symbol(s) {', '.join(missing)} (tables have: "
                f"{', '.join(sorted(known)) or 'none'}); add them to SEXTANT_SYMBOLS, ingest, "
                f"then {BUILD_HINT}",
                origin=str(self.paths.features_dir),
                field="symbol",
            )

    def _bar_closes(
        self, symbols: Sequence[str], start: datetime | None, end: datetime | None
    ) -> pd.DataFrame:
        """Every bar close of the symbols within [start, end] (an open end is unbounded)."""
        if start is not None and end is not None and start > end:
            raise ConfigError(f"training_frame start {start} is after end {end}")
        rows = self._bar_rows()
        self._require_symbols(symbols, set(rows["symbol"]))
        order = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
        keep = rows["symbol"].isin(order)
        if start is not None:
            keep &= rows["available_at"] >= start
        if end is not None:
            keep &= rows["available_at"] <= end
        chosen = rows[keep]
        chosen = chosen.assign(_order=chosen["symbol"].map(order)).sort_values(
            ["_order", "available_at"]
        )
        return pd.DataFrame(
            {
                "symbol": chosen["symbol"].to_numpy(dtype=object),
                "event_timestamp": chosen["available_at"].to_numpy(),
            }
        ).astype({"event_timestamp": "datetime64[ns, UTC]"})

    def _checked_entities(self, entity_df: pd.DataFrame) -> pd.DataFrame:
        missing = [c for c in ENTITY_COLUMNS if c not in entity_df.columns]
        if missing:
            raise DataValidationError(
                f"entity_df lacks column(s) {', '.join(missing)}", origin="entity_df"
            )
        entities = entity_df[list(ENTITY_COLUMNS)].reset_index(drop=True)
        entities["event_timestamp"] = _as_utc_ns(entities["event_timestamp"], origin="entity_df")
        self._require_symbols(entities["symbol"].tolist(), set(self._bar_rows()["symbol"]))
        return entities


def materialize(
    settings: Settings, *, end: datetime | None = None, repo_dir: Path | None = None
) -> list[ViewReport]:
    """Apply, then load new feature rows into the online store: backfill once, then incremental."""
    return FeastStore(settings, repo_dir=repo_dir).materialize(end=end)


def training_frame(
    feature_service: str,
    symbols: Sequence[str] | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    *,
    settings: Settings,
    entity_df: pd.DataFrame | None = None,
    repo_dir: Path | None = None,
) -> pd.DataFrame:
    """Point-in-time training rows of a feature service (see `FeastStore.training_frame`)."""
    store = FeastStore(settings, repo_dir=repo_dir)
    return store.training_frame(feature_service, symbols, start, end, entity_df=entity_df)


def online_features(
    feature_service: str,
    symbols: Sequence[str],
    *,
    settings: Settings,
    repo_dir: Path | None = None,
) -> pd.DataFrame:
    """Latest online features of a service per symbol (see `FeastStore.online_features`)."""
    return FeastStore(settings, repo_dir=repo_dir).online_features(feature_service, symbols)


# --- helpers ------------------------------------------------------------------------------------


def _service_names(feature_service: str) -> tuple[str, ...]:
    try:
        return service_features(feature_service)
    except KeyError as exc:
        raise ConfigError(str(exc.args[0])) from None


def _service_views(names: tuple[str, ...]) -> list[str]:
    features = by_name()
    return list(dict.fromkeys(FEATURE_VIEWS[features[n].kind] for n in names))


def _empty_frame(names: tuple[str, ...]) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "symbol": pd.Series(dtype=object),
            "event_timestamp": pd.Series(dtype="datetime64[ns, UTC]"),
        }
    )
    for name in names:
        frame[name] = pd.Series(dtype="float64")
    return frame


def _utc(value: datetime, name: str) -> datetime:
    """A tz-aware datetime converted to UTC; naive times are refused (they are ambiguous)."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ConfigError(f"{name} must be timezone-aware (UTC), got naive {value.isoformat()}")
    return pd.Timestamp(value).tz_convert("UTC").to_pydatetime()


def _at_or_before(earliest: pd.Timestamp) -> datetime:
    """``earliest`` in microseconds (the precision Feast keeps for intervals), never later."""
    result: datetime = earliest.floor("us").to_pydatetime()
    return result


def _after(latest: pd.Timestamp) -> datetime:
    """Just after ``latest``, in microseconds (the precision Feast keeps for intervals)."""
    result: datetime = (latest.floor("us") + _ONE_US).to_pydatetime()
    return result


def _as_utc_ns(column: pd.Series, *, origin: object = None) -> pd.Series:
    if not isinstance(column.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"expected tz-aware UTC timestamps, got dtype {column.dtype}",
            origin=None if origin is None else str(origin),
            field=str(column.name),
        )
    converted: pd.Series = column.dt.tz_convert("UTC").astype("datetime64[ns, UTC]")
    return converted


def _read_response(proto: Any, names: tuple[str, ...], rows: int) -> tuple[np.ndarray, list[bool]]:
    """Values of ``names`` (NaN where null or absent) and, per row, whether anything was found.

    Reads the response proto directly: `OnlineResponse.to_dict` converts value by value and
    costs about as much as the store read itself (this is the serving hot path).
    """
    from feast.protos.feast.serving.ServingService_pb2 import FieldStatus

    by_name = dict(zip(proto.metadata.feature_names.val, proto.results, strict=True))
    absent = [name for name in names if name not in by_name]
    if absent:  # the registry holds an older version of the service
        raise ConfigError(
            f"the registered feature service lacks {', '.join(absent)}; {MATERIALIZE_HINT}"
        )
    vectors = [by_name[name] for name in names]
    found = [any(v.statuses[row] != FieldStatus.NOT_FOUND for v in vectors) for row in range(rows)]
    matrix = np.array(
        [
            [x.double_val if x.HasField("double_val") else _scalar(x) for x in vector.values]
            for vector in vectors
        ],
        dtype="float64",
    ).T
    return matrix, found


def _vectors_of(
    rows: Sequence[tuple[Any, Any]], service: str, width: int
) -> tuple[np.ndarray, tuple[pd.Timestamp | None, ...]]:
    """The provider's rows as a matrix of packed vectors (a null vector is a row of NaN) and
    each row's event timestamp (the bar close it describes; None when the symbol has no row)."""
    matrix = np.full((len(rows), width), np.nan)
    stamps: list[pd.Timestamp | None] = []
    for row, (moment, values) in enumerate(rows):
        if moment is None or values is None:
            stamps.append(None)
            continue
        stamp = pd.Timestamp(moment)
        stamps.append(stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC"))
        value = values.get(VECTOR_FIELD)
        kind = None if value is None else value.WhichOneof("val")
        if kind == "double_list_val":
            packed = value.double_list_val.val
            if len(packed) != width:
                raise DataValidationError(
                    f"online vector of {service!r} holds {len(packed)} values, its layout "
                    f"{width}; {BUILD_HINT}, then {MATERIALIZE_HINT}",
                    field=VECTOR_FIELD,
                )
            matrix[row] = packed
        elif kind not in (None, "null_val"):
            raise DataValidationError(f"online vector of {service!r} is a {kind}, not doubles")
    return matrix, tuple(stamps)


def _scalar(value: Any) -> float:
    """A non-double online value: null or absent is NaN; another number is widened."""
    kind = value.WhichOneof("val")
    if kind is None or kind == "null_val":
        return float("nan")
    number = getattr(value, kind)
    if not isinstance(number, int | float):
        raise DataValidationError(f"online feature value of kind {kind} is not a number")
    return float(number)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Keep Feast's progress prints off stdout (callers report ViewReports); log them at DEBUG.

    Also hides ibis 12's `fetch_arrow_table` DeprecationWarning under duckdb 1.5 (STACK-NOTES):
    it comes from inside the offline store and users cannot act on it.
    """
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured), warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*fetch_arrow_table.*", category=DeprecationWarning
        )
        yield
    if captured.getvalue().strip():
        log.debug("feast: %s", captured.getvalue().strip())
