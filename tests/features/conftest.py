"""Real candles and alternative data from the bundled sample, loaded once per session."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd
import pytest

from features.compute import AltData
from features.ingest.service import ingest_source
from features.ingest.sources.sample import SampleSource
from features.ingest.store import MarketStore


@dataclass(frozen=True)
class SampleMarket:
    """The sample ingested into a market store, plus per-symbol frames."""

    db: Path
    candles: dict[str, pd.DataFrame]
    alt: dict[str, AltData]


@pytest.fixture(scope="session")
def sample_market(tmp_path_factory: pytest.TempPathFactory) -> SampleMarket:
    from features.build import load_alt_data

    db = tmp_path_factory.mktemp("sample-market") / "market.duckdb"
    with MarketStore(db) as store:
        ingest_source(SampleSource(), store)
        candles = {s: store.candles(s, "1h", source="sample") for s in ("BTC/USDT", "ETH/USDT")}
        alt = {s: load_alt_data(store, s) for s in candles}
    return SampleMarket(db=db, candles=candles, alt=alt)


def bars_since_gap(event_ts: pd.Series, step: pd.Timedelta) -> npt.NDArray[np.int64]:
    """Per bar, how many bars precede it without a gap (0 at the first bar and after a gap)."""
    out = np.zeros(len(event_ts), dtype=np.int64)
    stamps = list(event_ts)
    for i in range(1, len(stamps)):
        out[i] = out[i - 1] + 1 if stamps[i] - stamps[i - 1] == step else 0
    return out
