"""Simulated GARCH data with known parameters, real BTC hourly returns, and their fits (once)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest

from models.garch import GarchConfig, GarchFit, GarchModel, GarchParams
from models.lstm import LstmConfig, LstmDirectionModel
from models.protocol import DirectionDataset, IndexArray
from models.xgb import XgbConfig, XgbDirectionModel
from tests.models.direction_data import make_direction_data, time_split

N_SIM = 20_000
N_TRAIN = 16_000
BTC_FILE = Path("daisybum_cryptotradingbot/binance/BTC_USDT-1h.feather")

TRUE_T = GarchParams(mu=1e-4, omega=1e-6, alpha=0.08, gamma=0.0, beta=0.90, nu=6.0)
TRUE_GJR = GarchParams(mu=1e-4, omega=1e-6, alpha=0.03, gamma=0.10, beta=0.90, nu=6.0)


def simulate_garch(params: GarchParams, n: int, seed: int, burn_in: int = 500) -> pd.Series:
    """Returns of a GJR-GARCH(1,1) with unit-variance Student-t innovations, hourly UTC index."""
    rng = np.random.default_rng(seed)
    nu = params.nu
    z = rng.standard_t(nu, size=n + burn_in) * np.sqrt((nu - 2) / nu)
    returns = np.empty(n + burn_in)
    variance = params.unconditional_variance
    for i in range(n + burn_in):
        eps = np.sqrt(variance) * z[i]
        returns[i] = params.mu + eps
        variance = (
            params.omega
            + (params.alpha + params.gamma * (eps < 0)) * eps * eps
            + params.beta * variance
        )
    index = pd.date_range("2021-01-01", periods=n, freq="h", tz="UTC")
    return pd.Series(returns[burn_in:], index=index, name="log_return_1")


@dataclass(frozen=True)
class FittedSample:
    """A return series split into a training part (fitted) and a held-out part."""

    returns: pd.Series
    train: pd.Series
    test: pd.Series
    fit: GarchFit


def _fit_split(returns: pd.Series, n_train: int, config: GarchConfig) -> FittedSample:
    train, test = returns.iloc[:n_train], returns.iloc[n_train:]
    return FittedSample(returns, train, test, GarchModel(config).fit(train))


@pytest.fixture(scope="session")
def sim_t() -> FittedSample:
    """GARCH(1,1)-t, 20k bars (seed 20240101), fitted on the first 16k."""
    return _fit_split(simulate_garch(TRUE_T, N_SIM, seed=20240101), N_TRAIN, GarchConfig())


@pytest.fixture(scope="session")
def sim_gjr() -> FittedSample:
    """GJR-GARCH(1,1)-t, 20k bars (seed 7), fitted on the first 16k with gjr=True."""
    return _fit_split(simulate_garch(TRUE_GJR, N_SIM, seed=7), N_TRAIN, GarchConfig(gjr=True))


@pytest.fixture(scope="session")
def btc_hourly(shared_data: Path) -> FittedSample:
    """Real Binance BTC/USDT hourly log returns (2023-01 to 2024-01), fitted on the first 7,000."""
    candles = pd.read_feather(shared_data / BTC_FILE)
    close = candles.set_index("date")["close"]
    returns = np.log(close).diff().iloc[1:].rename("log_return_1")
    return _fit_split(returns, 7_000, GarchConfig())


# --- direction families (XGBoost, LSTM) on synthetic data -----------------------------------------

N_DIRECTION = 1_500  # rows per symbol (two symbols)
# one thread: OpenMP's busy waiting makes n_jobs=2 several times slower on a loaded 2-core box
TEST_XGB = XgbConfig(n_estimators=200, early_stopping_rounds=30, n_jobs=1, min_train_rows=200)
# tiny but complete: two layers (dropout between them), one thread (fast on a shared 2-core box)
TEST_LSTM = LstmConfig(
    seq_len=16,
    hidden=16,
    layers=2,
    lr=5e-3,
    batch_size=128,
    max_epochs=6,
    patience=2,
    n_threads=1,
    min_train_rows=200,
)


@dataclass(frozen=True)
class FittedDirection:
    """A synthetic dataset, its time split, a model fitted on the training rows and its ONNX graph."""

    data: DirectionDataset
    train: IndexArray
    test: IndexArray
    model: XgbDirectionModel | LstmDirectionModel
    proto: onnx.ModelProto


def fit_direction(
    model: XgbDirectionModel | LstmDirectionModel, *, planted: bool, seed: int = 11
) -> FittedDirection:
    """Fit ``model`` on the first 70% of a synthetic dataset for its feature service."""
    data = make_direction_data(
        model.config.feature_service, N_DIRECTION, planted=planted, seed=seed
    )
    train, test = time_split(data, 0.3)
    model.fit(data, train)
    return FittedDirection(data, train, test, model, model.to_onnx())


@pytest.fixture(scope="session")
def xgb_planted() -> FittedDirection:
    """XGBoost fitted on data with a planted predictive feature."""
    return fit_direction(XgbDirectionModel(TEST_XGB), planted=True)


@pytest.fixture(scope="session")
def lstm_planted() -> FittedDirection:
    """The tiny LSTM fitted on data with a planted predictive feature (exported once: seconds)."""
    return fit_direction(LstmDirectionModel(TEST_LSTM), planted=True)
