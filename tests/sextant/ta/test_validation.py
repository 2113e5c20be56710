"""Bad parameters and inputs raise ValueError naming the indicator and the argument."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from sextant import ta

X = np.linspace(100.0, 110.0, 50)
H, L, V = X + 1.0, X - 1.0, np.ones(50)


@pytest.mark.parametrize("period", [0, -3, 2.5, True, "14", None])
@pytest.mark.parametrize(
    "call",
    [
        lambda p: ta.sma(X, p),
        lambda p: ta.ema(X, p),
        lambda p: ta.tema(X, p),
        lambda p: ta.rsi(X, p),
        lambda p: ta.atr(H, L, X, p),
        lambda p: ta.adx(H, L, X, p),
        lambda p: ta.cci(H, L, X, p),
        lambda p: ta.mfi(H, L, X, V, p),
        lambda p: ta.rolling_vwap(H, L, X, V, p),
        lambda p: ta.donchian(H, L, p),
        lambda p: ta.parkinson_vol(H, L, p),
    ],
)
def test_a_period_must_be_an_integer_of_at_least_one(
    call: Callable[[object], object], period: object
) -> None:
    with pytest.raises(ValueError, match=r"period must be an integer >= 1"):
        call(period)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ta.stoch(H, L, X, fastk=14, slowk=0),
            r"stoch: slowk must be an integer >= 1, got 0",
        ),
        (lambda: ta.stochrsi(X, fastd=-1), r"stochrsi: fastd must be an integer >= 1, got -1"),
        (lambda: ta.macd(X, fast=26, slow=12), r"macd: fast must be < slow, got fast=26, slow=12"),
        (lambda: ta.macd(X, fast=12, slow=12), r"macd: fast must be < slow"),
        (lambda: ta.macd(X, signal=0), r"macd: signal must be an integer >= 1, got 0"),
        (lambda: ta.bbands(X, nbdev=0.0), r"bbands: nbdev must be a finite number > 0, got 0.0"),
        (lambda: ta.bbands(X, nbdev=float("nan")), r"bbands: nbdev must be a finite number > 0"),
        (
            lambda: ta.keltner(H, L, X, multiplier=-2.0),
            r"keltner: multiplier must be a finite number > 0",
        ),
    ],
)
def test_other_parameters(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: ta.atr(H, L[:-1], X),
            r"atr: inputs must have the same length, got high=50, low=49, close=50",
        ),
        (
            lambda: ta.mfi(H, L, X, V[:10]),
            r"mfi: inputs must have the same length, got close=50, volume=10",
        ),
        (lambda: ta.obv(X, V[:3]), r"obv: inputs must have the same length"),
        (lambda: ta.donchian(H[:5], L), r"donchian: inputs must have the same length"),
        (
            lambda: ta.garman_klass_vol(X[:2], H, L, X),
            r"garman_klass_vol: inputs must have the same length, got open_=2, close=50",
        ),
    ],
)
def test_inputs_must_have_one_length(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


def test_inputs_must_be_one_dimensional_numbers() -> None:
    with pytest.raises(ValueError, match=r"sma: x must be one-dimensional, got shape \(5, 10\)"):
        ta.sma(X.reshape(5, 10), 3)
    with pytest.raises(ValueError, match=r"rsi: close is not numeric"):
        ta.rsi(["a", "b", "c"], 2)


def test_array_likes_of_any_layout_are_accepted() -> None:
    # Arrange: a list, an int array, a strided view and a read-only array
    strided = np.repeat(X, 2)[::2]
    readonly = X.copy()
    readonly.flags.writeable = False
    # Act / Assert
    expected = ta.sma(X, 5)
    assert np.array_equal(ta.sma(list(X), 5), expected, equal_nan=True)
    assert np.array_equal(ta.sma(strided, 5), expected, equal_nan=True)
    assert np.array_equal(ta.sma(readonly, 5), expected, equal_nan=True)
    assert ta.sma(np.arange(10), 2).dtype == np.float64
    assert np.array_equal(ta.sma(np.arange(10), 2)[1:], np.arange(10)[1:] - 0.5)


def test_a_window_too_long_for_the_kernels_is_refused() -> None:
    with pytest.raises(
        ValueError, match=r"sma: period must be at most 2147483647, got 1099511627776"
    ):
        ta.sma(X, 2**40)
