"""The monitor's time per bar: every detector over one new bar, findings stored.

Headline figures: a long-lived `agents.monitoring.monitor.Monitor` (opened once, kept warm: the
decisions store, the MLflow client, the drift references, the trailing market windows and
feature rows held between bars), timed on ``Monitor.run(now=...)`` evaluating a bar it has
never seen. Before each timed call (untimed) one new hourly bar is ingested through
`features.ingest.service.ingest_source` into the market store for every monitored symbol (an
ingest run the data-quality detectors judge, candles whose windows the market detectors update,
and the perpetual's funding at 8-hourly settlements), and for the 4-symbol home the new bar's
feature rows are appended to the feature tables (what feature drift reads). A new bar's values
are a fixed earlier bar's moves replayed from the previous close (deterministic inputs).

Each timed call includes: attaching the market store read-only (and detaching it after);
reading the ingest log entries logged since the previous run (the monitor holds the 30 days
before it, which the data-quality detectors judge the new runs against; the new entries say
which series changed); reading only the new candles and funding; every market detector per
symbol over its trailing window (1,000 bars); the data-quality detectors (quarantine spikes and
empty ingests over the series with new runs, holes closed in every stored series' newest rows,
read again where the log says a series grew); for the 4 symbols the model-drift step (the
registry change check, the feature tables read again since the bench rewrote them (written
time-major as the build writes them: the read decodes the row groups reaching the drift window),
in a worker thread that starts with the run, feature drift against both champions' references,
the decision records read); and the transaction that stores the findings and the monitor's state in the
decisions store. Not included: the untimed ingest and feature writes.

- **4 symbols** run on a private copy of the serving bench home (`benchmarks.bench_home`: the
  market store of its 50 symbols, the 4 monitored symbols' feature tables, its MLflow registry
  read in place, a fresh decisions store). Its paper account has no decisions, so prediction
  drift, calibration decay and the decision mix read an empty set: the drift figure is the
  feature-drift step of both families (xgb, lstm) plus the (empty) decision records read.
- **100 symbols** run on a universe of copies ingested into a market store of their own (1,200
  hourly bars each, no features or champions): the market and data-quality detectors only; drift
  adds about 5 ms per symbol and family on top (docs/monitoring.md, "Model drift").

``reference`` figures: the one-shot ``run_monitor`` (what `sextant monitor` runs once: opens the
decisions store, the market store and an MLflow client, reads 1,000 bars of history per symbol
and every window anew), timed the same way on new bars, in the same (already warm) process.
The first call of each Monitor is untimed: it fits the monitor's GARCH reference per symbol.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from benchmarks.bench_home import BenchSource, bench_home
from benchmarks.common import Figure
from features.ingest.batch import Batch, Cursor, Dataset
from sextant.settings import Settings, load_settings

__all__ = ["run"]

SMALL = 4
LARGE = 100
LARGE_BARS = 1_200
CALLS = 10
REFERENCE_CALLS = 5
REPLAY_FROM = 500  # a new bar replays the moves of the bar this many bars before the newest


class NewBar:
    """An ingest source of one new bar per symbol (and the funding settling at it)."""

    name = "bench"

    def __init__(self, candles: dict[str, pd.DataFrame], funding: dict[str, pd.DataFrame]) -> None:
        self.candles = candles
        self.funding = funding

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """One candles batch per symbol, one funding batch per settling perpetual."""
        for symbol, frame in self.candles.items():
            yield Batch(Dataset.CANDLES, self.name, "bench new bar", frame, symbol, "1h")
        for perp, frame in self.funding.items():
            yield Batch(Dataset.FUNDING, self.name, "bench new settlement", frame, perp)


def _add_bar(settings: Settings, symbols: tuple[str, ...], k: int) -> datetime:
    """Ingest bar ``k`` (0, 1, ...) after the stored ones for ``symbols``; its open."""
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore

    with MarketStore(settings.paths.market_db) as store:
        rows = store.query(
            "SELECT symbol, event_ts, open, high, low, close, volume FROM candles WHERE "
            f"timeframe = '1h' AND symbol IN ({', '.join('?' * len(symbols))}) "
            "ORDER BY symbol, event_ts",
            list(symbols),
        )
        rates = store.query(
            "SELECT symbol, event_ts, funding_rate FROM funding_rates ORDER BY symbol, event_ts"
        )
        candles: dict[str, pd.DataFrame] = {}
        funding: dict[str, pd.DataFrame] = {}
        opened = None
        for symbol, frame in rows.groupby("symbol", sort=False):
            last = frame.iloc[-1]
            model = frame.iloc[-1 - REPLAY_FROM + k]  # a fixed earlier bar's moves
            opened = pd.Timestamp(last["event_ts"]).tz_convert("UTC") + pd.Timedelta(hours=1)
            base = float(last["close"])
            ratio = {c: float(model[c]) / float(model["open"]) for c in ("high", "low", "close")}
            candles[str(symbol)] = pd.DataFrame(
                {
                    "symbol": [symbol],
                    "timeframe": ["1h"],
                    "event_ts": [opened],
                    "open": [base],
                    "high": [base * max(ratio["high"], 1.0, ratio["close"])],
                    "low": [base * min(ratio["low"], 1.0, ratio["close"])],
                    "close": [base * ratio["close"]],
                    "volume": [float(model["volume"])],
                }
            )
            perp = f"{symbol}:USDT"
            mine = rates[rates["symbol"] == perp]
            if opened.hour % 8 == 0 and len(mine) > 10:
                rate = float(mine["funding_rate"].iloc[-1 - REPLAY_FROM // 8 + k])
                funding[perp] = pd.DataFrame(
                    {
                        "symbol": [perp],
                        "event_ts": [opened],
                        "available_at": [opened],
                        "funding_rate": [rate],
                    }
                )
        ingest_source(NewBar(candles, funding), store)
    assert opened is not None
    return opened.to_pydatetime()


def _add_feature_rows(settings: Settings, opened: datetime) -> None:
    """Append the bar's feature rows (those of the bar 168 bars before, re-dated) to each table."""
    from features.build import view_path, write_view_table
    from features.definitions import FEATURE_VIEWS, Kind

    bar = pd.Timedelta(hours=1)
    for kind in Kind:
        path = view_path(settings.paths.features_dir, FEATURE_VIEWS[kind])
        table = pd.read_parquet(path)
        last = table.groupby("symbol", sort=False).tail(168).groupby("symbol").head(1).copy()
        last["event_ts"] = pd.Timestamp(opened)
        last["available_at"] = pd.Timestamp(opened) + bar
        write_view_table(path, pd.concat([table, last], ignore_index=True))


def _small_home(folder: Path) -> tuple[Settings, tuple[str, ...]]:
    """A private copy of the bench home: its market store, the monitored symbols' feature
    tables, its MLflow registry in place, an empty decisions store."""
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    from features.build import view_path
    from features.definitions import FEATURE_VIEWS, ROW_GROUP_ROWS, Kind

    source = bench_home().settings
    symbols = source.symbols[:SMALL]
    settings = load_settings(
        home=folder,
        symbols=source.symbols,
        candle_source=source.candle_source,
        mlflow_tracking_uri=source.tracking_uri,
        mlflow_registry_uri=source.registry_uri,
    )
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source.paths.market_db, settings.paths.market_db)
    settings.paths.features_dir.mkdir(parents=True, exist_ok=True)
    for kind in Kind:
        path = view_path(source.paths.features_dir, FEATURE_VIEWS[kind])
        table = ds.dataset(path).to_table(filter=ds.field("symbol").isin(list(symbols)))
        pq.write_table(
            table,
            view_path(settings.paths.features_dir, FEATURE_VIEWS[kind]),
            compression="zstd",
            row_group_size=ROW_GROUP_ROWS,
        )
    return settings, symbols


def _large_home(folder: Path) -> tuple[Settings, tuple[str, ...]]:
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore

    symbols = tuple(f"M{i:03d}/USDT" for i in range(LARGE))
    settings = load_settings(home=folder, symbols=symbols, candle_source="bench")
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(BenchSource(symbols, bars=LARGE_BARS), store)
    return settings, symbols


def _timed(
    settings: Settings,
    symbols: tuple[str, ...],
    calls: int,
    first: int,
    features: bool,
    run: Callable[[datetime], object],
) -> list[float]:
    """``calls`` timed runs, each after a new bar ``first + i`` was stored (untimed)."""
    times = []
    for i in range(calls):
        opened = _add_bar(settings, symbols, first + i)
        if features:
            _add_feature_rows(settings, opened)
        now = opened + timedelta(hours=1, minutes=5)
        began = time.perf_counter()
        run(now)
        times.append(time.perf_counter() - began)
    return times


def _universe(settings: Settings, symbols: tuple[str, ...], features: bool) -> dict[str, float]:
    """Warm p50/max over ``CALLS`` new bars, then the one-shot's p50 over the next bars."""
    from agents.monitoring.monitor import Monitor, run_monitor

    with Monitor.open(settings) as monitor:
        opened = _add_bar(settings, symbols, 0)
        if features:
            _add_feature_rows(settings, opened)
        now = opened + timedelta(hours=1, minutes=5)
        monitor.run(symbols=symbols, since=opened, now=now)  # fits GARCH: untimed
        warm = _timed(
            settings, symbols, CALLS, 1, features, lambda t: monitor.run(symbols=symbols, now=t)
        )
    cold = _timed(
        settings,
        symbols,
        REFERENCE_CALLS,
        1 + CALLS,
        features,
        lambda t: run_monitor(settings, symbols=symbols, now=t),
    )
    return {
        "p50": statistics.median(warm),
        "max": max(warm),
        "cold_p50": statistics.median(cold),
    }


def run() -> list[Figure]:
    """Both universes' p50 and slowest warm call per new bar, and the one-shot's p50."""
    with tempfile.TemporaryDirectory(prefix="sextant-monitor-bench-") as tmp:
        four = _universe(*_small_home(Path(tmp) / "small"), features=True)
        hundred = _universe(*_large_home(Path(tmp) / "large"), features=False)
    return [
        Figure("monitor_per_bar_4_symbols_p50", four["p50"] * 1e3, "ms", "reference"),
        Figure(f"monitor_per_bar_4_symbols_max_of_{CALLS}", four["max"] * 1e3, "ms", "< 50 ms"),
        Figure(
            "monitor_one_shot_per_bar_4_symbols_p50", four["cold_p50"] * 1e3, "ms", "reference"
        ),
        Figure(
            "monitor_per_bar_100_symbols_market_data_p50", hundred["p50"], "s", "reference"
        ),
        Figure(
            f"monitor_per_bar_100_symbols_market_data_max_of_{CALLS}", hundred["max"], "s", "< 1 s"
        ),
        Figure(
            "monitor_one_shot_per_bar_100_symbols_market_data_p50",
            hundred["cold_p50"],
            "s",
            "reference",
        ),
    ]  # fmt: skip
