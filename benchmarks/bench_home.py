"""The serving benchmarks' home: 50 symbols, features materialized, a champion for each family.

The 50 symbols ``S00/USDT`` .. ``S49/USDT`` are copies of the bundled sample's two (BTC/USDT for
even numbers, ETH/USDT for odd ones), so that a 50-symbol decision runs on real market data:
copy ``i`` is its base series lagged by ``i // 2`` bars (so no two copies are identical) with its
prices scaled by ``1 + i / 100`` (volumes and funding as the base's). Only the sample's last
``BARS`` hourly bars are kept, which keeps the cold build within a few minutes on 2 cores.

The champions are trained by ``models.training.train_models`` with ``TrainConfig.quick()``:

- GARCH on all 50 symbols: its ONNX graph carries per-symbol parameters, and a champion fitted on
  fewer symbols answers NaN for the others and skips their compute (which would flatter the
  batch figure);
- XGBoost and the LSTM on the first ``DIRECTION_SYMBOLS`` copies only: their inputs are the
  scale-free features, with no per-symbol part, so the graph a decision runs (and its cost per
  row) does not depend on which symbols trained it, and fitting them on all 50 would take most
  of the build's time for nothing the benchmark measures.

The built home is cached under ``.bench-cache/`` (gitignored), in a directory named by a hash of
the inputs (sample files, symbols, bars, training config) and of the code that builds it
(``features/``, ``models/``, ``sextant/`` but its command line, this module, the dependency
lock), so a repeated ``make bench`` reuses it and a change to any of them builds a new one (which
replaces the old). The directory is built in place (MLflow and Feast record absolute paths) and
marked complete last; an incomplete one is removed and built again. ``decisions.sqlite`` is the
only file the benchmarks change: `fresh_decisions` removes it before a run so that every run
decides on an empty log.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path

import pandas as pd

from features.ingest.batch import Batch, Cursor, Dataset
from features.ingest.sources.files import read_file
from features.ingest.sources.sample import SAMPLE_FILES, SAMPLE_SOURCE
from sextant.settings import Settings, load_settings

__all__ = [
    "BARS",
    "CACHE_DIR",
    "DIRECTION_SYMBOLS",
    "SYMBOLS",
    "BenchHome",
    "BenchSource",
    "bench_home",
    "fresh_decisions",
]

REPO = Path(__file__).resolve().parents[1]
CACHE_DIR = REPO / ".bench-cache"
SYMBOLS = tuple(f"S{i:02d}/USDT" for i in range(50))
BASES = ("BTC/USDT", "ETH/USDT")  # the sample's symbols; copy i is a copy of BASES[i % 2]
BARS = 3_000  # the sample's last hourly bars kept per copy
DIRECTION_SYMBOLS = 4  # copies XGBoost and the LSTM are trained on (two of each base)
SOURCE = "bench"
COMPLETE = "bench-home.json"  # written last: the home is complete
CODE = ("features", "models", "sextant")  # the packages whose code builds the home
NOT_CODE = ("sextant/cli",)  # ... except the command line, which the build does not run


@dataclass(frozen=True, slots=True)
class BenchHome:
    """A built bench home: its settings (50 symbols) and the bar close of its online vectors."""

    settings: Settings
    last_close: datetime
    build_seconds: float | None  # None: reused from the cache


def _base_batches() -> dict[tuple[Dataset, str | None], Batch]:
    """The sample's files as the sample source reads them, by (dataset, symbol)."""
    folder = resources.files("features.ingest").joinpath("sample_data")
    batches = {}
    for item in SAMPLE_FILES:
        with resources.as_file(folder.joinpath(item.name)) as path:
            batches[(item.dataset, item.symbol)] = read_file(
                path,
                symbol=item.symbol,
                timeframe=item.timeframe,
                dataset=item.dataset,
                source_label=SAMPLE_SOURCE,
            )
    return batches


class BenchSource:
    """The 50 copies' candles and funding over the last ``bars`` bars, and the sample's Fear &
    Greed and news unchanged (an ingest source: ``name`` and ``batches``)."""

    name = SOURCE

    def __init__(self, symbols: tuple[str, ...] = SYMBOLS, *, bars: int = BARS) -> None:
        self.symbols = symbols
        self.bars = bars

    def batches(self, cursor: Cursor) -> Iterator[Batch]:
        """One candles and one funding batch per copy, then the shared datasets."""
        base = _base_batches()
        first = min(
            base[(Dataset.CANDLES, s)].frame["event_ts"].max() for s in BASES
        ) - pd.Timedelta(hours=self.bars - 1)
        for i, symbol in enumerate(self.symbols):
            of = BASES[i % 2]
            yield self._candles(base[(Dataset.CANDLES, of)], symbol, lag=i // 2, scale=1 + i / 100)
            funding = base[(Dataset.FUNDING, f"{of}:USDT")].frame
            funding = funding[funding["event_ts"] >= first].assign(symbol=f"{symbol}:USDT")
            yield Batch(Dataset.FUNDING, SOURCE, f"bench copy of {of}", funding, f"{symbol}:USDT")
        for dataset in (Dataset.FEAR_GREED, Dataset.NEWS):
            batch = base[(dataset, None)]
            yield Batch(dataset, SOURCE, batch.origin, batch.frame)

    def _candles(self, batch: Batch, symbol: str, *, lag: int, scale: float) -> Batch:
        frame = batch.frame.sort_values("event_ts").reset_index(drop=True)
        prices = ["open", "high", "low", "close"]
        shifted = frame.copy()
        shifted[prices] = frame[prices].shift(lag) * scale
        shifted["volume"] = frame["volume"].shift(lag)
        shifted = shifted.iloc[lag:].tail(self.bars).assign(symbol=symbol)
        return Batch(
            Dataset.CANDLES,
            SOURCE,
            f"bench copy of {batch.symbol} (lag {lag}, x{scale:g})",
            shifted.reset_index(drop=True),
            symbol,
            batch.timeframe,
        )


def _train_config_json() -> str:
    from models.training import TrainConfig

    return json.dumps(TrainConfig.quick().as_dict(), sort_keys=True, default=str)


def home_key() -> str:
    """A hash of everything the built home depends on (inputs and code)."""
    digest = hashlib.sha256()
    digest.update(json.dumps([SYMBOLS, BASES, BARS, DIRECTION_SYMBOLS]).encode())
    digest.update(_train_config_json().encode())
    folder = resources.files("features.ingest").joinpath("sample_data")
    for item in sorted(SAMPLE_FILES, key=lambda f: f.name):
        digest.update(folder.joinpath(item.name).read_bytes())
    files = [Path(__file__), REPO / "requirements.lock"]
    for package in CODE:
        files += sorted(
            path
            for path in (REPO / package).rglob("*.py")
            if not any(path.is_relative_to(REPO / skip) for skip in NOT_CODE)
        )
    for path in files:
        digest.update(str(path.relative_to(REPO)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _settings(home: Path) -> Settings:
    return load_settings(home=home, symbols=SYMBOLS, candle_source=SOURCE)


def _last_close(settings: Settings) -> datetime:
    from features.feast_store import FeastStore

    as_of = FeastStore(settings).online_vectors("decision_v1", settings.symbols).as_of
    known = [stamp for stamp in as_of if stamp is not None]
    if len(known) != len(settings.symbols):
        raise RuntimeError(f"the bench home at {settings.home} lacks online vectors for a symbol")
    return max(known).to_pydatetime()


def _build(home: Path) -> None:
    """Ingest the copies, build and materialize the features, train and promote champions."""
    from features.build import build_features
    from features.feast_store import materialize
    from features.ingest.service import ingest_source
    from features.ingest.store import MarketStore
    from models.tracking import Tracking
    from models.training import TrainConfig, train_models
    from sextant.contracts import CHAMPION, REGISTERED_MODELS

    settings = _settings(home)
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(BenchSource(), store)
    build_features(settings)
    materialize(settings)
    tracking = Tracking.from_settings(settings)
    configs = (
        TrainConfig.quick(families=("garch",)),
        TrainConfig.quick(families=("xgb", "lstm"), symbols=SYMBOLS[:DIRECTION_SYMBOLS]),
    )
    for config in configs:
        for report in train_models(settings, config, tracking):
            if report.model_version is None:
                raise RuntimeError(f"{report.family} was not registered in the bench home")
            # every challenger is the champion: the bench measures serving, not promotion
            tracking.client.set_registered_model_alias(
                REGISTERED_MODELS[report.family], CHAMPION, report.model_version
            )


def bench_home() -> BenchHome:
    """The cached bench home, built first when the cache has none for the current inputs."""
    CACHE_DIR.mkdir(exist_ok=True)
    home = CACHE_DIR / f"serving-{home_key()}"
    with (CACHE_DIR / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two runs at once: the second waits and reuses
        seconds = None
        if not (home / COMPLETE).is_file():
            for stale in CACHE_DIR.glob("serving-*"):  # homes of other inputs or code
                shutil.rmtree(stale, ignore_errors=True)
            started = time.perf_counter()
            _build(home)
            seconds = time.perf_counter() - started
            (home / COMPLETE).write_text(json.dumps({"build_seconds": seconds}))
        settings = _settings(home)
        return BenchHome(settings, _last_close(settings), seconds)


def fresh_decisions(settings: Settings) -> None:
    """Remove the home's decisions log (and its WAL), so a run starts with no account."""
    path = settings.paths.decisions_db
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
