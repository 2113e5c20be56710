"""Every feature, declared once: name, kind (= Feast feature view), window, warm-up, availability.

The computation (`features.compute`), the Feast declarations' test, and the generated docs
(`docs/features.md`) all read this table, so a feature cannot exist in one and be missing in
another. Windows and warm-ups count bars of the series' timeframe. Gaps are not filled: a candle
feature whose window would reach across missing bars is null, so after a gap each one is null
for its warm-up (``features.compute``), and a window always spans ``window`` bars of wall-clock
time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sextant.contracts import DECISION_FEATURES, DECISION_SERVICE
from sextant.contracts import FEATURE_SERVICES as SERVICE_OF
from sextant.errors import ConfigError

__all__ = [
    "ALT_FEATURES",
    "FEATURES",
    "FEATURE_SERVICES",
    "FEATURE_TTL",
    "FEATURE_VIEWS",
    "GARCH_RETURN",
    "GARCH_WINDOW",
    "LSTM_WINDOW",
    "ROW_GROUP_ROWS",
    "SERVICE_VECTOR_VIEWS",
    "SERVICE_WINDOWS",
    "VECTOR_FIELD",
    "VECTOR_ROW_GROUP_ROWS",
    "FeatureDef",
    "Kind",
    "VectorLayout",
    "by_name",
    "max_warmup",
    "service_features",
    "vector_layout",
]

# Feature tables are sorted by (available_at, symbol) (time-major) and written in row groups
# this small, whose min/max statistics of ``available_at`` let a reader of recent rows (the
# monitor's drift window, rewritten tables read again each bar) decode only the last groups:
# on the monitor bench's 4-symbol tables, one group of three instead of all (a symbol-major
# order put every symbol's newest rows in every group)
ROW_GROUP_ROWS = 8_192
# vector tables (sorted by symbol, then available_at) hold wide rows (a service's whole vector,
# or a window of it): an explanation decodes one row group to read one decision's vector, so
# their groups are smaller (~10 % more bytes than 8,192-row groups)
VECTOR_ROW_GROUP_ROWS = 1_024


class Kind(StrEnum):
    """Feature families; each is one Feast feature view."""

    TA = "ta"
    STAT = "stat"
    ALT = "alt"


@dataclass(frozen=True, slots=True)
class FeatureDef:
    """One feature and the rule that says when its value is known."""

    name: str
    kind: Kind
    window: (
        int  # bars (or records, for alternative data) the value looks back over, current included
    )
    warmup: (
        int  # leading bars of a series without a value (0 for alternative data: missing is null)
    )
    available: str  # when the value at a bar is known
    description: str


BAR_CLOSE = "at the close of the bar (open + timeframe)"
FUNDING = "latest settlement with settlement time <= bar close, at most 24 h old; else null"
FNG = "latest daily value with publication (00:00 UTC + lag) <= bar close, at most 48 h old; else null"
NEWS = (
    "headlines with available_at in (bar close - 24 h, bar close]; "
    "null before the first headline known at the bar close"
)


def _ta(name: str, window: int, warmup: int, description: str) -> FeatureDef:
    return FeatureDef(name, Kind.TA, window, warmup, BAR_CLOSE, description)


def _stat(name: str, window: int, warmup: int, description: str) -> FeatureDef:
    return FeatureDef(name, Kind.STAT, window, warmup, BAR_CLOSE, description)


def _alt(name: str, window: int, available: str, description: str) -> FeatureDef:
    return FeatureDef(name, Kind.ALT, window, 0, available, description)


# Warm-ups equal the TA-Lib lookback of the indicator behind each feature (sextant.ta.warmup),
# checked by tests/features/test_definitions.py against the computed frames.
FEATURES: tuple[FeatureDef, ...] = (
    # --- technical analysis (scale-free, so BTC and ETH share a model) -------------------------
    _ta("rsi_14", 15, 14, "RSI (Wilder), 14 bars"),
    _ta("macd_pct", 34, 33, "MACD(12, 26) line / close"),
    _ta("macd_signal_pct", 34, 33, "MACD signal line (9) / close"),
    _ta("macd_hist_pct", 34, 33, "MACD histogram / close"),
    _ta("bb_percent_b_20", 20, 19, "Bollinger %B (20, 2σ): where close sits in the band"),
    _ta("bb_bandwidth_20", 20, 19, "Bollinger bandwidth (20, 2σ): (upper - lower) / middle"),
    _ta("natr_14", 15, 14, "normalized ATR (Wilder), 14 bars, percent of close"),
    _ta("adx_14", 28, 27, "ADX, 14 bars: trend strength"),
    _ta("plus_di_14", 15, 14, "+DI, 14 bars"),
    _ta("minus_di_14", 15, 14, "-DI, 14 bars"),
    _ta("stoch_k_14", 18, 17, "slow stochastic %K (14, 3, 3)"),
    _ta("stoch_d_14", 18, 17, "slow stochastic %D (14, 3, 3)"),
    _ta("stochrsi_k_14", 21, 20, "stochastic RSI %K (14, 5, 3)"),
    _ta("cci_20", 20, 19, "commodity channel index, 20 bars"),
    _ta("willr_14", 14, 13, "Williams %R, 14 bars"),
    _ta("roc_10", 11, 10, "rate of change over 10 bars, percent"),
    _ta("mfi_14", 15, 14, "money flow index, 14 bars"),
    _ta("ema_cross_12_26", 26, 25, "EMA(12) / EMA(26) - 1: trend direction"),
    _ta("close_to_sma_50", 50, 49, "close / SMA(50) - 1"),
    _ta("close_to_sma_200", 200, 199, "close / SMA(200) - 1"),
    _ta("close_to_vwap_24", 24, 23, "close / rolling VWAP(24) - 1"),
    _ta("keltner_pos_20", 21, 20, "(close - Keltner middle) / (upper - lower), EMA 20, 2 ATR"),
    _ta(
        "donchian_pos_20",
        20,
        19,
        "(close - lower) / (upper - lower) of the 20-bar Donchian channel",
    ),
    _ta(
        "donchian_breakout_20",
        21,
        20,
        "+1 close above the previous 20-bar high, -1 below the low, else 0",
    ),
    _ta("parkinson_vol_24", 24, 23, "Parkinson volatility per bar, 24 bars"),
    _ta("garman_klass_vol_24", 24, 23, "Garman-Klass volatility per bar, 24 bars"),
    # --- statistics -------------------------------------------------------------------------------
    _stat("log_return_1", 2, 1, "log(close / previous close)"),
    _stat("log_return_4", 5, 4, "log return over 4 bars"),
    _stat("log_return_24", 25, 24, "log return over 24 bars"),
    _stat("log_return_168", 169, 168, "log return over 168 bars"),
    _stat("realized_vol_24h", 25, 24, "std of 1-bar log returns over 24 bars"),
    _stat("realized_vol_7d", 169, 168, "std of 1-bar log returns over 168 bars"),
    _stat("close_z_24", 24, 23, "z-score of close within its last 24 bars"),
    _stat("return_z_168", 169, 168, "z-score of the 1-bar log return against its last 168"),
    _stat("volume_z_24", 24, 23, "z-score of log(1 + volume) within its last 24 bars"),
    _stat("range_pct", 1, 0, "(high - low) / close"),
    _stat("body_pct", 1, 0, "(close - open) / open"),
    _stat("gap_pct", 2, 1, "open / previous close - 1"),
    _stat("return_autocorr_48", 50, 49, "lag-1 autocorrelation of 1-bar log returns over 48 bars"),
    _stat("hour_sin", 1, 0, "sin of the hour of day of the bar close (UTC)"),
    _stat("hour_cos", 1, 0, "cos of the hour of day of the bar close (UTC)"),
    _stat("dow_sin", 1, 0, "sin of the day of week of the bar close (UTC)"),
    _stat("dow_cos", 1, 0, "cos of the day of week of the bar close (UTC)"),
    # --- alternative data (missing stays null) ----------------------------------------------------
    _alt("funding_rate", 1, FUNDING, "latest perpetual funding rate (fraction per interval)"),
    _alt("funding_rate_mean_3", 3, FUNDING, "mean of the last 3 funding rates"),
    _alt(
        "funding_rate_z_90",
        90,
        FUNDING,
        "z-score of the latest funding rate against the last 90 (~30 days)",
    ),
    _alt("fng_value", 1, FNG, "Fear & Greed index, 0-100"),
    _alt("fng_change_7d", 8, FNG, "Fear & Greed now minus 7 days earlier"),
    _alt("news_count_24h", 1, NEWS, "headlines in the last 24 h"),
    _alt(
        "news_sentiment_24h",
        1,
        NEWS,
        "mean VADER sentiment of the last 24 h headlines (null if none)",
    ),
)

ALT_FEATURES = tuple(f.name for f in FEATURES if f.kind is Kind.ALT)

# Feast feature view per kind
FEATURE_VIEWS: dict[Kind, str] = {
    Kind.TA: "ta_features",
    Kind.STAT: "stat_features",
    Kind.ALT: "alt_features",
}

# The return series GARCH is fitted on and serving recomputes its variance from
GARCH_RETURN = "log_return_1"

# Feature services, versioned per model family: the ordered feature list a model is trained on.
FEATURE_SERVICES: dict[str, tuple[str, ...]] = {
    SERVICE_OF["xgb"]: tuple(f.name for f in FEATURES),
    SERVICE_OF["lstm"]: (
        "log_return_1",
        "log_return_4",
        "log_return_24",
        "realized_vol_24h",
        "realized_vol_7d",
        "volume_z_24",
        "range_pct",
        "rsi_14",
        "macd_hist_pct",
        "bb_percent_b_20",
        "natr_14",
        "adx_14",
        "ema_cross_12_26",
        "close_to_vwap_24",
        "hour_sin",
        "hour_cos",
        "funding_rate",
        "fng_value",
    ),
    # GARCH is fitted on the return series alone (`models.data.symbol_returns`)
    SERVICE_OF["garch"]: (GARCH_RETURN,),
    # The decision's TA signal: its rule inputs in the order its kernel reads them
    DECISION_SERVICE: DECISION_FEATURES,
}

# The online form of each service: one view per service whose single feature, VECTOR_FIELD, packs
# the service's features as of each bar close (`features.vectors`). Feast's online read costs per
# feature and per view; one packed value is one sqlite row to read. A vector holds the service's
# last `SERVICE_WINDOWS[service]` rows (`VectorLayout`), so one read per symbol gives a sequence
# model its whole input and lets serving advance GARCH's variance to the latest bar.
VECTOR_FIELD = "vector"
SERVICE_VECTOR_VIEWS: dict[str, str] = {s: f"{s}_vector" for s in FEATURE_SERVICES}

# The LSTM reads its last `seq_len` rows (`models.lstm.LstmConfig`, 48 by default): the window
# holds that many; a model with a shorter `seq_len` reads the window's tail.
LSTM_WINDOW = 48
# GARCH: serving recomputes the conditional variance from the last GARCH_WINDOW returns with the
# registered parameters (`features.online.garch_variance`). The recursion forgets its start as
# beta**n over n returns: fits on hourly BTC/ETH 2023 give beta 0.63-0.84, and beta <= 0.95 gives
# beta**336 < 3.3e-8, far below the parity tolerance (`features.online.GARCH_VARIANCE_TOLERANCE`).
GARCH_WINDOW = 336  # two weeks of hourly bars
SERVICE_WINDOWS: dict[str, int] = {
    SERVICE_OF["xgb"]: 1,
    SERVICE_OF["lstm"]: LSTM_WINDOW,
    SERVICE_OF["garch"]: GARCH_WINDOW,
    DECISION_SERVICE: 1,
}


@dataclass(frozen=True, slots=True)
class VectorLayout:
    """What one online vector holds: the last ``window`` bar rows of ``features``, row-major.

    Rows run oldest first, so the vector's own bar is the last row: value ``k * len(features) + j``
    is feature ``j`` in the row ``window - 1 - k`` rows before it. Rows are the symbol's bar
    closes, so across a candle gap a window spans more wall-clock time; rows before the symbol's
    first bar are NaN. Each row is the point-in-time row of its bar close: the training frame's.
    """

    features: tuple[str, ...]
    window: int

    @property
    def size(self) -> int:
        """Values in one vector."""
        return self.window * len(self.features)


# How far back a point-in-time join reaches from an entity time (Feast view TTL). Two days is the
# longest staleness any feature's own rule allows (Fear & Greed: at most 48 h old); the Feast
# declarations declare the same TTL (a test holds them equal).
FEATURE_TTL = timedelta(days=2)


def by_name() -> dict[str, FeatureDef]:
    """Features keyed by name."""
    return {f.name: f for f in FEATURES}


def service_features(service: str) -> tuple[str, ...]:
    """Ordered feature names of a feature service; ConfigError names the known services."""
    try:
        return FEATURE_SERVICES[service]
    except KeyError:
        known = ", ".join(sorted(FEATURE_SERVICES))
        raise ConfigError(f"unknown feature service {service!r}; known: {known}") from None


def vector_layout(service: str) -> VectorLayout:
    """The online vector layout of a feature service; ConfigError names the known services."""
    return VectorLayout(service_features(service), SERVICE_WINDOWS[service])


def max_warmup() -> int:
    """Bars a series needs before every feature has a value."""
    return max(f.warmup for f in FEATURES)
