"""No look-ahead: the value at bar t computed from bars[:t+1] equals the full-series value."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.sextant.ta.cases import Bars, Case, all_cases

CASES = all_cases()


@settings(max_examples=300, deadline=None, derandomize=True)
@given(case=st.sampled_from(CASES), t=st.integers(min_value=0, max_value=599))
def test_value_at_t_depends_only_on_bars_up_to_t(case: Case, t: int, btc_slice: Bars) -> None:
    # Arrange
    prefix = {key: values[: t + 1] for key, values in btc_slice.items()}
    # Act
    full = case.run(btc_slice)
    truncated = case.run(prefix)
    # Assert
    for name, whole, part in zip(case.outputs, full, truncated, strict=True):
        assert len(part) == t + 1
        assert np.array_equal(part[t], whole[t], equal_nan=True), f"{case.id}.{name} at bar {t}"


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    case=st.sampled_from(CASES),
    t=st.integers(min_value=0, max_value=598),
    shock=st.floats(min_value=0.5, max_value=2.0),
)
def test_changing_the_future_leaves_the_past(
    case: Case, t: int, shock: float, btc_slice: Bars
) -> None:
    # Arrange: every bar after t scaled (highs and lows stay consistent)
    future = {key: values.copy() for key, values in btc_slice.items()}
    for values in future.values():
        values[t + 1 :] *= shock
    # Act
    before = case.run(btc_slice)
    after = case.run(future)
    # Assert
    for name, a, b in zip(case.outputs, before, after, strict=True):
        assert np.array_equal(a[: t + 1], b[: t + 1], equal_nan=True), f"{case.id}.{name}"
