"""Feast declarations of sextant's features: one entity, a view per kind, services, service vectors.

Declarations only: nothing of the repo is imported here and nothing imports this file.
`features.feast_declarations` executes it in a fresh namespace and rewrites each source's path to
the active home (`<SEXTANT_HOME>/features/<file>`); the tables are written by `sextant features
build`. `tests/features/test_feast_declarations.py` checks every name and order below against
`features/definitions.py`, the single registry of features.
"""

from __future__ import annotations

from datetime import timedelta

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.types import Array, Float64

symbol = Entity(
    name="symbol",
    join_keys=["symbol"],
    value_type=ValueType.STRING,
    description="ccxt unified market symbol, e.g. BTC/USDT",
)

# A row is usable from its bar's close (`available_at`), not from the bar's open (`event_ts`):
# the point-in-time join and materialization both key on it, so no value is seen early.
# Paths are bare file names on purpose: the loader makes them absolute under the active home.
ta_source = FileSource(
    name="ta_features_source", path="ta_features.parquet", timestamp_field="available_at"
)
stat_source = FileSource(
    name="stat_features_source", path="stat_features.parquet", timestamp_field="available_at"
)
alt_source = FileSource(
    name="alt_features_source", path="alt_features.parquet", timestamp_field="available_at"
)

# TTL: how far back from an entity time the point-in-time join (and online freshness) may reach.
# Equal to `features.definitions.FEATURE_TTL` (a test holds them equal). Two days is the longest staleness any feature's own rule allows (Fear & Greed: at most 48 h
# old; funding 24 h; bar features are rewritten every bar), so the view never blanks a value its
# rule still accepts, while a symbol whose rows stopped (delisted, ingest broken) goes null after
# two days instead of serving a frozen value. It also spans one missed bar on a 1d timeframe.
FEATURE_TTL = timedelta(days=2)

TA_FEATURES = (
    "rsi_14",
    "macd_pct",
    "macd_signal_pct",
    "macd_hist_pct",
    "bb_percent_b_20",
    "bb_bandwidth_20",
    "natr_14",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "stoch_k_14",
    "stoch_d_14",
    "stochrsi_k_14",
    "cci_20",
    "willr_14",
    "roc_10",
    "mfi_14",
    "ema_cross_12_26",
    "close_to_sma_50",
    "close_to_sma_200",
    "close_to_vwap_24",
    "keltner_pos_20",
    "donchian_pos_20",
    "donchian_breakout_20",
    "parkinson_vol_24",
    "garman_klass_vol_24",
)
STAT_FEATURES = (
    "log_return_1",
    "log_return_4",
    "log_return_24",
    "log_return_168",
    "realized_vol_24h",
    "realized_vol_7d",
    "close_z_24",
    "return_z_168",
    "volume_z_24",
    "range_pct",
    "body_pct",
    "gap_pct",
    "return_autocorr_48",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
ALT_FEATURES = (
    "funding_rate",
    "funding_rate_mean_3",
    "funding_rate_z_90",
    "fng_value",
    "fng_change_7d",
    "news_count_24h",
    "news_sentiment_24h",
)

ta_features = FeatureView(
    name="ta_features",
    entities=[symbol],
    ttl=FEATURE_TTL,
    schema=[Field(name=name, dtype=Float64) for name in TA_FEATURES],
    online=True,
    source=ta_source,
    description="technical-analysis indicators, scale-free, known at the bar close",
)
stat_features = FeatureView(
    name="stat_features",
    entities=[symbol],
    ttl=FEATURE_TTL,
    schema=[Field(name=name, dtype=Float64) for name in STAT_FEATURES],
    online=True,
    source=stat_source,
    description="returns, volatility, z-scores and calendar terms, known at the bar close",
)
alt_features = FeatureView(
    name="alt_features",
    entities=[symbol],
    ttl=FEATURE_TTL,
    schema=[Field(name=name, dtype=Float64) for name in ALT_FEATURES],
    online=True,
    source=alt_source,
    description="funding, Fear & Greed and news; null where the source has no value",
)

# One projection per view, views in order of their first feature in the service's registry list.
# Feast returns a service's columns grouped by projection; the read helpers restore the registry
# order, which is the order a model was trained on.
xgb_direction_v1 = FeatureService(
    name="xgb_direction_v1",
    features=[ta_features, stat_features, alt_features],
    description="XGBoost direction model: every feature",
)
lstm_direction_v1 = FeatureService(
    name="lstm_direction_v1",
    features=[
        stat_features[
            [
                "log_return_1",
                "log_return_4",
                "log_return_24",
                "realized_vol_24h",
                "realized_vol_7d",
                "volume_z_24",
                "range_pct",
                "hour_sin",
                "hour_cos",
            ]
        ],
        ta_features[
            [
                "rsi_14",
                "macd_hist_pct",
                "bb_percent_b_20",
                "natr_14",
                "adx_14",
                "ema_cross_12_26",
                "close_to_vwap_24",
            ]
        ],
        alt_features[["funding_rate", "fng_value"]],
    ],
    description="LSTM direction model: returns, volatility, a few indicators, funding and sentiment",
)
garch_vol_v1 = FeatureService(
    name="garch_vol_v1",
    features=[stat_features[["log_return_1"]]],
    description="GARCH volatility model: the 1-bar log return it is fitted on",
)
# The decision's TA signal reads these, in its kernel's order (`sextant.decision.signals`)
decision_v1 = FeatureService(
    name="decision_v1",
    features=[
        ta_features[
            [
                "rsi_14",
                "macd_hist_pct",
                "bb_percent_b_20",
                "adx_14",
                "ema_cross_12_26",
                "donchian_breakout_20",
                "natr_14",
            ]
        ]
    ],
    description="decision engine's TA signal: the rule votes' indicators",
)


# The online form of each service: the last rows of its features (one row, or a model's input
# window: `features.definitions.SERVICE_WINDOWS`) packed, oldest row first and each row in the
# service's order, into one list value per bar close (`sextant features build` writes the tables,
# `features/vectors.py`). Feast's online read costs per feature and per view; reading one packed
# value is one sqlite row. Each view declares its own source (Feast registers a view's source
# with the view).
def _vector_view(service: FeatureService) -> FeatureView:
    name = f"{service.name}_vector"
    return FeatureView(
        name=name,
        entities=[symbol],
        ttl=FEATURE_TTL,
        schema=[Field(name="vector", dtype=Array(Float64))],
        online=True,
        source=FileSource(
            name=f"{name}_source", path=f"{name}.parquet", timestamp_field="available_at"
        ),
        description=f"the last rows of {service.name}'s features, packed, as of each bar close",
    )


xgb_direction_v1_vector = _vector_view(xgb_direction_v1)
lstm_direction_v1_vector = _vector_view(lstm_direction_v1)
garch_vol_v1_vector = _vector_view(garch_vol_v1)
decision_v1_vector = _vector_view(decision_v1)
