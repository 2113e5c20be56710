"""GARCH as a served family: one ONNX graph for all symbols, walk-forward evaluation vs a baseline."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from models.garch import GarchConfig, GarchModel, GarchParams
from models.garch_family import evaluate_garch, garch_multi_onnx, garch_multi_parity
from tests.models.conftest import TRUE_T, simulate_garch

CALM = GarchParams(mu=0.0, omega=2e-7, alpha=0.04, gamma=0.0, beta=0.95, nu=8.0)


def hourly(series: pd.Series) -> pd.Series:
    return pd.Series(
        series.to_numpy(),
        index=pd.date_range("2022-01-01", periods=len(series), freq="h", tz="UTC"),
    )


@pytest.fixture(scope="module")
def returns() -> dict[str, pd.Series]:
    return {
        "BTC/USDT": hourly(simulate_garch(TRUE_T, 6_000, seed=11)),
        "ETH/USDT": hourly(simulate_garch(CALM, 6_000, seed=12)),
    }


def test_one_graph_serves_each_symbol_with_its_own_parameters(
    returns: dict[str, pd.Series],
) -> None:
    import onnxruntime as ort

    fits = {s: GarchModel(GarchConfig()).fit(r) for s, r in returns.items()}
    proto = garch_multi_onnx(fits)
    symbols = json.loads({p.key: p.value for p in proto.metadata_props}["symbols"])
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])

    last_return = np.array([[-0.02], [-0.02]])
    last_variance = np.array([[1e-4], [1e-4]])
    index = np.array([[symbols.index("BTC/USDT")], [symbols.index("ETH/USDT")]], dtype=np.int64)
    (out,) = session.run(
        None, {"symbol_index": index, "last_return": last_return, "last_variance": last_variance}
    )

    assert out[0, 0] == pytest.approx(fits["BTC/USDT"].forecast_next(-0.02, 1e-4), rel=1e-12)
    assert out[1, 0] == pytest.approx(fits["ETH/USDT"].forecast_next(-0.02, 1e-4), rel=1e-12)
    assert out[0, 0] != out[1, 0]
    report = garch_multi_parity(proto, fits, {s: r.iloc[-200:] for s, r in returns.items()})
    assert report.passed and report.n == 400


def test_parity_fails_for_a_graph_of_other_parameters(returns: dict[str, pd.Series]) -> None:
    fits = {s: GarchModel(GarchConfig()).fit(r) for s, r in returns.items()}
    swapped = {"BTC/USDT": fits["ETH/USDT"], "ETH/USDT": fits["BTC/USDT"]}
    report = garch_multi_parity(
        garch_multi_onnx(swapped), fits, {s: r.iloc[-50:] for s, r in returns.items()}
    )
    assert not report.passed and "failed" in report.message


def test_walk_forward_forecasts_only_test_blocks_and_beat_the_rolling_baseline(
    returns: dict[str, pd.Series],
) -> None:
    evaluation = evaluate_garch(
        returns,
        GarchConfig(),
        n_splits=3,
        min_train_bars=3_000,
        embargo=pd.Timedelta(hours=4),
        bar=pd.Timedelta(hours=1),
    )

    oof = evaluation.oof
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    assert not oof.duplicated(["symbol", "ts"]).any()
    assert oof["ts"].min() >= returns["BTC/USDT"].index[3_000]
    assert (oof["forecast_var"] > 0).all() and (oof["var99"] > 0).all()
    assert evaluation.metrics["qlike_vs_baseline_rows"] < evaluation.metrics["baseline_qlike"]
    assert 0.002 < evaluation.metrics["var99_exceedance_rate"] < 0.025
    assert len(evaluation.fold_metrics) == 3
