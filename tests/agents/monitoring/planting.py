"""The bundled sample's real candles and funding, and anomalies planted into copies of them."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from importlib import resources

import numpy as np
import pandas as pd

from features.ingest.batch import Batch, Dataset
from features.ingest.sources.files import read_file
from features.ingest.sources.sample import SAMPLE_FILES, SAMPLE_SOURCE

__all__ = [
    "FUNDING_SYMBOL",
    "Batches",
    "plant_funding_spike",
    "plant_hole",
    "plant_open_gap",
    "plant_return",
    "plant_volume",
    "sample_candles",
    "sample_funding",
]

FUNDING_SYMBOL = {"BTC/USDT": "BTC/USDT:USDT", "ETH/USDT": "ETH/USDT:USDT"}


class Batches:
    """An ingest source of prepared batches under a live label (judged by `empty_ingest`)."""

    name = "exchange"

    def __init__(self, batches: list[Batch]) -> None:
        self._batches = batches

    def batches(self, cursor: object) -> Iterator[Batch]:
        yield from self._batches


@functools.cache
def _read(dataset: Dataset, symbol: str) -> pd.DataFrame:
    (item,) = [f for f in SAMPLE_FILES if f.dataset is dataset and f.symbol == symbol]
    folder = resources.files("features.ingest").joinpath("sample_data")
    with resources.as_file(folder.joinpath(item.name)) as path:
        batch = read_file(
            path,
            symbol=item.symbol,
            timeframe=item.timeframe,
            dataset=item.dataset,
            source_label=SAMPLE_SOURCE,
        )
    return batch.frame.sort_values("event_ts").reset_index(drop=True)


def sample_candles(symbol: str) -> pd.DataFrame:
    """A fresh copy of the sample's 1h candles of ``symbol`` (a year, 2023-01-01 to 2024-01-10)."""
    return _read(Dataset.CANDLES, symbol).copy()


def sample_funding(symbol: str) -> pd.DataFrame:
    """A fresh copy of the sample's 8-hourly funding settlements of ``symbol``'s perpetual."""
    return _read(Dataset.FUNDING, FUNDING_SYMBOL[symbol]).copy()


def _position(frame: pd.DataFrame, bar: pd.Timestamp) -> int:
    hits = np.flatnonzero((frame["event_ts"] == bar).to_numpy())
    if hits.size != 1:
        raise AssertionError(f"bar {bar} is not in the frame exactly once")
    return int(hits[0])


def plant_return(candles: pd.DataFrame, bar: pd.Timestamp, log_move: float) -> pd.DataFrame:
    """Bar ``bar``'s close moves by ``log_move`` and the series goes on from the new level.

    Everything after the bar's open is scaled by exp(log_move), so the bar's close-to-close
    return is the only return that changes (no reverting return at the next bar, no open gap).
    """
    out = candles.copy()
    i = _position(out, bar)
    factor = float(np.exp(log_move))
    for name in ("high", "low", "close"):
        out.loc[i:, name] = out.loc[i:, name] * factor
    out.loc[i + 1 :, "open"] = out.loc[i + 1 :, "open"] * factor
    out.loc[i, "high"] = max(out.loc[i, "high"], out.loc[i, "open"], out.loc[i, "close"])
    out.loc[i, "low"] = min(out.loc[i, "low"], out.loc[i, "open"], out.loc[i, "close"])
    return out


def plant_open_gap(candles: pd.DataFrame, bar: pd.Timestamp, log_move: float) -> pd.DataFrame:
    """Bar ``bar`` opens ``log_move`` away from the previous close; the series follows."""
    out = candles.copy()
    i = _position(out, bar)
    factor = float(np.exp(log_move))
    for name in ("open", "high", "low", "close"):
        out.loc[i:, name] = out.loc[i:, name] * factor
    return out


def plant_volume(candles: pd.DataFrame, bar: pd.Timestamp, multiple: float) -> pd.DataFrame:
    """Bar ``bar`` trades ``multiple`` times its real volume."""
    out = candles.copy()
    i = _position(out, bar)
    out.loc[i, "volume"] = out.loc[i, "volume"] * multiple
    return out


def plant_hole(candles: pd.DataFrame, first: pd.Timestamp, bars: int) -> pd.DataFrame:
    """Drop ``bars`` consecutive bars starting at ``first``."""
    i = _position(candles, first)
    return candles.drop(index=range(i, i + bars)).reset_index(drop=True)


def plant_funding_spike(funding: pd.DataFrame, at: pd.Timestamp, rate: float) -> pd.DataFrame:
    """The settlement at ``at`` pays ``rate``."""
    out = funding.copy()
    i = _position(out, at)
    out.loc[i, "funding_rate"] = rate
    return out
