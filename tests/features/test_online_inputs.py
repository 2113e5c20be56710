"""The online input contract: one online read per symbol gives the decision engine every input, and
at the latest bar each equals what training reads, row for row (the bundled sample, built)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import build_features
from features.definitions import (
    FEATURE_SERVICES,
    GARCH_RETURN,
    GARCH_WINDOW,
    LSTM_WINDOW,
    SERVICE_VECTOR_VIEWS,
    service_features,
    vector_layout,
)
from features.feast_store import FeastStore
from features.online import (
    GARCH_VARIANCE_TOLERANCE,
    garch_variance,
    sequence_input,
    unpack_vectors,
)
from features.vectors import packed_layout
from sextant.contracts import DECISION_SERVICE, ONLINE_SERVICES
from sextant.contracts import FEATURE_SERVICES as FAMILY_SERVICES
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import load_settings
from tests.features.conftest import SampleMarket

SYMBOLS = ("ETH/USDT", "BTC/USDT")
# a GJR-GARCH(1,1) as persistent as hourly fits get (beta 0.63-0.84 on BTC/ETH), in return units
MU, OMEGA, ALPHA, GAMMA, BETA = 2e-5, 1e-6, 0.08, 0.04, 0.9


@pytest.fixture(scope="module")
def store(sample_market: SampleMarket, tmp_path_factory: pytest.TempPathFactory) -> FeastStore:
    """The sample built by `features build` and materialized: what serving reads."""
    home = tmp_path_factory.mktemp("online") / "home"
    home.mkdir()
    shutil.copy(sample_market.db, home / "market.duckdb")
    settings = load_settings(home=home)
    build_features(settings)
    built = FeastStore(settings)
    built.materialize()
    return built


@pytest.fixture(scope="module")
def training(store: FeastStore) -> dict[str, pd.DataFrame]:
    """Each service's training frame at the symbols' bar closes of their last four weeks (more
    rows than any window; a point-in-time join costs per row, so not the whole year)."""
    closes = pd.read_parquet(store.table_path("stat_features"), columns=["available_at"])
    start = closes["available_at"].max() - pd.Timedelta(hours=2 * GARCH_WINDOW)
    return {service: store.training_frame(service, SYMBOLS, start) for service in ONLINE_SERVICES}


def last_rows(frame: pd.DataFrame, symbol: str, names: tuple[str, ...], rows: int) -> np.ndarray:
    """A symbol's last ``rows`` training rows of ``names``, NaN before its first one."""
    values = frame.loc[frame["symbol"] == symbol, list(names)].to_numpy(dtype=float)[-rows:]
    return np.vstack([np.full((rows - len(values), len(names)), np.nan), values])


def garch_step(last_return: np.ndarray, last_variance: np.ndarray) -> np.ndarray:
    """One step of the recursion (what the registered ONNX graph computes)."""
    eps = last_return - MU
    result: np.ndarray = OMEGA + np.where(eps < 0, ALPHA + GAMMA, ALPHA) * eps * eps
    return result + BETA * last_variance


def test_the_decision_service_is_the_ta_signals_input_and_every_service_is_online() -> None:
    from sextant.decision.signals import FEATURES_USED

    assert service_features(DECISION_SERVICE) == FEATURES_USED
    assert set(ONLINE_SERVICES) == set(FEATURE_SERVICES) == set(SERVICE_VECTOR_VIEWS)
    assert {s: vector_layout(s).window for s in ONLINE_SERVICES} == {
        DECISION_SERVICE: 1,
        FAMILY_SERVICES["xgb"]: 1,
        FAMILY_SERVICES["lstm"]: LSTM_WINDOW,
        FAMILY_SERVICES["garch"]: GARCH_WINDOW,
    }


def test_each_built_vector_table_records_its_layout(store: FeastStore) -> None:
    for service, view in SERVICE_VECTOR_VIEWS.items():
        assert packed_layout(store.table_path(view)) == vector_layout(service), service


def test_one_online_read_gives_each_service_the_training_rows_of_the_latest_bar(
    store: FeastStore, training: dict[str, pd.DataFrame], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: count the online store's reads (Feast's provider interface)
    reads: list[Any] = []
    provider = store.store.provider
    feast_read: Callable[..., Any] = provider.online_read

    def counted(*args: Any, **kwargs: Any) -> Any:
        reads.append((kwargs["table"].name, len(kwargs["entity_keys"])))
        return feast_read(*args, **kwargs)

    monkeypatch.setattr(provider, "online_read", counted)

    # Act
    online = store.online_read(SYMBOLS)

    # Assert: one call per service's packed view, for every symbol at once; per service and
    # symbol, the window is the last `window` training rows, exactly (NaN where training has
    # NaN), as of the latest bar close
    assert sorted(reads) == sorted(
        (SERVICE_VECTOR_VIEWS[service], len(SYMBOLS)) for service in ONLINE_SERVICES
    )
    assert online.keys() == set(ONLINE_SERVICES)
    for service, vectors in online.items():
        layout = vector_layout(service)
        frame = training[service]
        assert vectors.window.shape == (len(SYMBOLS), layout.window, len(layout.features))
        for i, symbol in enumerate(SYMBOLS):
            expected = last_rows(frame, symbol, layout.features, layout.window)
            assert np.array_equal(vectors.window[i], expected, equal_nan=True), (service, symbol)
            latest = frame.loc[frame["symbol"] == symbol, "event_timestamp"].max()
            assert vectors.as_of[i] == latest, (service, symbol)


def test_the_lstm_input_is_the_training_frames_last_rows(
    store: FeastStore, training: dict[str, pd.DataFrame]
) -> None:
    # Arrange
    service = FAMILY_SERVICES["lstm"]
    names = service_features(service)
    vectors = store.online_vectors(service, SYMBOLS)

    # Act: the model reads 48 rows (LstmConfig's default) or fewer, in its recorded order
    full = sequence_input(vectors.window, vectors.features, names, LSTM_WINDOW)
    short = sequence_input(vectors.window, vectors.features, names, 16)

    # Assert
    expected = np.stack([last_rows(training[service], s, names, LSTM_WINDOW) for s in SYMBOLS])
    assert full.dtype == np.float32 and full.shape == (len(SYMBOLS), LSTM_WINDOW, len(names))
    assert np.array_equal(full, expected.astype(np.float32), equal_nan=True)
    assert np.array_equal(short, full[:, -16:, :], equal_nan=True)


def test_the_garch_variance_from_the_online_window_is_the_training_sides_filter(
    store: FeastStore,
) -> None:
    # Arrange: the training side filters each symbol's whole return history (nulls dropped, as
    # `models.data.symbol_returns` does), from any start; one more step is the next bar's variance
    service = FAMILY_SERVICES["garch"]
    frame = store.training_frame(service, SYMBOLS)
    expected = []
    for symbol in SYMBOLS:
        returns = frame.loc[frame["symbol"] == symbol, GARCH_RETURN].dropna().to_numpy()
        assert len(returns) > 10 * GARCH_WINDOW  # the history is much longer than the window
        variance = float(np.var(returns))
        for value in returns:
            variance = float(garch_step(np.array(value), np.array(variance)))
        expected.append(variance)

    # Act: one online read, the variance recomputed from the window of returns
    vectors = store.online_read(SYMBOLS)[service]
    column = vectors.features.index(GARCH_RETURN)
    served = garch_variance(garch_step, vectors.window[:, :, column])

    # Assert
    np.testing.assert_allclose(served, expected, rtol=GARCH_VARIANCE_TOLERANCE, atol=0)


def test_online_helpers_refuse_what_does_not_fit_the_layout() -> None:
    layout = vector_layout(FAMILY_SERVICES["lstm"])
    names = layout.features
    window = unpack_vectors(np.zeros((2, layout.size)), layout)

    assert window.shape == (2, LSTM_WINDOW, len(names))
    with pytest.raises(DataValidationError, match=r"do not hold 48 rows of 18 features"):
        unpack_vectors(np.zeros((2, len(names))), layout)
    with pytest.raises(ConfigError, match=r"reads sequences of 64 rows.*holds 48"):
        sequence_input(window, names, names, 64)
    with pytest.raises(ConfigError, match=r"the model reads"):
        sequence_input(window, names, names[::-1], 16)
    with pytest.raises(DataValidationError, match=r"\[symbols, window\]"):
        garch_variance(garch_step, np.zeros(GARCH_WINDOW))


def test_a_vector_table_packed_with_another_window_is_refused(
    store: FeastStore, tmp_path: Path
) -> None:
    # Arrange: a copy of the built tables whose LSTM vectors claim one row (the old layout)
    import pyarrow.parquet as pq

    stale = FeastStore(load_settings(home=tmp_path / "stale"))
    shutil.copytree(store.paths.features_dir, stale.paths.features_dir)
    path = stale.table_path(SERVICE_VECTOR_VIEWS[FAMILY_SERVICES["lstm"]])
    table = pq.read_table(path)
    metadata = {**(table.schema.metadata or {}), b"sextant.window": b"1"}
    pq.write_table(table.replace_schema_metadata(metadata), path)

    # Act / Assert: nothing is applied or materialized
    with pytest.raises(DataValidationError, match=r"lstm_direction_v1.*another window"):
        stale.materialize()
    assert not (stale.paths.feast_dir / "online.db").exists()
