"""NaN inputs: leading NaNs are skipped (as TA-Lib does); a later NaN poisons the rest."""

from __future__ import annotations

import numpy as np
import pytest

from sextant import ta
from tests.sextant.ta.cases import Bars, Case, all_cases, default_cases

DEFAULTS = default_cases()
INPUT_CASES = [(case, key) for case in DEFAULTS for key in case.inputs]


@pytest.mark.parametrize("bar", [3, 250])
@pytest.mark.parametrize(
    ("case", "key"), INPUT_CASES, ids=[f"{case.name}-{key}" for case, key in INPUT_CASES]
)
def test_a_nan_poisons_that_bar_and_every_later_one(
    case: Case, key: str, bar: int, btc_slice: Bars
) -> None:
    # Arrange: one NaN in one input, during the warm-up (bar 3) or after it (bar 250)
    clean = case.run(btc_slice)
    dirty_bars = dict(btc_slice)
    dirty_bars[key] = btc_slice[key].copy()
    dirty_bars[key][bar] = np.nan
    # Act
    dirty = case.run(dirty_bars)
    # Assert
    for name, before, after in zip(case.outputs, clean, dirty, strict=True):
        assert np.array_equal(after[:bar], before[:bar], equal_nan=True), f"{case.id}.{name}"
        assert np.isnan(after[bar:]).all(), f"{case.id}.{name}: a value after the NaN in {key}"


@pytest.mark.parametrize("case", DEFAULTS, ids=[case.id for case in DEFAULTS])
def test_leading_nans_shift_the_start(case: Case, btc_slice: Bars) -> None:
    # Arrange: the first input starts 7 bars late (NaN before), the others are whole
    late = dict(btc_slice)
    late[case.inputs[0]] = btc_slice[case.inputs[0]].copy()
    late[case.inputs[0]][:7] = np.nan
    trimmed = {key: values[7:] for key, values in btc_slice.items()}
    # Act
    shifted = case.run(late)
    expected = case.run(trimmed)
    # Assert: the same as computing on the bars from the first complete one, NaN before it
    for name, got, want in zip(case.outputs, shifted, expected, strict=True):
        assert np.isnan(got[:7]).all(), f"{case.id}.{name}"
        assert np.array_equal(got[7:], want, equal_nan=True), f"{case.id}.{name}"


@pytest.mark.parametrize("case", [c for c in DEFAULTS if c.talib is not None], ids=lambda c: c.id)
def test_leading_nans_like_talib(case: Case, btc_slice: Bars) -> None:
    late = {key: values.copy() for key, values in btc_slice.items()}
    late[case.inputs[-1]][:5] = np.nan
    for name, mine, reference in zip(
        case.outputs, case.run(late), case.run_talib(late), strict=False
    ):
        assert np.array_equal(mine, reference, equal_nan=True), f"{case.id}.{name}"


@pytest.mark.parametrize("case", all_cases(), ids=lambda c: c.id)
def test_short_empty_and_all_nan_inputs(case: Case) -> None:
    base = np.array([100.0, 100.5, 101.0])
    short = {"open": base, "high": base + 1.0, "low": base - 1.0, "close": base, "volume": base}
    lags = case.warmups()
    for name, values in zip(case.outputs, case.run(short), strict=True):
        assert len(values) == 3
        assert np.isnan(values[: lags[name]]).all(), f"{case.id}.{name}"
        assert np.isfinite(values[lags[name] :]).all(), f"{case.id}.{name}"
    empty = {key: np.empty(0) for key in short}
    assert all(len(values) == 0 for values in case.run(empty))
    missing = {key: np.full(40, np.nan) for key in short}
    assert all(np.isnan(values).all() for values in case.run(missing))


def test_poison_also_reaches_bbands_ratios() -> None:
    close = np.linspace(100.0, 130.0, 60)
    close[45] = np.nan
    bands = ta.bbands(close, 5)
    for values in bands:
        assert np.isnan(values[45:]).all()
        assert np.isfinite(values[4:45]).all()
