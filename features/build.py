"""`sextant features build`: market store → one parquet table per Feast feature view.

Incremental at the symbol level: a manifest keeps a fingerprint of each symbol's inputs (candles,
funding, Fear & Greed, news, and the feature definitions); an unchanged symbol is skipped, a
changed one is recomputed from its full history (EMA-style features have infinite memory, so a
partial recomputation would not reproduce the same numbers) and its rows replaced.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from features.compute import AltData, compute_features, perp_symbol
from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_VIEWS,
    FEATURES,
    ROW_GROUP_ROWS,
    SERVICE_VECTOR_VIEWS,
    SERVICE_WINDOWS,
    Kind,
)
from features.ingest.store import MarketStore
from features.vectors import write_service_vectors
from sextant.errors import DataValidationError
from sextant.settings import Settings

__all__ = [
    "BuildReport",
    "ViewBuild",
    "build_features",
    "choose_candle_source",
    "choose_candle_sources",
    "load_alt_data",
    "view_path",
    "write_view_table",
]

MANIFEST = "_manifest.json"
KEY_COLUMNS = ("symbol", "event_ts", "available_at")


@dataclass(slots=True)
class ViewBuild:
    """What a build did to one feature view's table."""

    view: str
    rows: int = 0
    rows_added: int = 0
    seconds: float = 0.0


@dataclass(slots=True)
class BuildReport:
    """Per-view figures plus which symbols were rebuilt or skipped (unchanged)."""

    views: list[ViewBuild] = field(default_factory=list)
    rebuilt: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        """The `sextant features build --json` record (seconds rounded to milliseconds)."""
        payload = asdict(self)
        payload["seconds"] = round(self.seconds, 3)
        for view in payload["views"]:
            view["seconds"] = round(view["seconds"], 3)
        return payload


def write_view_table(path: Path, table: pd.DataFrame) -> pd.DataFrame:
    """Write a feature view's table as the build does (time-major: sorted by ``available_at``,
    then symbol; zstd, `ROW_GROUP_ROWS` row groups), replacing ``path`` atomically; the table
    as written. Each symbol's rows stay oldest first; the newest rows of every symbol sit in the
    last row groups, which a reader of recent rows (the monitor) decodes alone."""
    table = table.sort_values(["available_at", "symbol"], kind="stable").reset_index(drop=True)
    tmp = path.with_suffix(".parquet.tmp")
    pq.write_table(
        pa.Table.from_pandas(table, preserve_index=False),
        tmp,
        compression="zstd",
        row_group_size=ROW_GROUP_ROWS,
    )
    tmp.replace(path)  # readers never see a half-written table
    return table


def view_path(features_dir: Path, view: str) -> Path:
    """The parquet file behind a feature view."""
    return features_dir / f"{view}.parquet"


def choose_candle_sources(
    store: MarketStore, symbols: Sequence[str], timeframe: str, preferred: str
) -> dict[str, str]:
    """Per symbol, the stored candle source to build from, in one query: ``preferred``, or with
    "auto" the freshest, then the longest; a symbol without such candles is left out."""
    if not symbols:
        return {}
    rows = store.query(
        "SELECT symbol, source, max(event_ts) AS last, count(*) AS n FROM candles "
        f"WHERE symbol IN ({', '.join('?' * len(symbols))}) AND timeframe = ? "
        "GROUP BY symbol, source ORDER BY symbol, last DESC, n DESC, source",
        [*symbols, timeframe],
    )
    chosen: dict[str, str] = {}
    for symbol, source in zip(rows["symbol"], rows["source"], strict=True):
        if preferred == "auto":
            chosen.setdefault(str(symbol), str(source))
        elif source == preferred:
            chosen[str(symbol)] = str(source)
    return chosen


def choose_candle_source(store: MarketStore, symbol: str, timeframe: str, preferred: str) -> str:
    """The stored candle source to build from: ``preferred``, or with "auto" the freshest, then longest."""
    chosen = choose_candle_sources(store, [symbol], timeframe, preferred)
    if symbol in chosen:
        return chosen[symbol]
    stored = store.query(
        "SELECT DISTINCT source FROM candles WHERE symbol = ? AND timeframe = ?",
        [symbol, timeframe],
    )
    if stored.empty:
        raise DataValidationError(
            f"no {timeframe} candles stored for {symbol}: run `sextant ingest` first",
            field="symbol",
        )
    raise DataValidationError(
        f"no {timeframe} candles of source {preferred!r} for {symbol} (stored: {sorted(stored['source'])})",
        field="candle_source",
    )


def load_alt_data(store: MarketStore, symbol: str) -> AltData:
    """Funding of the symbol's perpetual, Fear & Greed and news, deduplicated across sources."""
    funding = store.query(
        "SELECT event_ts, min(available_at) AS available_at, any_value(funding_rate ORDER BY source) AS funding_rate "
        "FROM funding_rates WHERE symbol = ? GROUP BY event_ts ORDER BY event_ts",
        [perp_symbol(symbol)],
    )
    fear_greed = store.query(
        "SELECT event_ts, min(available_at) AS available_at, any_value(value ORDER BY source) AS value "
        "FROM fear_greed GROUP BY event_ts ORDER BY event_ts"
    )
    news = store.query(
        "SELECT min(event_ts) AS event_ts, min(available_at) AS available_at, any_value(sentiment ORDER BY source) AS sentiment "
        "FROM news GROUP BY news_id ORDER BY available_at"
    )
    return AltData(funding=funding, fear_greed=fear_greed, news=news)


def _fingerprint(store: MarketStore, symbol: str, timeframe: str, source: str) -> str:
    parts = (
        store.query(
            "SELECT (SELECT concat(count(*), '/', max(event_ts)) FROM candles "
            "        WHERE source = ? AND symbol = ? AND timeframe = ?) AS candles, "
            "(SELECT concat(count(*), '/', max(available_at)) FROM funding_rates WHERE symbol = ?) AS funding, "
            "(SELECT concat(count(*), '/', max(available_at)) FROM fear_greed) AS fng, "
            "(SELECT concat(count(*), '/', max(available_at)) FROM news) AS news",
            [source, symbol, timeframe, perp_symbol(symbol)],
        )
        .iloc[0]
        .to_dict()
    )
    definitions = [(f.name, f.kind.value, f.window, f.warmup) for f in FEATURES]
    payload = json.dumps(
        {
            "source": source,
            "timeframe": timeframe,
            "inputs": parts,
            "defs": definitions,
            "services": FEATURE_SERVICES,
            "windows": SERVICE_WINDOWS,  # a vector table packed with another window is refused
        },
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def build_features(
    settings: Settings, *, symbols: tuple[str, ...] | None = None, force: bool = False
) -> BuildReport:
    """Recompute the feature tables of the symbols whose inputs changed since the last build."""
    started = time.perf_counter()
    features_dir = settings.paths.features_dir
    features_dir.mkdir(parents=True, exist_ok=True)
    manifest_path = features_dir / MANIFEST
    manifest: dict[str, str] = (
        json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    )
    timeframe = settings.timeframe
    report = BuildReport()
    computed: dict[str, pd.DataFrame] = {}
    fingerprints: dict[str, str] = {}
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol in symbols or settings.symbols:
            source = choose_candle_source(store, symbol, timeframe, settings.candle_source)
            fingerprint = _fingerprint(store, symbol, timeframe, source)
            if not force and manifest.get(symbol) == fingerprint and _tables_exist(features_dir):
                report.skipped.append(symbol)
                continue
            candles = store.candles(symbol, timeframe, source=source)
            computed[symbol] = compute_features(candles, timeframe, load_alt_data(store, symbol))
            fingerprints[symbol] = fingerprint
            report.rebuilt.append(symbol)
    tables = {}
    for kind, view in FEATURE_VIEWS.items():
        built, tables[kind] = _write_view(features_dir, kind, view, computed)
        report.views.append(built)
    if computed:
        report.views.extend(_write_vectors(features_dir, tables))
    manifest.update(fingerprints)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
    report.seconds = time.perf_counter() - started
    return report


def _tables_exist(features_dir: Path) -> bool:
    views = (*FEATURE_VIEWS.values(), *SERVICE_VECTOR_VIEWS.values())
    return all(view_path(features_dir, view).exists() for view in views)


def _write_vectors(features_dir: Path, tables: dict[Kind, pd.DataFrame]) -> list[ViewBuild]:
    """Repack every service's vectors from the kind tables just written (`features.vectors`)."""
    started = time.perf_counter()
    before = {
        view: pq.read_metadata(path).num_rows if path.exists() else 0
        for view in SERVICE_VECTOR_VIEWS.values()
        for path in [view_path(features_dir, view)]
    }
    written = write_service_vectors(features_dir, tables)
    share = (time.perf_counter() - started) / max(len(written), 1)  # one packing serves all
    return [
        ViewBuild(view, rows=rows, rows_added=rows - before[view], seconds=share)
        for view, rows in written.items()
    ]


def _write_view(
    features_dir: Path, kind: Kind, view: str, computed: dict[str, pd.DataFrame]
) -> tuple[ViewBuild, pd.DataFrame]:
    """Replace the rows of the recomputed symbols in one view's table; the table as written."""
    started = time.perf_counter()
    path = view_path(features_dir, view)
    names = [f.name for f in FEATURES if f.kind is kind]
    previous = pd.read_parquet(path) if path.exists() else None
    if not computed and previous is not None:
        unchanged = ViewBuild(
            view, rows=len(previous), rows_added=0, seconds=time.perf_counter() - started
        )
        return unchanged, previous
    kept = previous[~previous["symbol"].isin(list(computed))] if previous is not None else None
    fresh = [frame.loc[:, [*KEY_COLUMNS, *names]] for frame in computed.values()]
    parts = [p for p in (kept, *fresh) if p is not None and len(p)]
    table = (
        pd.concat(parts, ignore_index=True)
        if parts
        else pd.DataFrame(columns=[*KEY_COLUMNS, *names])
    )
    before = 0 if previous is None else len(previous)
    table = write_view_table(path, table)
    built = ViewBuild(
        view, rows=len(table), rows_added=len(table) - before, seconds=time.perf_counter() - started
    )
    return built, table
