"""warmup(): exactly the leading NaNs of each indicator on clean data, per output and overall."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from sextant import ta
from tests.sextant.ta.cases import Bars, Case, all_cases

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_first_warmup_values_are_nan_and_the_next_is_finite(case: Case, btc_slice: Bars) -> None:
    # Arrange
    per_output = case.warmups()
    overall = ta.warmup(case.name, **case.params)
    # Act
    outputs = case.run(btc_slice)
    # Assert
    assert overall == max(per_output.values())
    for name, values in zip(case.outputs, outputs, strict=True):
        lag = per_output[name]
        assert np.isnan(values[:lag]).all(), f"{case.id}.{name}: a value before bar {lag}"
        assert np.isfinite(values[lag:]).all(), f"{case.id}.{name}: NaN after the warm-up"


@pytest.mark.parametrize(
    ("name", "params", "expected"),
    [
        ("sma", {"period": 50}, 49),
        ("ema", {"period": 12}, 11),
        ("dema", {"period": 10}, 18),
        ("tema", {"period": 10}, 27),
        ("rsi", {}, 14),
        ("macd", {}, 33),
        ("bbands", {}, 19),
        ("atr", {}, 14),
        ("adx", {}, 27),
        ("stoch", {}, 17),
        ("stochrsi", {}, 20),
        ("cci", {"period": 20}, 19),
        ("willr", {}, 13),
        ("roc", {}, 10),
        ("mfi", {}, 14),
        ("obv", {}, 0),
        ("rolling_vwap", {}, 23),
        ("keltner", {}, 20),
        ("donchian", {}, 19),
        ("parkinson_vol", {}, 23),
        ("garman_klass_vol", {"period": 10}, 9),
    ],
)
def test_warmup_uses_the_indicator_defaults(
    name: str, params: dict[str, Any], expected: int
) -> None:
    assert ta.warmup(name, **params) == expected


def test_adx_outputs_have_their_own_warmups() -> None:
    assert ta.warmup("adx", period=14) == 27
    assert ta.warmup("adx", period=14, output="plus_di") == 14
    assert ta.warmup("adx", period=14, output="minus_di") == 14


def test_every_indicator_has_a_warmup() -> None:
    assert set(ta.INDICATORS) == {case.name for case in CASES}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ta.warmup("vwap"), "unknown indicator 'vwap'"),
        (lambda: ta.warmup("rsi", window=14), "rsi has no parameter window"),
        (lambda: ta.warmup("sma"), "sma needs period"),
        (lambda: ta.warmup("rsi", period=0), "rsi: period must be an integer >= 1, got 0"),
        (lambda: ta.warmup("macd", fast=26, slow=12), "fast must be < slow"),
        (lambda: ta.warmup("adx", output="di"), "adx has no output 'di'"),
        (lambda: ta.warmup("bbands", nbdev=-1.0), "nbdev must be a finite number > 0"),
    ],
)
def test_warmup_rejects_what_the_indicator_would(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]
