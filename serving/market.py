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

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from features.build import choose_candle_sources
from features.compute import perp_symbol
from features.ingest.store import MarketStore
from sextant.execution import Candle
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "ClosedBar",
    "MarketHistory",
    "closed_bars",
    "latest_closes",
    "market_histories",
    "open_market",
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
        frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
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
