"""Feature computation: no look-ahead, honest warm-ups, alternative data joined on availability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.compute import AltData, compute_features, perp_symbol
from features.definitions import ALT_FEATURES, FEATURES, Kind, max_warmup
from sextant.errors import DataValidationError
from tests.features.conftest import SampleMarket

HOUR = pd.Timedelta(hours=1)
NAMES = [f.name for f in FEATURES]


def cut(market: SampleMarket, symbol: str, t: int) -> tuple[pd.DataFrame, AltData]:
    """Everything that was known at the close of bar ``t`` (and nothing after)."""
    candles = market.candles[symbol].iloc[: t + 1]
    known_at = candles["event_ts"].iloc[-1] + HOUR
    alt = market.alt[symbol]
    return candles, AltData(
        funding=alt.funding[alt.funding["available_at"] <= known_at],
        fear_greed=alt.fear_greed[alt.fear_greed["available_at"] <= known_at],
        news=alt.news[alt.news["available_at"] <= known_at],
    )


@pytest.fixture(scope="module")
def full(sample_market: SampleMarket) -> dict[str, pd.DataFrame]:
    return {
        s: compute_features(c, "1h", sample_market.alt[s]) for s, c in sample_market.candles.items()
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_features_at_t_equal_features_computed_from_data_cut_at_t(
    data: st.DataObject, sample_market: SampleMarket, full: dict[str, pd.DataFrame]
) -> None:
    # Arrange: a random symbol and bar; all data known at that bar's close
    symbol = data.draw(st.sampled_from(sorted(sample_market.candles)))
    n = len(sample_market.candles[symbol])
    t = data.draw(st.integers(min_value=max_warmup(), max_value=n - 1))
    candles, alt = cut(sample_market, symbol, t)

    # Act
    partial = compute_features(candles, "1h", alt)

    # Assert: the last row of the cut computation is the full computation's row at t, bit for bit
    row_full = full[symbol].iloc[t - max_warmup()]
    row_cut = partial.iloc[-1]
    assert row_cut["available_at"] == row_full["available_at"]
    np.testing.assert_array_equal(
        row_cut[NAMES].to_numpy(dtype=float), row_full[NAMES].to_numpy(dtype=float)
    )


def test_declared_warmups_are_exact(sample_market: SampleMarket) -> None:
    frame = compute_features(sample_market.candles["BTC/USDT"], "1h", drop_warmup=False)
    for feature in FEATURES:
        if feature.kind is Kind.ALT:
            continue
        values = frame[feature.name].to_numpy(dtype=float)
        first = int(np.flatnonzero(~np.isnan(values))[0])
        assert first == feature.warmup, feature.name


def test_no_nan_after_warmup_and_finite_values(full: dict[str, pd.DataFrame]) -> None:
    for symbol, frame in full.items():
        core = frame[[f.name for f in FEATURES if f.kind is not Kind.ALT]]
        assert not core.isna().any().any(), symbol
        assert np.isfinite(core.to_numpy(dtype=float)).all(), symbol


def test_table_shape_keys_and_time(
    full: dict[str, pd.DataFrame], sample_market: SampleMarket
) -> None:
    for symbol, frame in full.items():
        assert list(frame.columns) == ["symbol", "event_ts", "available_at", *NAMES]
        assert frame["event_ts"].is_unique and frame["event_ts"].is_monotonic_increasing
        assert (frame["available_at"] - frame["event_ts"] == HOUR).all()
        assert len(frame) == len(sample_market.candles[symbol]) - max_warmup()
        assert (frame["symbol"] == symbol).all()


def test_funding_published_after_a_close_is_not_used_at_that_close(
    sample_market: SampleMarket,
) -> None:
    # Arrange: settlements every 8 h; the bar opening 07:00 closes at 08:00, exactly at a settlement
    candles = sample_market.candles["BTC/USDT"]
    alt = sample_market.alt["BTC/USDT"]
    frame = compute_features(candles, "1h", alt).set_index("available_at")
    funding = alt.funding.set_index("available_at")["funding_rate"]
    settlement = funding.index[50]
    # Act / Assert: at the settlement the new rate is known; one hour earlier the previous one applies
    assert frame.loc[settlement, "funding_rate"] == funding.loc[settlement]
    assert frame.loc[settlement - HOUR, "funding_rate"] == funding.iloc[49]


def test_missing_alternative_data_stays_null(sample_market: SampleMarket) -> None:
    frame = compute_features(sample_market.candles["ETH/USDT"], "1h", AltData.empty())
    assert frame[list(ALT_FEATURES)].isna().all().all()


def test_news_outside_its_coverage_is_null_not_zero(full: dict[str, pd.DataFrame]) -> None:
    # the sample's headlines are from 2024-03..05, the candles from 2023: no coverage at all
    assert full["BTC/USDT"]["news_count_24h"].isna().all()


def test_news_window_counts_headlines_known_in_the_last_24h(sample_market: SampleMarket) -> None:
    candles = sample_market.candles["BTC/USDT"]
    t0 = candles["event_ts"].iloc[300] + HOUR
    stamps = pd.Series(
        pd.to_datetime(
            [t0 - pd.Timedelta(hours=30), t0 - pd.Timedelta(hours=2), t0, t0 + HOUR], utc=True
        )
    )
    news = pd.DataFrame(
        {"event_ts": stamps, "available_at": stamps, "sentiment": [0.9, 0.5, -0.1, 0.7]}
    )
    empty = AltData.empty()
    frame = compute_features(
        candles, "1h", AltData(funding=empty.funding, fear_greed=empty.fear_greed, news=news)
    )
    row = frame.set_index("available_at").loc[t0]
    assert row["news_count_24h"] == 2
    assert row["news_sentiment_24h"] == pytest.approx((0.5 - 0.1) / 2)


def test_too_short_history_names_the_symbol(sample_market: SampleMarket) -> None:
    short = sample_market.candles["ETH/USDT"].iloc[:100]
    with pytest.raises(DataValidationError, match="ETH/USDT 1h: 100 bars"):
        compute_features(short, "1h")


def test_perp_symbol() -> None:
    assert perp_symbol("BTC/USDT") == "BTC/USDT:USDT"
    assert perp_symbol("ETH/USDT:USDT") == "ETH/USDT:USDT"
