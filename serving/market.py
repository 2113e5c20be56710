"""What the paper book and the decision price read from the market store.

The online vectors hold scale-free features only, so prices come from the market store (DuckDB,
opened read-only for one query batch). DuckDB admits one read-write process per file
(STACK-NOTES): while an ingest holds the file these reads fail, and the caller retries or falls
back (`DecisionEngine`). Both reads happen once per new bar, not per request: the engine caches
what it read.

Candles are those of the source the features were built from (`features.build.choose_candle_source`
with the settings' ``candle_source``); funding is the symbol's perpetual's rate settling within a
bar, summed (as the backtest charges it, `models.backtest`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from features.build import choose_candle_sources
from features.compute import perp_symbol
from features.ingest.store import MarketStore
from sextant.errors import DataValidationError, SourceUnavailableError
from sextant.execution import Candle
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "ClosedBar",
    "MarketHistory",
    "MarketReader",
    "closed_bars",
    "latest_closes",
    "market_histories",
    "market_updates",
    "open_market",
    "perp_of",
]


@dataclass(frozen=True, slots=True)
class ClosedBar:
    """One bar for ``PaperBroker.on_bar``: its open, the candles that traded, the funding due."""

    bar_open: datetime
    candles: Mapping[str, Candle]
    funding: Mapping[str, float]


def closed_bars(
    settings: Settings, symbols: Sequence[str], first_open: datetime, last_open: datetime
) -> list[ClosedBar]:
    """Every bar opening in ``[first_open, last_open]``, in order, a bar without any candle too
    (a market gap: the book's pending orders lapse, as in the backtest). Three queries whatever
    the number of symbols: the candle sources, the candles, the funding."""
    bar = timeframe_to_timedelta(settings.timeframe)
    if last_open < first_open:
        return []
    opens = pd.date_range(first_open, last_open, freq=bar, tz="UTC")
    candles: dict[pd.Timestamp, dict[str, Candle]] = {t: {} for t in opens}
    funding: dict[pd.Timestamp, dict[str, float]] = {t: {} for t in opens}
    names = list(symbols)
    marks = ", ".join("?" * len(names))
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        sources = candle_sources(store, settings, names)
        rows = store.query(
            "SELECT symbol, source, event_ts, open, high, low, close, volume FROM candles "
            f"WHERE symbol IN ({marks}) AND timeframe = ? AND event_ts >= ? AND event_ts <= ? "
            "ORDER BY event_ts",
            [*names, settings.timeframe, first_open, last_open],
        )
        perps = {perp_symbol(symbol): symbol for symbol in names}
        rates = store.query(
            "SELECT symbol, event_ts, any_value(funding_rate ORDER BY source) AS rate "
            f"FROM funding_rates WHERE symbol IN ({', '.join('?' * len(perps))}) "
            "AND event_ts >= ? AND event_ts < ? GROUP BY symbol, event_ts",
            [*perps, first_open, last_open + bar],
        )
    chosen = [
        sources.get(sym) == src for sym, src in zip(rows["symbol"], rows["source"], strict=True)
    ]
    rows = rows[chosen]
    stamps = pd.DatetimeIndex(rows["event_ts"]).tz_convert("UTC")
    values = rows[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float).tolist()
    for symbol, stamp, (o, h, lo, c, v) in zip(rows["symbol"], stamps, values, strict=True):
        candles[stamp][str(symbol)] = Candle(open=o, high=h, low=lo, close=c, volume=v)
    settles = pd.DatetimeIndex(rates["event_ts"]).tz_convert("UTC")
    amounts = rates["rate"].to_numpy(dtype=float).tolist()
    for perp, stamp, rate in zip(rates["symbol"], settles, amounts, strict=True):
        settle, symbol = _floor(stamp, bar), perps[str(perp)]
        if settle in funding:
            funding[settle][symbol] = funding[settle].get(symbol, 0.0) + rate
    return [ClosedBar(t.to_pydatetime(), candles[t], funding[t]) for t in opens]


def candle_sources(
    store: MarketStore, settings: Settings, symbols: Sequence[str]
) -> dict[str, str]:
    """Per symbol, the candle source the features are built from (one query for all)."""
    return choose_candle_sources(store, symbols, settings.timeframe, settings.candle_source)


@dataclass(frozen=True, slots=True)
class MarketHistory:
    """One symbol's stored candles (``event_ts, open, high, low, close, volume``, oldest first,
    of the features' candle source) and its perpetual's funding (``event_ts, funding_rate``)."""

    symbol: str
    source: str
    candles: pd.DataFrame
    funding: pd.DataFrame


def open_market(settings: Settings) -> MarketStore:
    """The market store, read-only (for readers outside `features`, e.g. the monitor)."""
    return MarketStore(settings.paths.market_db, read_only=True)


def market_histories(
    store: MarketStore, settings: Settings, symbols: Sequence[str], *, start: datetime | None = None
) -> dict[str, MarketHistory]:
    """Each symbol's candles (of the features' source) and funding from ``start`` (everything
    stored when None), in three queries (sources, candles, funding); a symbol without candles
    is left out."""
    sources = candle_sources(store, settings, symbols)
    names = [s for s in symbols if s in sources]
    if not names:
        return {}
    since = start or datetime(1970, 1, 1, tzinfo=UTC)
    match = " OR ".join("(symbol = ? AND source = ?)" for _ in names)
    candles = store.query(
        "SELECT symbol, event_ts, open, high, low, close, volume FROM candles WHERE timeframe = ? "
        f"AND event_ts >= ? AND ({match}) ORDER BY symbol, event_ts",
        [settings.timeframe, since, *[x for s in names for x in (s, sources[s])]],
    )
    perps = {perp_symbol(s): s for s in names}
    funding = store.query(
        "SELECT symbol, event_ts, any_value(funding_rate ORDER BY source) AS funding_rate "
        f"FROM funding_rates WHERE symbol IN ({', '.join('?' * len(perps))}) AND event_ts >= ? "
        "GROUP BY symbol, event_ts ORDER BY symbol, event_ts",
        [*perps, since],
    )
    for frame in (candles, funding):
        frame["event_ts"] = _utc(frame["event_ts"])
    by_candles = {str(k): g for k, g in candles.groupby("symbol", sort=False)}
    by_funding = {perps[str(k)]: g for k, g in funding.groupby("symbol", sort=False)}
    empty = funding.iloc[0:0]
    return {
        s: MarketHistory(
            s,
            sources[s],
            by_candles[s].drop(columns="symbol").reset_index(drop=True),
            by_funding.get(s, empty).drop(columns="symbol").reset_index(drop=True),
        )
        for s in names
        if s in by_candles
    }


def perp_of(symbol: str) -> str:
    """The perpetual whose funding `market_histories` reads for ``symbol``."""
    return perp_symbol(symbol)


def market_updates(
    store: MarketStore,
    settings: Settings,
    candles_after: Mapping[str, tuple[str, pd.Timestamp | None]],
    funding_after: Mapping[str, pd.Timestamp | None],
) -> dict[str, tuple[pd.DataFrame, pd.DataFrame]]:
    """The rows newer than a reader holds, shaped as `market_histories` returns them: per
    symbol of ``candles_after`` (symbol -> (source, newest held candle or None)) the candles of
    that source after it, per symbol of ``funding_after`` (symbol -> newest held settlement or
    None) its perpetual's funding after it; (candles, funding) per symbol, at most two queries.
    Read-only frames: the symbols without new rows of a kind share one empty frame."""
    floor = pd.Timestamp(1970, 1, 1, tz="UTC")
    candles: pd.DataFrame | None = None
    if candles_after:
        match = " OR ".join("(symbol = ? AND source = ? AND event_ts > ?)" for _ in candles_after)
        candles = store.query(
            "SELECT symbol, event_ts, open, high, low, close, volume FROM candles "
            f"WHERE timeframe = ? AND ({match}) ORDER BY symbol, event_ts",
            [
                settings.timeframe,
                *[
                    x
                    for s, (source, last) in candles_after.items()
                    for x in (s, source, (last or floor).to_pydatetime())
                ],
            ],
        )
    perps = {perp_symbol(s): s for s in funding_after}
    funding: pd.DataFrame | None = None
    if perps:
        rates = " OR ".join("(symbol = ? AND event_ts > ?)" for _ in perps)
        funding = store.query(
            "SELECT symbol, event_ts, any_value(funding_rate ORDER BY source) AS funding_rate "
            f"FROM funding_rates WHERE {rates} GROUP BY symbol, event_ts "
            "ORDER BY symbol, event_ts",
            [x for p, s in perps.items() for x in (p, (funding_after[s] or floor).to_pydatetime())],
        )
    for frame in (candles, funding):
        if frame is not None:
            frame["event_ts"] = _utc(frame["event_ts"])
    by_candles = {} if candles is None else _by_symbol(candles)
    by_funding = {} if funding is None else _by_symbol(funding)
    by_funding = {perps[p]: rows for p, rows in by_funding.items()}
    # a symbol without new rows of one kind gets an empty frame of that kind's columns (built
    # once, when one is needed: most bars settle no funding)
    empties: dict[str, pd.DataFrame] = {}

    def rows(found: dict[str, pd.DataFrame], symbol: str, kind: str) -> pd.DataFrame:
        if symbol in found:
            return found[symbol]
        if kind not in empties:
            columns = _UPDATE_COLUMNS[kind]
            empties[kind] = pd.DataFrame(
                {c: pd.Series(dtype=_UTC_US if c == "event_ts" else float) for c in columns}
            )
        return empties[kind]

    return {
        s: (rows(by_candles, s, "candles"), rows(by_funding, s, "funding"))
        for s in {*candles_after, *funding_after}
    }


_UTC_US = "datetime64[us, UTC]"  # the store's times as its arrow reads come
_UPDATE_COLUMNS = {
    "candles": ("event_ts", "open", "high", "low", "close", "volume"),
    "funding": ("event_ts", "funding_rate"),
}


def _utc(column: pd.Series) -> pd.Series:
    """A time column as tz-aware UTC (``pd.to_datetime`` parses a tz-aware one element by
    element: milliseconds for nothing)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        if str(column.dtype.tz) == "UTC":
            return column  # as DuckDB's arrow times come (the store's session is in UTC)
        utc: pd.Series = column.dt.tz_convert("UTC")
        return utc
    converted: pd.Series = pd.to_datetime(column, utc=True)
    return converted


def _by_symbol(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A frame ordered by symbol split into one frame per symbol (without the column)."""
    if frame.empty:
        return {}
    names = frame["symbol"].to_numpy()
    starts = [0, *(i + 1 for i in range(len(names) - 1) if names[i] != names[i + 1])]
    ends = [*starts[1:], len(names)]
    rest = frame.drop(columns="symbol")
    return {
        str(names[a]): rest.iloc[a:b].reset_index(drop=True)
        for a, b in zip(starts, ends, strict=True)
    }


def latest_closes(settings: Settings, symbols: Sequence[str], moment: datetime) -> dict[str, float]:
    """Per symbol, the close of its latest candle (of the features' source) that had closed by
    ``moment``, in one query; a symbol without such a candle is left out."""
    if not symbols:
        return {}
    bar = timeframe_to_timedelta(settings.timeframe)
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        sources = candle_sources(store, settings, symbols)
        if not sources:
            return {}
        pairs = list(sources.items())
        match = " OR ".join("(symbol = ? AND source = ?)" for _ in pairs)
        rows = store.query(
            "SELECT symbol, arg_max(close, event_ts) AS close FROM candles "
            f"WHERE timeframe = ? AND event_ts <= ? AND ({match}) GROUP BY symbol",
            [settings.timeframe, moment - bar, *[x for pair in pairs for x in pair]],
        )
    return {str(s): float(c) for s, c in zip(rows["symbol"], rows["close"], strict=True)}


def _floor(ts: pd.Timestamp, bar: timedelta) -> pd.Timestamp:
    epoch = pd.Timestamp(0, tz="UTC")
    return epoch + ((ts - epoch) // pd.Timedelta(bar)) * pd.Timedelta(bar)


class _AttachedStore(MarketStore):
    """A `MarketStore` reading through a `MarketReader`'s connection while the file is attached
    (closing it leaves the connection to the reader)."""

    def __init__(self, path: Path, con: duckdb.DuckDBPyConnection) -> None:
        self.path = path
        self._con = con
        self._lock = threading.RLock()

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """`MarketStore.query`'s frame, converted through arrow: DuckDB's own pandas
        conversion costs about a millisecond per tz-aware column even for no rows, which a
        reader of a few new rows per bar pays on every query."""
        with self._lock:
            frame: pd.DataFrame = self._con.execute(sql, params or []).to_arrow_table().to_pandas()
        return frame

    def close(self) -> None:
        """Nothing to do: the reader detaches the file."""


class MarketReader:
    """Read-only access to the market store for a long-lived reader (the monitor's host).

    Holds one in-memory DuckDB connection and ATTACHes the market store file READ_ONLY only for
    the span of one `attached` block, then DETACHes it: between blocks the process holds no lock
    on the file, so `sextant ingest` in another process can open it for writing (DuckDB admits one
    read-write process per file, and none while a reader has it open). Attaching costs a few
    milliseconds where a fresh connection costs ~20 ms. While a writer holds the file, attaching
    raises `SourceUnavailableError` (retry). Not thread-safe: one block at a time.
    """

    def __init__(self, settings: Settings) -> None:
        self.path = settings.paths.market_db
        self._con = duckdb.connect(":memory:")
        self._con.execute("SET TimeZone = 'UTC'")
        # one thread: a bar's queries read a few rows each, where handing the scan to a second
        # thread costs more wall time than it saves (about 2 of 4.5 ms for the new candles on
        # a 2-core machine); a whole window's read takes the same time either way
        self._con.execute("SET threads = 1")

    @contextmanager
    def attached(self) -> Iterator[MarketStore]:
        """The store, attached read-only for the block (missing: `DataValidationError`)."""
        if not self.path.exists():
            raise DataValidationError(
                "market store does not exist yet: run `sextant ingest` first", origin=str(self.path)
            )
        quoted = str(self.path).replace("'", "''")
        try:
            self._con.execute(f"ATTACH '{quoted}' AS {_ATTACHED} (READ_ONLY)")
        except duckdb.IOException as exc:  # a writer (an ingest) holds the file: retry later
            raise SourceUnavailableError(f"market store {self.path} is busy: {exc}") from exc
        try:
            self._con.execute(f"USE {_ATTACHED}")
            yield _AttachedStore(self.path, self._con)
        finally:
            self._con.execute("USE memory")
            self._con.execute(f"DETACH {_ATTACHED}")

    def close(self) -> None:
        """Close the connection (no file is attached between blocks)."""
        self._con.close()


_ATTACHED = "sextant_market"
