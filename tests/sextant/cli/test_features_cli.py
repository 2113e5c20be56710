"""`sextant features build / materialize / online`, run as a user runs them, on the bundled sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.definitions import FEATURE_VIEWS, SERVICE_VECTOR_VIEWS, service_features
from tests.sextant.cli.test_ingest_cli import sextant

ALL_VIEWS = {*FEATURE_VIEWS.values(), *SERVICE_VECTOR_VIEWS.values()}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("features-cli") / "home"
    sextant(home, "ingest", "--source", "sample", "--json")
    return home


@pytest.mark.slow
def test_build_materialize_and_read_online_report_every_view(home: Path) -> None:
    # Act
    built = json.loads(sextant(home, "features", "build", "--json").stdout)
    first = json.loads(sextant(home, "features", "materialize", "--json").stdout)
    again = json.loads(sextant(home, "features", "materialize", "--json").stdout)
    online = json.loads(
        sextant(
            home,
            "features",
            "online",
            "--service",
            "lstm_direction_v1",
            "--symbol",
            "ETH/USDT",
            "--symbol",
            "BTC/USDT",
            "--json",
        ).stdout
    )

    # Assert: rows and time per view, a backfill then nothing new
    assert {v["view"] for v in built["views"]} == ALL_VIEWS
    assert len({v["rows"] for v in built["views"]}) == 1  # every view: one row per bar close
    assert all(v["rows"] > 17_000 and v["seconds"] >= 0 for v in built["views"])
    assert {v["view"]: (v["rows"], v["incremental"]) for v in first["views"]} == {
        v["view"]: (v["rows"], False) for v in built["views"]
    }
    assert {(v["rows"], v["incremental"]) for v in again["views"]} == {(0, True)}
    # the online values are the latest built row of each symbol, as of its last bar close
    table = pd.read_parquet(home / "features" / "ta_features.parquet")
    stat = pd.read_parquet(home / "features" / "stat_features.parquet")
    alt = pd.read_parquet(home / "features" / "alt_features.parquet")
    wide = table.merge(stat, on=["symbol", "event_ts", "available_at"]).merge(
        alt, on=["symbol", "event_ts", "available_at"]
    )
    latest = wide.sort_values("available_at").groupby("symbol").last()
    wanted = service_features("lstm_direction_v1")
    assert online["features"] == list(wanted)
    assert [r["symbol"] for r in online["rows"]] == ["ETH/USDT", "BTC/USDT"]
    for row in online["rows"]:
        expected = latest.loc[row["symbol"]]
        assert pd.Timestamp(row["as_of"]) == expected["available_at"]
        got = [np.nan if v is None else v for v in row["values"].values()]
        assert np.array_equal(got, expected[list(wanted)].to_numpy(float), equal_nan=True)


@pytest.mark.slow
def test_online_read_of_a_symbol_never_built_names_it(home: Path) -> None:
    # Arrange
    sextant(home, "features", "build")
    sextant(home, "features", "materialize")

    # Act
    proc = sextant(home, "features", "online", "--symbol", "SOL/USDT", check=False)

    # Assert
    assert proc.returncode == 2
    assert "SOL/USDT" in proc.stderr and "sextant features build" in proc.stderr
