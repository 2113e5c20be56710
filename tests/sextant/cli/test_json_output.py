"""Every `--json` output is strict JSON: an unknown figure (NaN) is null, never a bare NaN."""

from __future__ import annotations

import json
import math

import pytest

from sextant.cli.main import _emit_json


def _refuse(constant: str) -> float:
    raise AssertionError(f"{constant} is not JSON")


def test_non_finite_numbers_are_printed_as_null(capsys: pytest.CaptureFixture[str]) -> None:
    # Arrange: nested the way decision records are (models, sizing, checks)
    payload = {
        "models": {"p_xgb": math.nan, "p_lstm": 0.6},
        "checks": [{"observed": math.inf, "limit": 1.0}],
        "pair": (math.nan, -math.inf, 2),
        "flag": True,
    }
    # Act
    _emit_json(payload)
    printed = capsys.readouterr().out
    # Assert: a strict parser accepts it, and only the non-finite values became null
    parsed = json.loads(printed, parse_constant=_refuse)
    assert parsed == {
        "models": {"p_xgb": None, "p_lstm": 0.6},
        "checks": [{"observed": None, "limit": 1.0}],
        "pair": [None, None, 2],
        "flag": True,
    }
