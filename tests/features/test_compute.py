"""Feature computation: no look-ahead, honest warm-ups, alternative data joined on availability."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from features.compute import AltData, compute_features, perp_symbol
from features.definitions import ALT_FEATURES, FEATURES, Kind, max_warmup
from sextant import ta
from sextant.errors import DataValidationError
from tests.features.conftest import SampleMarket, bars_since_gap

HOUR = pd.Timedelta(hours=1)
NAMES = [f.name for f in FEATURES]
CANDLE_FEATURES = [f for f in FEATURES if f.kind is not Kind.ALT]


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


def test_a_candle_feature_looks_back_over_its_warm_up_and_the_bar_itself() -> None:
    # compute nulls a statistic after a gap for ``warmup`` bars: its window must be warm-up + 1
    for feature in CANDLE_FEATURES:
        assert feature.window == feature.warmup + 1, feature.name


def test_no_nan_after_warmup_and_finite_values(
    full: dict[str, pd.DataFrame], sample_market: SampleMarket
) -> None:
    # the sample has one missing bar (2023-03-24 13:00): candle features restart after it
    for symbol, frame in full.items():
        since_gap = bars_since_gap(sample_market.candles[symbol]["event_ts"], HOUR)[max_warmup() :]
        for feature in CANDLE_FEATURES:
            values = frame[feature.name].to_numpy(dtype=float)
            restarting = since_gap < feature.warmup
            assert np.isnan(values[restarting]).all(), (symbol, feature.name)
            assert np.isfinite(values[~restarting]).all(), (symbol, feature.name)


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


def synthetic_alt(candles: pd.DataFrame) -> AltData:
    """Funding every 8 h, daily Fear & Greed, and headlines over the candles' span, with silences.

    The headlines come every few hours, except for a 3-day silence and a 30-hour one, so that an
    archive cut inside a silence ends more than 24 h before the cut.
    """
    rng = np.random.default_rng(11)
    start = candles["event_ts"].iloc[0]
    end = candles["event_ts"].iloc[-1] + HOUR
    settle = pd.Series(pd.date_range(start.ceil("8h"), end, freq="8h"))
    days = pd.Series(pd.date_range(start.ceil("1D"), end, freq="1D"))
    offsets = np.cumsum(rng.uniform(0.2, 6.0, 4000))
    stamps = pd.Series(start + pd.to_timedelta(offsets, unit="h"))
    silences = [(start + pd.Timedelta(days=20), pd.Timedelta(days=3))]
    silences.append((start + pd.Timedelta(days=40), pd.Timedelta(hours=30)))
    for begin, length in silences:
        stamps = stamps[(stamps < begin) | (stamps >= begin + length)]
    stamps = stamps[stamps <= end].reset_index(drop=True)
    return AltData(
        funding=pd.DataFrame(
            {
                "event_ts": settle,
                "available_at": settle,
                "funding_rate": rng.normal(1e-4, 5e-5, len(settle)),
            }
        ),
        fear_greed=pd.DataFrame(
            {
                "event_ts": days,
                "available_at": days + HOUR,
                "value": rng.integers(5, 95, len(days)).astype(float),
            }
        ),
        news=pd.DataFrame(
            {
                "event_ts": stamps,
                "available_at": stamps,
                "sentiment": rng.uniform(-1, 1, len(stamps)),
            }
        ),
    )


def known_by(alt: AltData, cutoff: pd.Timestamp) -> AltData:
    """The alternative data archives as they stood at ``cutoff``."""
    return AltData(
        funding=alt.funding[alt.funding["available_at"] <= cutoff],
        fear_greed=alt.fear_greed[alt.fear_greed["available_at"] <= cutoff],
        news=alt.news[alt.news["available_at"] <= cutoff],
    )


@pytest.mark.parametrize(
    "cutoff_hours",
    [
        20 * 24 + 50,  # inside the 3-day news silence, 50 h after the last headline
        40 * 24 + 29,  # inside the 30-hour silence
        33 * 24 + 5,  # in ordinary news flow
    ],
)
def test_later_alternative_data_never_changes_earlier_rows(
    sample_market: SampleMarket, cutoff_hours: int
) -> None:
    # Arrange: alternative data over the candles, and the same archives cut at ``cutoff``
    candles = sample_market.candles["BTC/USDT"].iloc[:1500]
    alt = synthetic_alt(candles)
    cutoff = candles["event_ts"].iloc[0] + pd.Timedelta(hours=cutoff_hours)

    # Act
    whole = compute_features(candles, "1h", alt)
    then = compute_features(candles, "1h", known_by(alt, cutoff))

    # Assert: every row known by the cutoff is the same whether or not later data exists
    known = whole["available_at"] <= cutoff
    assert known.sum() > 300 and (~known).sum() > 300
    assert whole.loc[known, "news_count_24h"].notna().any()
    pd.testing.assert_frame_equal(whole.loc[known], then.loc[known], check_exact=True)


def test_news_silence_counts_zero_once_a_feed_is_running(sample_market: SampleMarket) -> None:
    # Arrange: the 3-day silence starts 20 days in; the archive goes on afterwards
    candles = sample_market.candles["BTC/USDT"].iloc[:1500]
    alt = synthetic_alt(candles)
    frame = compute_features(candles, "1h", alt, drop_warmup=False).set_index("available_at")
    first_headline = alt.news["available_at"].min()
    silent = candles["event_ts"].iloc[0] + pd.Timedelta(days=20) + pd.Timedelta(hours=48)

    # Act / Assert: before the first headline there is no feed (null); in a silence, none came (0)
    assert frame.loc[frame.index < first_headline, "news_count_24h"].isna().all()
    assert frame.loc[silent, "news_count_24h"] == 0
    assert np.isnan(frame.loc[silent, "news_sentiment_24h"])


def without_bars(candles: pd.DataFrame, first: int, count: int) -> pd.DataFrame:
    """The candles with ``count`` bars missing from row ``first`` on (a hole in the series)."""
    return pd.concat([candles.iloc[:first], candles.iloc[first + count :]], ignore_index=True)


def test_candle_features_restart_after_a_gap(sample_market: SampleMarket) -> None:
    # Arrange: 1500 contiguous hourly bars with a 34-bar hole after bar 600
    candles = sample_market.candles["BTC/USDT"].iloc[:1500].reset_index(drop=True)
    assert (candles["event_ts"].diff().iloc[1:] == HOUR).all()
    holed = without_bars(candles, 600, 34)
    names = [f.name for f in CANDLE_FEATURES]

    # Act
    frame = compute_features(holed, "1h", drop_warmup=False)
    before = compute_features(candles.iloc[:600], "1h", drop_warmup=False)
    after = compute_features(candles.iloc[634:], "1h", drop_warmup=False)

    # Assert: before the hole nothing changes; after it, each feature is null until its
    # warm-up has refilled from post-gap bars, then equals the post-gap series computed alone
    # (TA bit for bit: recursive state restarts; rolling statistics up to their running sums'
    # last bits)
    np.testing.assert_array_equal(
        frame[names].iloc[:600].to_numpy(dtype=float), before[names].to_numpy(dtype=float)
    )
    post = frame.iloc[600:].reset_index(drop=True)
    for feature in CANDLE_FEATURES:
        values = post[feature.name].to_numpy(dtype=float)
        alone = after[feature.name].to_numpy(dtype=float)
        assert np.isnan(values[: feature.warmup]).all(), feature.name
        assert not np.isnan(values[feature.warmup :]).any(), feature.name
        if feature.kind is Kind.TA:
            np.testing.assert_array_equal(values, alone, err_msg=feature.name)
        else:
            np.testing.assert_allclose(values, alone, rtol=1e-9, atol=1e-12, err_msg=feature.name)


def test_short_runs_between_gaps_null_every_lookback_that_reaches_a_gap(
    sample_market: SampleMarket,
) -> None:
    # Arrange: holes leave runs of 1, 10, 11 and 40 bars between longer stretches
    candles = sample_market.candles["ETH/USDT"].iloc[:1500].reset_index(drop=True)
    lengths = [700, 1, 10, 11, 40]
    starts = np.cumsum([0, *(n + 3 for n in lengths)])  # 3 missing bars after each run
    keep = [np.arange(a, a + n) for a, n in zip(starts[:-1], lengths, strict=True)]
    keep.append(np.arange(starts[-1], len(candles)))
    holed = candles.iloc[np.concatenate(keep)].reset_index(drop=True)
    since_gap = bars_since_gap(holed["event_ts"], HOUR)
    runs = np.diff(np.r_[np.flatnonzero(since_gap == 0), len(holed)])
    assert runs.tolist() == [*lengths, len(candles) - starts[-1]]

    # Act
    frame = compute_features(holed, "1h", drop_warmup=False)

    # Assert: null exactly where fewer than ``warmup`` contiguous bars precede the bar
    for feature in CANDLE_FEATURES:
        missing = np.isnan(frame[feature.name].to_numpy(dtype=float))
        np.testing.assert_array_equal(missing, since_gap < feature.warmup, err_msg=feature.name)


def test_a_gap_does_not_null_alternative_data(sample_market: SampleMarket) -> None:
    # Arrange: alternative data joins on its own time, not on the candles' contiguity
    candles = sample_market.candles["BTC/USDT"].iloc[:1500].reset_index(drop=True)
    alt = synthetic_alt(candles)
    holed = without_bars(candles, 600, 34)

    # Act
    frame = compute_features(holed, "1h", alt, drop_warmup=False)
    whole = compute_features(candles, "1h", alt, drop_warmup=False)

    # Assert: at every bar present in both, the alternative features agree
    kept = whole["event_ts"].isin(holed["event_ts"]).to_numpy()
    pd.testing.assert_frame_equal(
        frame[list(ALT_FEATURES)],
        whole.loc[kept, list(ALT_FEATURES)].reset_index(drop=True),
        check_exact=True,
    )


def test_a_series_without_gaps_is_computed_whole(sample_market: SampleMarket) -> None:
    # Arrange: contiguous bars: every candle feature is the indicator over the whole series
    candles = sample_market.candles["ETH/USDT"].iloc[:1500].reset_index(drop=True)
    close = candles["close"].to_numpy(dtype=float)
    log_close = np.log(close)

    # Act
    frame = compute_features(candles, "1h", drop_warmup=False)

    # Assert
    np.testing.assert_array_equal(frame["rsi_14"].to_numpy(), ta.rsi(close, 14))
    np.testing.assert_array_equal(frame["log_return_1"].to_numpy()[1:], np.diff(log_close))
    np.testing.assert_array_equal(
        frame["log_return_168"].to_numpy()[168:], log_close[168:] - log_close[:-168]
    )
    assert frame[[f.name for f in CANDLE_FEATURES]].iloc[max_warmup() :].notna().all().all()


def test_too_short_history_names_the_symbol(sample_market: SampleMarket) -> None:
    short = sample_market.candles["ETH/USDT"].iloc[:100]
    with pytest.raises(DataValidationError, match="ETH/USDT 1h: 100 bars"):
        compute_features(short, "1h")


def test_perp_symbol() -> None:
    assert perp_symbol("BTC/USDT") == "BTC/USDT:USDT"
    assert perp_symbol("ETH/USDT:USDT") == "ETH/USDT:USDT"
