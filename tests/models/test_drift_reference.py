"""The drift reference: bins with a NaN bin, constant and missing features, JSON round trip, and
its way through a real MLflow store to the registered version's reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.monitoring.drift import load_drift_reference
from models.drift_reference import (
    DRIFT_REFERENCE_FILE,
    Distribution,
    DriftReference,
    DriftReferenceConfig,
    build_drift_reference,
    log_drift_reference,
    population_stability_index,
    psi_rows,
)
from models.protocol import DirectionDataset
from models.tracking import EXPERIMENTS, Tracking
from serving.champions import registry_client
from sextant.contracts import CHAMPION, REGISTERED_MODELS, ModelTag
from sextant.errors import ConfigError, DataValidationError
from sextant.settings import load_settings

FEATURES = ("rsi_14", "donchian_breakout_20", "constant", "news_count_24h")


def _dataset(n: int = 600) -> tuple[DirectionDataset, pd.DataFrame]:
    """Two symbols: a continuous, a discrete, a constant and an always-missing feature."""
    rng = np.random.default_rng(7)
    symbols = np.repeat(["BTC/USDT", "ETH/USDT"], n // 2)
    ts = pd.Series(
        np.tile(pd.date_range("2024-01-01", periods=n // 2, freq="h", tz="UTC"), 2)
    ).dt.tz_convert("UTC")
    X = np.column_stack(
        [
            rng.normal(50, 10, n),
            rng.choice([-1.0, 0.0, 1.0], n, p=[0.1, 0.8, 0.1]),
            np.full(n, 3.0),
            np.full(n, np.nan),
        ]
    ).astype(np.float32)
    X[:25, 0] = np.nan  # some missing values of a feature that is usually present
    y = rng.integers(0, 2, n)
    frame = pd.DataFrame(
        {
            "symbol": symbols,
            "decision_ts": ts,
            "label_end_ts": ts + pd.Timedelta(hours=4),
            "fwd_log_return": rng.normal(0, 0.01, n),
            "label_up": y,
        }
    )
    oof = frame.assign(
        p_up=np.clip(0.5 + rng.normal(0, 0.05, n), 0.01, 0.99),
        span=np.where(np.arange(n) % (n // 2) >= n // 4, "reported", "selection"),
    )
    return DirectionDataset("xgb_direction_v1", FEATURES, frame, X, y.astype(np.int64)), oof


def test_bins_are_deciles_with_a_nan_bin_and_discrete_values_keep_their_own_bin() -> None:
    # Arrange
    data, oof = _dataset()

    # Act
    reference = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4)

    # Assert
    btc = reference.for_symbol("BTC/USDT")
    rsi = btc["rsi_14"]
    # deciles between an edge below the minimum and the maximum: two empty outer bins
    assert len(rsi.edges) == 12 and len(rsi.proportions) == 14
    assert rsi.proportions[0] == rsi.proportions[-2] == 0.0
    assert rsi.shares([rsi.edges[0], rsi.edges[-1] + 1.0])[[0, -2]].tolist() == [0.5, 0.5]
    assert rsi.proportions[-1] == pytest.approx(25 / 300)  # the NaN bin
    assert sum(rsi.proportions) == pytest.approx(1.0)
    assert rsi.proportions[1] == pytest.approx(1 / 300, abs=1e-6)  # the minimum's own bin
    assert all(p == pytest.approx(275 / 300 / 10, abs=0.02) for p in rsi.proportions[2:-2])
    discrete = btc["donchian_breakout_20"]
    shares = discrete.shares(np.array([-1.0, 0.0, 0.0, 1.0]))
    assert sorted(shares[shares > 0].tolist()) == [0.25, 0.25, 0.5]
    assert discrete.shares([0.5])[-2] == 0.0  # between two training values, not beyond
    constant = btc["constant"]
    assert constant.proportions == (0.0, 1.0, 0.0, 0.0)  # below, the value, above, NaN
    assert constant.shares([2.0, 3.0, 4.0]).tolist() == pytest.approx([1 / 3] * 3 + [0.0])
    assert constant.lower == constant.upper == 3.0
    missing = btc["news_count_24h"]
    assert missing.proportions == (0.0, 1.0) and missing.sample == () and missing.lower is None
    assert len(rsi.sample) == 100 and list(rsi.sample) == sorted(rsi.sample)


def test_output_and_calibration_come_from_the_reported_span_per_symbol() -> None:
    # Arrange
    data, oof = _dataset()

    # Act
    reference = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4)

    # Assert
    reported = oof[(oof["span"] == "reported") & (oof["symbol"] == "ETH/USDT")]
    y, p = reported["label_up"].to_numpy(), reported["p_up"].to_numpy()
    calibration = reference.calibration["ETH/USDT"]
    assert calibration.n == len(reported)
    assert calibration.brier == pytest.approx(np.mean((p - y) ** 2), rel=1e-5)
    expected_log_loss = -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))
    assert calibration.log_loss == pytest.approx(expected_log_loss, rel=1e-5)
    assert reference.output["ETH/USDT"].n == len(reported)
    assert reference.output_span.startswith(reported["decision_ts"].min().isoformat())


def test_json_round_trip_is_exact_and_small() -> None:
    data, oof = _dataset()
    reference = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4)

    text = json.dumps(reference.to_json())
    again = DriftReference.from_json(json.loads(text))

    assert again == reference
    assert len(text) < 20_000


def test_bad_inputs_are_typed_errors() -> None:
    data, oof = _dataset()
    with pytest.raises(DataValidationError, match="lacks"):
        build_drift_reference(
            family="xgb", data=data, oof=oof.drop(columns="p_up"), label_horizon=4
        )
    with pytest.raises(DataValidationError, match="reported"):
        build_drift_reference(
            family="xgb", data=data, oof=oof.assign(span="selection"), label_horizon=4
        )
    with pytest.raises(DataValidationError, match="infinite"):
        Distribution.of([1.0, np.inf], DriftReferenceConfig())
    with pytest.raises(ConfigError, match="bins"):
        DriftReferenceConfig(bins=1)
    good = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4).to_json()
    with pytest.raises(DataValidationError, match="schema_version"):
        DriftReference.from_json({**good, "schema_version": 99})
    broken = json.loads(json.dumps(good))
    del broken["inputs"]["BTC/USDT"]["rsi_14"]["edges"]
    with pytest.raises(DataValidationError, match=r"inputs\.BTC/USDT\.rsi_14"):
        DriftReference.from_json(broken)
    with pytest.raises(DataValidationError, match="no symbol 'SOL/USDT'"):
        DriftReference.from_json(good).for_symbol("SOL/USDT")


def test_reference_round_trips_through_mlflow_and_is_found_from_the_champion(
    tmp_path: Path,
) -> None:
    # Arrange: a run holding the reference, a version registered from it, aliased champion
    import mlflow

    settings = load_settings(home=tmp_path / "home")
    tracking = Tracking.from_settings(settings)
    data, oof = _dataset()
    reference = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4)
    with (
        tracking.fluent(),
        mlflow.start_run(experiment_id=tracking.experiment_id(EXPERIMENTS["direction"])) as run,
    ):
        path = log_drift_reference(reference)
        mlflow.log_dict({"probe": 1}, "model/probe.json")
    name = REGISTERED_MODELS["xgb"]
    client = tracking.client
    client.create_registered_model(name)
    version = client.create_model_version(
        name,
        f"{run.info.artifact_uri}/model",
        run_id=run.info.run_id,
        tags={ModelTag.DRIFT_REFERENCE: path},
    )
    client.set_registered_model_alias(name, CHAMPION, version.version)

    # Act: read the way the monitor does, through a client bound to the settings' URIs
    found = load_drift_reference(registry_client(settings), "xgb")

    # Assert
    assert path == DRIFT_REFERENCE_FILE
    assert found == reference
    assert load_drift_reference(registry_client(settings), "lstm") is None  # no champion


def test_window_psi_line_is_high_for_a_persistent_feature_and_low_for_an_iid_one() -> None:
    # Arrange: the same values in time order as a slow regime (a random walk) and shuffled
    rng = np.random.default_rng(3)
    walk = np.cumsum(rng.normal(0, 1, 2_000))
    config = DriftReferenceConfig(window_rows=168, window_stride=24, window_quantile=1.0)

    # Act
    persistent = Distribution.of(walk, config, windows=True)
    shuffled = Distribution.of(rng.permutation(walk), config, windows=True)
    plain = Distribution.of(walk, config)

    # Assert: a week of a random walk covers a few deciles (PSI of several units); a week of
    # iid draws covers them all (about chi-square / n: well under the fixed 0.25 line)
    assert persistent.window_psi is not None and persistent.window_psi > 2.0
    assert shuffled.window_psi is not None and shuffled.window_psi < 0.25
    assert plain.window_psi is None
    assert Distribution.of(walk[:100], config, windows=True).window_psi is None  # < one window


def test_a_schema_1_reference_reads_without_window_lines_and_gets_the_fixed_line() -> None:
    # Arrange: a reference as schema 1 wrote it (no window lines)
    from agents.monitoring.drift import FeatureDriftConfig, psi_lines

    data, oof = _dataset()
    current = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=4)
    old = json.loads(json.dumps(current.to_json()))
    old["schema_version"] = 1
    del old["window_rows"]
    for by_feature in old["inputs"].values():
        for figures in by_feature.values():
            del figures["window_psi"]

    # Act
    read = DriftReference.from_json(old)
    lines = psi_lines(read, read.for_symbol("BTC/USDT"), FeatureDriftConfig())
    current_lines = psi_lines(current, current.for_symbol("BTC/USDT"), FeatureDriftConfig())

    # Assert
    assert read.window_rows is None and current.window_rows == 168
    assert set(lines.values()) == {0.25}
    assert current_lines["rsi_14"] >= 0.25
    assert DriftReference.from_json(current.to_json()) == current


def test_psi_rows_equals_one_psi_per_row_with_empty_bins_floored() -> None:
    # Arrange: three live share vectors (one with empty bins) against one reference
    rng = np.random.default_rng(7)
    live = rng.dirichlet(np.ones(6), size=3)
    live[1, [0, 4]] = 0.0
    live[1] /= live[1].sum()
    reference = rng.dirichlet(np.ones(6))
    # Act
    rows = psi_rows(live, reference)
    # Assert: the same floats as one call per row; identical shares give 0
    assert rows.tolist() == [population_stability_index(row, reference) for row in live]
    assert np.isfinite(rows).all() and (rows > 0).all()
    assert psi_rows(reference, reference) == 0.0
