"""The price a decision is made at: the close of the bar its features describe.

The online vectors hold scale-free features only (no close), so the price comes from the market
store, opened read-only for one query per request. DuckDB admits one read-write process per file
(STACK-NOTES): while an ingest holds the store, this read fails, and the caller falls back to the
last price it read (`DecisionEngine`).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from features.ingest.store import MarketStore
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["latest_closes"]


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
