"""Feature computation for one symbol's candle series plus its alternative data.

Every value at a bar uses only what was known at that bar's close (``available_at``): candle
features look back over bars up to and including this one, alternative data is joined
backwards on its own ``available_at``. Missing alternative data stays null.

A gap in the candles (bars missing between two stored ones) splits the series into contiguous
runs, and candle features are computed on each run as if it were its own series: a bar's
value never looks back across a gap (a 1-bar return across a 34-hour hole is not a 1-bar
return), so it is null until the feature's warm-up has refilled from bars after the gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from itertools import pairwise

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.core.window.rolling import Rolling

from features.definitions import FEATURES, Kind, max_warmup
from sextant import ta
from sextant.errors import DataValidationError
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["AltData", "compute_features", "perp_symbol"]

Array = npt.NDArray[np.float64]

FUNDING_MAX_AGE = pd.Timedelta(hours=24)
FNG_MAX_AGE = pd.Timedelta(hours=48)
NEWS_WINDOW = pd.Timedelta(hours=24)
PRICE_COLUMNS = ("open", "high", "low", "close", "volume")
_WARMUP = {f.name: f.warmup for f in FEATURES}
_TA_NAMES = tuple(f.name for f in FEATURES if f.kind is Kind.TA)
_MIN_TA_WARMUP = min(f.warmup for f in FEATURES if f.kind is Kind.TA)


@dataclass(frozen=True, slots=True)
class AltData:
    """Alternative data for one symbol, each frame with ``event_ts`` and ``available_at`` (UTC).

    ``funding``: funding_rate; ``fear_greed``: value; ``news``: sentiment. Empty frames mean
    "no data", and the features stay null.
    """

    funding: pd.DataFrame
    fear_greed: pd.DataFrame
    news: pd.DataFrame

    @staticmethod
    def empty() -> AltData:
        """No alternative data at all."""
        stamp = pd.Series([], dtype="datetime64[ns, UTC]")
        return AltData(
            funding=pd.DataFrame(
                {
                    "event_ts": stamp,
                    "available_at": stamp,
                    "funding_rate": pd.Series([], dtype=float),
                }
            ),
            fear_greed=pd.DataFrame(
                {"event_ts": stamp, "available_at": stamp, "value": pd.Series([], dtype=float)}
            ),
            news=pd.DataFrame(
                {"event_ts": stamp, "available_at": stamp, "sentiment": pd.Series([], dtype=float)}
            ),
        )


def perp_symbol(symbol: str) -> str:
    """The linear perpetual whose funding applies to a spot symbol (BTC/USDT → BTC/USDT:USDT)."""
    if ":" in symbol:
        return symbol
    quote = symbol.split("/")[-1]
    return f"{symbol}:{quote}"


def compute_features(
    candles: pd.DataFrame, timeframe: str, alt: AltData | None = None, *, drop_warmup: bool = True
) -> pd.DataFrame:
    """All registry features for one symbol's candles (sorted by event_ts), rows after the warm-up.

    Returns ``symbol, event_ts, available_at`` and the features in registry order. Raises
    DataValidationError naming the symbol when the series is shorter than the longest warm-up.
    ``drop_warmup=False`` keeps the leading rows (with their nulls), for inspection and tests.
    """
    symbol = str(candles["symbol"].iloc[0]) if len(candles) else "?"
    need = max_warmup() + 1
    if len(candles) < need:
        raise DataValidationError(
            f"{symbol} {timeframe}: {len(candles)} bars, features need at least {need} "
            f"(the longest warm-up is {need - 1} bars); ingest more history",
            field="candles",
        )
    if not candles["event_ts"].is_monotonic_increasing:
        raise DataValidationError(
            f"{symbol} {timeframe}: candles are not sorted by event_ts", field="event_ts"
        )
    step = timeframe_to_timedelta(timeframe)
    event_ts = candles["event_ts"].reset_index(drop=True)
    available_at = event_ts + step
    prices = [candles[k].to_numpy(dtype=np.float64) for k in PRICE_COLUMNS]

    columns = _candle_features(prices, available_at, _bars_since_gap(event_ts, step))
    columns.update(_alt_features(available_at, alt or AltData.empty()))

    ordered = {f.name: columns[f.name] for f in FEATURES}
    frame = pd.DataFrame(
        {"symbol": symbol, "event_ts": event_ts, "available_at": available_at, **ordered}
    )
    return frame.iloc[max_warmup() :].reset_index(drop=True) if drop_warmup else frame


def _bars_since_gap(event_ts: pd.Series, step: timedelta) -> npt.NDArray[np.int64]:
    """Per bar, how many bars before it are contiguous (exactly one ``step`` apart, no gap).

    0 at the first bar and at the first bar after a gap; any spacing other than one step
    (a gap, or bars closer than a step) breaks the run.
    """
    stamps = event_ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    index = np.arange(len(stamps), dtype=np.int64)
    breaks = np.r_[True, np.diff(stamps) != pd.Timedelta(step).value]
    run_start = np.maximum.accumulate(np.where(breaks, index, 0))
    return index - run_start


def _candle_features(
    prices: list[Array], available_at: pd.Series, since_gap: npt.NDArray[np.int64]
) -> dict[str, Array]:
    """TA and statistical features, null wherever a feature's lookback would reach across a gap.

    A feature's lookback is its registry warm-up plus the bar itself (``window`` = ``warmup`` +
    1 for every candle feature), so at a bar with fewer than ``warmup`` contiguous bars before
    it the value is null. Two ways get there, chosen by how an indicator remembers:

    - TA indicators are computed on each contiguous run on its own. The recursive ones (EMA,
      RSI, ATR, ADX, MACD, stochastic RSI, Keltner) keep state from every bar they have seen:
      nulling only their warm-up after a gap would leave pre-gap memory in the values after it
      (EMA(26) still weighs pre-gap bars by about 14 % at the end of its warm-up). Per run, their
      value after a gap is exactly that of the post-gap series alone; each indicator's own
      leading nulls are its warm-up (tests hold them to the registry).
    - Statistical features are plain rolling windows, shifts and per-bar values: computed over
      the whole series, then nulled where the bars since the gap are fewer than the warm-up.
      What remains looks only at post-gap bars (pandas' running sums may differ from a
      post-gap-only computation in the last bits, nothing more), and one pass over the series
      costs the same however many gaps it has.

    Runs too short for any TA value are skipped, so a series with many tiny runs costs little.
    """
    runs = _runs(since_gap)
    if len(runs) == 1:
        o, h, lo, c, v = prices
        return {**_ta_features(o, h, lo, c, v), **_stat_features(o, h, lo, c, v, available_at)}
    columns = {name: np.full(len(since_gap), np.nan) for name in _TA_NAMES}
    for run in runs:
        if run.stop - run.start <= _MIN_TA_WARMUP:
            continue
        o, h, lo, c, v = (values[run] for values in prices)
        for name, values in _ta_features(o, h, lo, c, v).items():
            columns[name][run] = values
    o, h, lo, c, v = prices
    for name, values in _stat_features(o, h, lo, c, v, available_at).items():
        columns[name] = np.where(since_gap < _WARMUP[name], np.nan, values)
    return columns


def _runs(since_gap: npt.NDArray[np.int64]) -> list[slice]:
    """Row slices of the contiguous runs."""
    bounds = np.r_[np.flatnonzero(since_gap == 0), len(since_gap)]
    return [slice(int(a), int(b)) for a, b in pairwise(bounds)]


def _ratio(numerator: Array, denominator: Array) -> Array:
    with np.errstate(divide="ignore", invalid="ignore"):
        out = numerator / denominator
    out[~np.isfinite(out)] = np.nan
    return out


def _ta_features(o: Array, h: Array, lo: Array, c: Array, v: Array) -> dict[str, Array]:
    macd = ta.macd(c, 12, 26, 9)
    bands = ta.bbands(c, 20, 2.0)
    adx = ta.adx(h, lo, c, 14)
    stoch = ta.stoch(h, lo, c, 14, 3, 3)
    stochrsi = ta.stochrsi(c, 14, 5, 3)
    keltner = ta.keltner(h, lo, c, 20, 2.0)
    donchian = ta.donchian(h, lo, 20)
    prev_upper = np.r_[np.nan, donchian.upper[:-1]]
    prev_lower = np.r_[np.nan, donchian.lower[:-1]]
    breakout = np.where(c > prev_upper, 1.0, np.where(c < prev_lower, -1.0, 0.0))
    breakout[np.isnan(prev_upper)] = np.nan
    return {
        "rsi_14": ta.rsi(c, 14),
        "macd_pct": _ratio(macd.macd, c),
        "macd_signal_pct": _ratio(macd.signal, c),
        "macd_hist_pct": _ratio(macd.hist, c),
        "bb_percent_b_20": bands.percent_b,
        "bb_bandwidth_20": bands.bandwidth,
        "natr_14": ta.natr(h, lo, c, 14),
        "adx_14": adx.adx,
        "plus_di_14": adx.plus_di,
        "minus_di_14": adx.minus_di,
        "stoch_k_14": stoch.k,
        "stoch_d_14": stoch.d,
        "stochrsi_k_14": stochrsi.k,
        "cci_20": ta.cci(h, lo, c, 20),
        "willr_14": ta.willr(h, lo, c, 14),
        "roc_10": ta.roc(c, 10),
        "mfi_14": ta.mfi(h, lo, c, v, 14),
        "ema_cross_12_26": _ratio(ta.ema(c, 12), ta.ema(c, 26)) - 1.0,
        "close_to_sma_50": _ratio(c, ta.sma(c, 50)) - 1.0,
        "close_to_sma_200": _ratio(c, ta.sma(c, 200)) - 1.0,
        "close_to_vwap_24": _ratio(c, ta.rolling_vwap(h, lo, c, v, 24)) - 1.0,
        "keltner_pos_20": _ratio(c - keltner.middle, keltner.upper - keltner.lower),
        "donchian_pos_20": _ratio(c - donchian.lower, donchian.upper - donchian.lower),
        "donchian_breakout_20": breakout,
        "parkinson_vol_24": ta.parkinson_vol(h, lo, 24),
        "garman_klass_vol_24": ta.garman_klass_vol(o, h, lo, c, 24),
    }


def _rolling(values: Array, window: int) -> Rolling[pd.Series]:
    return pd.Series(values).rolling(window, min_periods=window)


def _zscore(values: Array, window: int) -> Array:
    roll = _rolling(values, window)
    return _ratio(values - roll.mean().to_numpy(), roll.std(ddof=0).to_numpy())


def _shift(values: Array, bars: int) -> Array:
    out = np.full_like(values, np.nan)
    out[bars:] = values[:-bars]
    return out


def _stat_features(
    o: Array, h: Array, lo: Array, c: Array, v: Array, available_at: pd.Series
) -> dict[str, Array]:
    log_close = np.log(c)
    r1 = log_close - _shift(log_close, 1)
    prev_r1 = _shift(r1, 1)
    autocorr = pd.Series(r1).rolling(48, min_periods=48).corr(pd.Series(prev_r1)).to_numpy()
    hours = available_at.dt.hour.to_numpy() + available_at.dt.minute.to_numpy() / 60.0
    dow = available_at.dt.dayofweek.to_numpy() + hours / 24.0
    return_std = _rolling(r1, 168).std(ddof=0).to_numpy()
    return_mean = _rolling(r1, 168).mean().to_numpy()
    return {
        "log_return_1": r1,
        "log_return_4": log_close - _shift(log_close, 4),
        "log_return_24": log_close - _shift(log_close, 24),
        "log_return_168": log_close - _shift(log_close, 168),
        "realized_vol_24h": _rolling(r1, 24).std(ddof=1).to_numpy(),
        "realized_vol_7d": _rolling(r1, 168).std(ddof=1).to_numpy(),
        "close_z_24": _zscore(c, 24),
        "return_z_168": _ratio(r1 - return_mean, return_std),
        "volume_z_24": _zscore(np.log1p(v), 24),
        "range_pct": _ratio(h - lo, c),
        "body_pct": _ratio(c - o, o),
        "gap_pct": _ratio(o, _shift(c, 1)) - 1.0,
        "return_autocorr_48": autocorr,
        "hour_sin": np.sin(2 * np.pi * hours / 24.0),
        "hour_cos": np.cos(2 * np.pi * hours / 24.0),
        "dow_sin": np.sin(2 * np.pi * dow / 7.0),
        "dow_cos": np.cos(2 * np.pi * dow / 7.0),
    }


def _asof(at: pd.Series, known: pd.DataFrame, column: str, max_age: pd.Timedelta) -> Array:
    """Latest ``column`` whose available_at <= each ``at``, null when older than ``max_age``."""
    if known.empty:
        return np.full(len(at), np.nan)
    ordered = known.sort_values("available_at", kind="stable")
    right = pd.DataFrame(
        {
            "known_at": ordered["available_at"].to_numpy(),
            "value": ordered[column].to_numpy(dtype=np.float64),
        }
    )
    left = pd.DataFrame({"at": at.to_numpy()})
    joined = pd.merge_asof(left, right, left_on="at", right_on="known_at", direction="backward")
    stale = (left["at"] - joined["known_at"]) > max_age
    values = joined["value"].to_numpy(dtype=np.float64)
    values[stale.to_numpy() | joined["known_at"].isna().to_numpy()] = np.nan
    return values


def _alt_features(available_at: pd.Series, alt: AltData) -> dict[str, Array]:
    funding = alt.funding.sort_values("available_at", kind="stable").reset_index(drop=True)
    if len(funding):
        rates = funding["funding_rate"].astype(float)
        funding = funding.assign(
            mean_3=rates.rolling(3, min_periods=3).mean(),
            z_90=(rates - rates.rolling(90, min_periods=90).mean())
            / rates.rolling(90, min_periods=90).std(ddof=0),
        )
    fng = alt.fear_greed.sort_values("available_at", kind="stable").reset_index(drop=True)
    fng_now = _asof(available_at, fng, "value", FNG_MAX_AGE)
    fng_week_ago = _asof(available_at - pd.Timedelta(days=7), fng, "value", FNG_MAX_AGE)
    count, sentiment = _news_window(available_at, alt.news)
    return {
        "funding_rate": _asof(available_at, funding, "funding_rate", FUNDING_MAX_AGE),
        "funding_rate_mean_3": _asof(available_at, funding, "mean_3", FUNDING_MAX_AGE)
        if len(funding)
        else _nan(available_at),
        "funding_rate_z_90": _asof(available_at, funding, "z_90", FUNDING_MAX_AGE)
        if len(funding)
        else _nan(available_at),
        "fng_value": fng_now,
        "fng_change_7d": fng_now - fng_week_ago,
        "news_count_24h": count,
        "news_sentiment_24h": sentiment,
    }


def _nan(at: pd.Series) -> Array:
    return np.full(len(at), np.nan)


def _news_window(at: pd.Series, news: pd.DataFrame) -> tuple[Array, Array]:
    """Count and mean sentiment of headlines known in (t - 24 h, t]; null before the first headline.

    Coverage is decided only from what was known at t: a news feed is running at t once its first
    headline is known (available_at <= t), and from then on a 24 h window without headlines
    counts 0 (sentiment null). The archive's end must not decide it: whether t is covered would
    then depend on headlines published after t, and appending them would change old rows.
    """
    if news.empty:
        return _nan(at), _nan(at)
    stamps = news["available_at"].to_numpy(dtype="datetime64[ns]").astype(np.int64)
    order = np.argsort(stamps, kind="stable")
    known = stamps[order]
    scores = news["sentiment"].to_numpy(dtype=np.float64)[order]
    cumulative = np.r_[0.0, np.cumsum(np.nan_to_num(scores))]
    t = at.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    hi = np.searchsorted(known, t, side="right")
    lo = np.searchsorted(known, t - NEWS_WINDOW.value, side="right")
    count = (hi - lo).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (cumulative[hi] - cumulative[lo]) / count
    mean[count == 0] = np.nan
    covered = t >= known[0]
    count[~covered] = np.nan
    mean[~covered] = np.nan
    return count, mean
