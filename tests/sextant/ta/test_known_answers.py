"""Hand-computed answers on tiny series, above all for the indicators TA-Lib lacks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from numpy.testing import assert_allclose

from sextant import ta

NAN = math.nan
HIGH = np.array([10.0, 12.0, 11.0, 13.0])
LOW = np.array([8.0, 10.0, 9.0, 11.0])
CLOSE = np.array([9.0, 11.0, 10.0, 12.0])  # typical prices 9, 11, 10, 12


def test_rolling_vwap_weights_typical_prices_by_volume() -> None:
    result = ta.rolling_vwap(HIGH, LOW, CLOSE, np.array([1.0, 3.0, 0.0, 2.0]), period=2)
    assert_allclose(result, [NAN, (9 * 1 + 11 * 3) / 4, 11.0, 12.0], rtol=1e-15)


def test_rolling_vwap_is_nan_while_the_window_traded_nothing() -> None:
    result = ta.rolling_vwap(HIGH, LOW, CLOSE, np.array([1.0, 0.0, 0.0, 2.0]), period=2)
    assert_allclose(result, [NAN, 9.0, NAN, 12.0], rtol=1e-15)


def test_keltner_is_ema_of_close_plus_minus_multiplier_atr() -> None:
    # EMA(2): seed (9 + 11) / 2 = 10, then 10 + 2/3 * (10 - 10) = 10, then 10 + 2/3 * 2
    # ATR(2): true ranges 3, 2, 3 -> seed (3 + 2) / 2 = 2.5, then (2.5 + 3) / 2 = 2.75
    channel = ta.keltner(HIGH, LOW, CLOSE, period=2, multiplier=2.0)
    middle = [NAN, NAN, 10.0, 10.0 + 4.0 / 3.0]
    assert_allclose(channel.middle, middle, rtol=1e-15)
    assert_allclose(channel.upper, [NAN, NAN, 15.0, middle[3] + 5.5], rtol=1e-15)
    assert_allclose(channel.lower, [NAN, NAN, 5.0, middle[3] - 5.5], rtol=1e-15)


def test_keltner_middle_equals_ema_and_width_equals_atr(
    market: dict[str, dict[str, np.ndarray]],
) -> None:
    bars = market["ETH"]
    h, lo, c = bars["high"], bars["low"], bars["close"]
    channel = ta.keltner(h, lo, c, period=20, multiplier=1.5)
    ema = ta.ema(c, 20)
    atr = ta.atr(h, lo, c, 20)
    assert np.array_equal(channel.middle[20:], ema[20:])
    assert_allclose(channel.upper[20:] - channel.middle[20:], 1.5 * atr[20:], rtol=1e-9)


def test_donchian_tracks_highest_high_and_lowest_low() -> None:
    channel = ta.donchian(np.append(HIGH, 9.0), np.append(LOW, 7.0), period=3)
    assert_allclose(channel.upper, [NAN, NAN, 12.0, 13.0, 13.0])
    assert_allclose(channel.lower, [NAN, NAN, 8.0, 9.0, 7.0])
    assert_allclose(channel.middle, [NAN, NAN, 10.0, 11.0, 10.0])


def test_donchian_matches_a_naive_rolling_window(market: dict[str, dict[str, np.ndarray]]) -> None:
    h, lo = market["SOL"]["high"][:2_000], market["SOL"]["low"][:2_000]
    for period in (1, 2, 7, 55):
        channel = ta.donchian(h, lo, period)
        windows = np.lib.stride_tricks.sliding_window_view
        assert np.array_equal(channel.upper[period - 1 :], windows(h, period).max(axis=1))
        assert np.array_equal(channel.lower[period - 1 :], windows(lo, period).min(axis=1))


def test_parkinson_volatility() -> None:
    low = np.ones(3)
    high = np.exp([0.1, 0.2, 0.3])  # ln(high / low) = 0.1, 0.2, 0.3
    result = ta.parkinson_vol(high, low, period=2)
    scale = 4.0 * math.log(2.0)
    expected = [NAN, math.sqrt((0.01 + 0.04) / 2 / scale), math.sqrt((0.04 + 0.09) / 2 / scale)]
    assert_allclose(result, expected, rtol=1e-12)


def test_garman_klass_volatility() -> None:
    open_ = np.ones(3)
    high = np.exp([0.1, 0.1, 0.2])
    low = np.exp([-0.1, -0.2, -0.1])  # ln(high / low) = 0.2, 0.3, 0.3
    close = np.exp([0.05, -0.1, 0.1])  # ln(close / open) = 0.05, -0.1, 0.1
    weight = 2.0 * math.log(2.0) - 1.0
    per_bar = [0.5 * hl**2 - weight * co**2 for hl, co in ((0.2, 0.05), (0.3, -0.1), (0.3, 0.1))]
    result = ta.garman_klass_vol(open_, high, low, close, period=2)
    expected = [
        NAN,
        math.sqrt((per_bar[0] + per_bar[1]) / 2),
        math.sqrt((per_bar[1] + per_bar[2]) / 2),
    ]
    assert_allclose(result, expected, rtol=1e-12)


def test_range_volatility_of_a_flat_market_is_zero() -> None:
    flat = np.full(30, 50.0)
    assert np.array_equal(ta.parkinson_vol(flat, flat, 5)[4:], np.zeros(26))
    assert np.array_equal(ta.garman_klass_vol(flat, flat, flat, flat, 5)[4:], np.zeros(26))


def test_bollinger_percent_b_and_bandwidth() -> None:
    bands = ta.bbands(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), period=3, nbdev=2.0)
    sd = math.sqrt(2.0 / 3.0)  # population deviation of any 3 consecutive integers
    assert_allclose(bands.middle, [NAN, NAN, 2.0, 3.0, 4.0], rtol=1e-15)
    assert_allclose(bands.upper[2:], [2.0 + 2 * sd, 3.0 + 2 * sd, 4.0 + 2 * sd], rtol=1e-12)
    assert_allclose(bands.percent_b[2:], [(1 + 2 * sd) / (4 * sd)] * 3, rtol=1e-12)
    assert_allclose(bands.bandwidth[2:], [4 * sd / 2.0, 4 * sd / 3.0, 4 * sd / 4.0], rtol=1e-12)


def test_collapsed_bands_put_close_in_the_middle() -> None:
    bands = ta.bbands(np.full(6, 5.0), period=3)
    assert np.array_equal(bands.percent_b[2:], np.full(4, 0.5))
    assert np.array_equal(bands.bandwidth[2:], np.zeros(4))


def test_small_textbook_values() -> None:
    close = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    assert_allclose(ta.sma(close, 3), [NAN, NAN, 2.0, 3.0, 4.0])
    assert_allclose(ta.ema(close, 3), [NAN, NAN, 2.0, 3.0, 4.0])  # k = 0.5, seeded with SMA
    assert_allclose(ta.wma(close, 2), [NAN, 5 / 3, 8 / 3, 11 / 3, 14 / 3], rtol=1e-15)
    assert_allclose(ta.roc(close, 1)[1:], [100.0, 50.0, 100 / 3, 25.0], rtol=1e-12)
    assert_allclose(ta.rsi(np.array([1.0, 2.0, 3.0, 2.0, 3.0]), 2), [NAN, NAN, 100.0, 50.0, 75.0])
    obv = ta.obv(np.array([10.0, 11.0, 11.0, 9.0, 12.0]), np.array([5.0, 3.0, 2.0, 4.0, 1.0]))
    assert_allclose(obv, [5.0, 8.0, 8.0, 4.0, 5.0])


@pytest.mark.parametrize("period", [1, 3, 24])
def test_rolling_vwap_matches_a_naive_window(
    period: int, market: dict[str, dict[str, np.ndarray]]
) -> None:
    bars = {key: values[:3_000] for key, values in market["XRP"].items()}
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3.0
    windows = np.lib.stride_tricks.sliding_window_view
    weighted = windows(typical * bars["volume"], period).sum(axis=1)
    volume = windows(bars["volume"], period).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = np.where(volume > 0, weighted / volume, np.nan)
    result = ta.rolling_vwap(bars["high"], bars["low"], bars["close"], bars["volume"], period)
    assert_allclose(result[period - 1 :], expected, rtol=1e-9)
