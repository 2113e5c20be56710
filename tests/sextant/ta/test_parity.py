"""Parity with TA-Lib on real candles: NaN exactly during warm-up, 1e-9 relative after it."""

from __future__ import annotations

import numpy as np
import pytest

from tests.sextant.ta.cases import Bars, Case, talib_cases

CASES = talib_cases()
SYMBOLS = ("BTC", "ETH", "SOL", "XRP")


def _max_relative_error(ours: np.ndarray, theirs: np.ndarray) -> float:
    valid = ~np.isnan(theirs)
    diff = np.abs(ours[valid] - theirs[valid])
    scale = np.abs(theirs[valid])
    exact = diff == 0.0  # covers 0 == 0, where a relative error is undefined
    return float(
        np.max(np.where(exact, 0.0, diff / np.where(scale == 0.0, np.inf, scale)), initial=0.0)
    )


@pytest.mark.parametrize("symbol", SYMBOLS)
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_matches_talib(case: Case, symbol: str, market: dict[str, Bars]) -> None:
    # Arrange
    bars = market[symbol]
    # Act
    ours = case.run(bars)
    theirs = case.run_talib(bars)
    # Assert: same NaN positions (the warm-up), then within 1e-9 relative
    for name, mine, reference in zip(case.outputs, ours, theirs, strict=False):
        assert np.array_equal(np.isnan(mine), np.isnan(reference)), (
            f"{case.id}.{name}: NaN positions"
        )
        error = _max_relative_error(mine, reference)
        assert error <= 1e-9, f"{case.id}.{name} on {symbol}: max relative error {error:.3g}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bit_for_bit_with_talib_0_8(case: Case, market: dict[str, Bars]) -> None:
    """Stronger than the contract: the kernels replay TA-Lib 0.8's arithmetic (fma included)."""
    bars = market["BTC"]
    for name, mine, reference in zip(
        case.outputs, case.run(bars), case.run_talib(bars), strict=False
    ):
        assert np.array_equal(mine, reference, equal_nan=True), (
            f"{case.id}.{name} differs from TA-Lib"
        )


def test_flat_and_idle_stretches_match_talib(market: dict[str, Bars]) -> None:
    """Zero ranges and zero volume take TA-Lib's special paths (0 outputs, sum restarts)."""
    # Arrange: a real slice with a 300-bar flat, volume-less stretch spliced in
    bars = {key: values[:3_000].copy() for key, values in market["ETH"].items()}
    level = bars["close"][1_000]
    for key in ("open", "high", "low", "close"):
        bars[key][1_000:1_300] = level
    bars["volume"][1_000:1_300] = 0.0
    # Act / Assert
    for case in CASES:
        for name, mine, reference in zip(
            case.outputs, case.run(bars), case.run_talib(bars), strict=False
        ):
            assert np.array_equal(mine, reference, equal_nan=True), (
                f"{case.id}.{name} on a flat stretch"
            )
