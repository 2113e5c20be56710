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

from features.build import choose_candle_source
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
    "market_history",
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
    (a market gap: the book's pending orders lapse, as in the backtest)."""
    bar = timeframe_to_timedelta(settings.timeframe)
    if last_open < first_open:
        return []
    opens = pd.date_range(first_open, last_open, freq=bar, tz="UTC")
    candles: dict[pd.Timestamp, dict[str, Candle]] = {t: {} for t in opens}
    funding: dict[pd.Timestamp, dict[str, float]] = {t: {} for t in opens}
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol in symbols:
            source = choose_candle_source(store, symbol, settings.timeframe, settings.candle_source)
            rows = store.query(
                "SELECT event_ts, open, high, low, close, volume FROM candles WHERE source = ? "
                "AND symbol = ? AND timeframe = ? AND event_ts >= ? AND event_ts <= ? "
                "ORDER BY event_ts",
                [source, symbol, settings.timeframe, first_open, last_open],
            )
            stamps = pd.DatetimeIndex(rows["event_ts"]).tz_convert("UTC")
            values = rows[["open", "high", "low", "close", "volume"]].to_numpy(dtype=float)
            for stamp, (o, h, lo, c, v) in zip(stamps, values.tolist(), strict=True):
                candles[stamp][symbol] = Candle(open=o, high=h, low=lo, close=c, volume=v)
            rates = store.query(
                "SELECT event_ts, any_value(funding_rate ORDER BY source) AS rate "
                "FROM funding_rates WHERE symbol = ? AND event_ts >= ? AND event_ts < ? "
                "GROUP BY event_ts",
                [perp_symbol(symbol), first_open, last_open + bar],
            )
            settles = pd.DatetimeIndex(rates["event_ts"]).tz_convert("UTC")
            for stamp, rate in zip(
                settles, rates["rate"].to_numpy(dtype=float).tolist(), strict=True
            ):
                settle = _floor(stamp, bar)
                if settle in funding:
                    funding[settle][symbol] = funding[settle].get(symbol, 0.0) + rate
    return [ClosedBar(t.to_pydatetime(), candles[t], funding[t]) for t in opens]


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


def market_history(
    store: MarketStore, settings: Settings, symbol: str, *, start: datetime | None = None
) -> MarketHistory:
    """``symbol``'s candles and funding from ``start`` (everything stored when None)."""
    source = choose_candle_source(store, symbol, settings.timeframe, settings.candle_source)
    candles = store.query(
        "SELECT event_ts, open, high, low, close, volume FROM candles WHERE source = ? AND "
        "symbol = ? AND timeframe = ? AND event_ts >= ? ORDER BY event_ts",
        [source, symbol, settings.timeframe, start or datetime(1970, 1, 1, tzinfo=UTC)],
    )
    funding = store.query(
        "SELECT event_ts, any_value(funding_rate ORDER BY source) AS funding_rate "
        "FROM funding_rates WHERE symbol = ? AND event_ts >= ? GROUP BY event_ts "
        "ORDER BY event_ts",
        [perp_symbol(symbol), start or datetime(1970, 1, 1, tzinfo=UTC)],
    )
    for frame in (candles, funding):
        frame["event_ts"] = pd.to_datetime(frame["event_ts"], utc=True)
    return MarketHistory(symbol, source, candles, funding)


def latest_closes(settings: Settings, as_of: Mapping[str, datetime]) -> dict[str, float]:
    """Per symbol, the close of its latest candle that had closed by ``as_of[symbol]``.

    Candles of ``settings.candle_source`` (any stored source with "auto", the most recent bar
    first); a symbol without such a candle is left out.
    """
    if not as_of:
        return {}
    bar = timeframe_to_timedelta(settings.timeframe)
    source = settings.candle_source
    closes: dict[str, float] = {}
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol, moment in as_of.items():
            sql = (
                "SELECT close FROM candles WHERE symbol = ? AND timeframe = ? AND event_ts <= ?"
                + ("" if source == "auto" else " AND source = ?")
                + " ORDER BY event_ts DESC, source LIMIT 1"
            )
            params: list[object] = [symbol, settings.timeframe, moment - bar]
            if source != "auto":
                params.append(source)
            rows = store.query(sql, params)
            if not rows.empty:
                closes[symbol] = float(rows["close"].iloc[0])
    return closes


def _floor(ts: pd.Timestamp, bar: timedelta) -> pd.Timestamp:
    epoch = pd.Timestamp(0, tz="UTC")
    return epoch + ((ts - epoch) // pd.Timedelta(bar)) * pd.Timedelta(bar)
