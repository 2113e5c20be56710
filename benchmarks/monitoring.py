"""The monitor's time per bar: every detector over one new bar, findings stored.

**4 symbols** run on the serving bench home (`benchmarks.bench_home`: copies of the sample with
features materialized and champions carrying drift references), so the figure includes the model
drift step (feature tables, decision records, matured labels, the references read from MLflow).
**100 symbols** run on a universe of copies ingested into a market store of their own (1,200
hourly bars each, no features or champions): the market and data-quality detectors only; drift
adds about 5 ms per symbol and family on top (docs/monitoring.md, "Model drift").

Each timed call is ``run_monitor(since=<the last bar>)``: the detectors evaluate the newest bar
with their trailing windows (1,000 bars of history read per symbol) and the findings are stored
(a re-run stores nothing new, so the write is a no-op after the first). The first call of each
universe is untimed: it fits the monitor's GARCH reference per symbol (kept in the store).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks.bench_home import BenchSource, bench_home
from benchmarks.common import Figure
from sextant.settings import Settings, load_settings

__all__ = ["run"]

SMALL = 4
LARGE = 100
LARGE_BARS = 1_200
CALLS = 10


def _per_bar(settings: Settings, symbols: tuple[str, ...], last_open: datetime) -> list[float]:
    from agents.monitoring.monitor import run_monitor

    now = last_open + timedelta(hours=1, minutes=5)
    run_monitor(settings, symbols=symbols, since=last_open, now=now)  # fits GARCH: untimed
    times = []
    for _ in range(CALLS):
        began = time.perf_counter()
        run_monitor(settings, symbols=symbols, since=last_open, now=now)
        times.append(time.perf_counter() - began)
    return times


def _last_open(settings: Settings) -> datetime:
    from serving.market import open_market

    with open_market(settings) as store:
        found = store.query(
            "SELECT max(event_ts) AS last FROM candles WHERE timeframe = ?", [settings.timeframe]
        )
    return found["last"].iloc[0].to_pydatetime()


def run() -> list[Figure]:
    """Both universes' p50 and slowest call per bar."""
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore

    home = bench_home()
    small = home.settings.symbols[:SMALL]
    four = _per_bar(home.settings, small, _last_open(home.settings))
    with tempfile.TemporaryDirectory(prefix="sextant-monitor-bench-") as tmp:
        symbols = tuple(f"M{i:03d}/USDT" for i in range(LARGE))
        settings = load_settings(home=Path(tmp), symbols=symbols, candle_source="bench")
        with MarketStore(settings.paths.market_db) as store:
            ingest_source(BenchSource(symbols, bars=LARGE_BARS), store)
        hundred = _per_bar(settings, symbols, _last_open(settings))
    return [
        Figure("monitor_per_bar_4_symbols_p50", statistics.median(four) * 1e3, "ms", "reference"),
        Figure(f"monitor_per_bar_4_symbols_max_of_{CALLS}", max(four) * 1e3, "ms", "< 50 ms"),
        Figure(
            "monitor_per_bar_100_symbols_market_data_p50", statistics.median(hundred), "s",
            "reference",
        ),
        Figure(
            f"monitor_per_bar_100_symbols_market_data_max_of_{CALLS}", max(hundred), "s", "< 1 s"
        ),
    ]  # fmt: skip
