"""Real candles for the indicator tests, and one warm-up call of every kernel per session."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.sextant.ta.cases import Bars, all_cases

COLUMNS = ("open", "high", "low", "close", "volume")


def _load(shared_data: Path, symbol: str, rows: slice) -> Bars:
    path = shared_data / "roshan7869_algotrading" / "binance" / f"{symbol}_USDT-1h.feather"
    frame = pd.read_feather(path).iloc[rows]
    return {column: frame[column].to_numpy(dtype=np.float64, copy=True) for column in COLUMNS}


@pytest.fixture(scope="session")
def market(shared_data: Path) -> dict[str, Bars]:
    """BTC's full 8 years (73k bars) plus 20k-bar slices of ETH, SOL and XRP (sub-dollar prices)."""
    return {
        "BTC": _load(shared_data, "BTC", slice(None)),
        "ETH": _load(shared_data, "ETH", slice(-20_000, None)),
        "SOL": _load(shared_data, "SOL", slice(0, 20_000)),
        "XRP": _load(shared_data, "XRP", slice(-20_000, None)),
    }


@pytest.fixture(scope="session")
def btc_slice(market: dict[str, Bars]) -> Bars:
    """600 BTC bars from 2021 (for the property and NaN tests)."""
    return {key: values[30_000:30_600].copy() for key, values in market["BTC"].items()}


@pytest.fixture(scope="session", autouse=True)
def compiled_kernels(btc_slice: Bars) -> None:
    """Compile (or load from numba's cache) every kernel once, before the timed tests run."""
    for case in all_cases():
        case.run(btc_slice)
