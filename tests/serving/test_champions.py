"""Start-up checks of a champion's recorded input against the served feature services."""

from __future__ import annotations

import json

import pytest

from features.definitions import service_features
from serving.champions import check_features
from sextant.errors import ConfigError

XGB = "xgb_direction_v1"


def test_recorded_service_and_features_that_match_pass() -> None:
    features = service_features(XGB)

    assert check_features("xgb", "m v1", XGB, json.dumps(features)) == (XGB, features)


def test_garch_without_a_feature_list_reads_its_service() -> None:
    assert check_features("garch", "g v1", "garch_vol_v1", None) == (
        "garch_vol_v1",
        service_features("garch_vol_v1"),
    )


@pytest.mark.parametrize(
    ("family", "service", "features", "expected"),
    [
        ("xgb", "lstm_direction_v1", None, "feature service 'lstm_direction_v1'"),
        ("xgb", None, None, "feature service None"),
        ("xgb", XGB, ["rsi_14", "nope"], "not in the service ['nope']"),
        ("xgb", XGB, list(reversed(service_features(XGB))), "other order"),
        ("lstm", "lstm_direction_v1", None, "not in the model ['log_return_1'"),
    ],
)
def test_a_mismatch_is_refused_naming_model_and_features(
    family: str, service: str | None, features: list[str] | None, expected: str
) -> None:
    recorded = None if features is None else json.dumps(features)

    with pytest.raises(ConfigError, match="sextant-x version 3") as refused:
        check_features(family, "sextant-x version 3", service, recorded)

    assert expected in str(refused.value)
