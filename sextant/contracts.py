"""Names shared by training, the feature store and the online path, each defined once.

Model families, their registered MLflow models and aliases, their feature services (and the
decision's own), and the model-version tag keys that a consumer of a registered model reads.
Names only: importing this module costs nothing, so `serving/` (which may not import `models/`)
and `features/` use the same strings that `models/` writes.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "DECISION_FEATURES",
    "DECISION_SERVICE",
    "DIRECTION_FAMILIES",
    "FAMILIES",
    "FEATURE_SERVICES",
    "ONLINE_SERVICES",
    "REGISTERED_MODELS",
    "VOLATILITY_FAMILIES",
    "ModelTag",
]

DIRECTION_FAMILIES: Final = ("xgb", "lstm")
VOLATILITY_FAMILIES: Final = ("garch",)
FAMILIES: Final = ("garch", "xgb", "lstm")

# registered model per family (MLflow registry)
REGISTERED_MODELS: Final = {"garch": "sextant-garch", "xgb": "sextant-xgb", "lstm": "sextant-lstm"}

# aliases: training registers a ``challenger``; only the promotion gate moves ``champion``
CHALLENGER: Final = "challenger"
CHAMPION: Final = "champion"

# the Feast feature service each family reads (one per family and version)
FEATURE_SERVICES: Final = {
    "xgb": "xgb_direction_v1",
    "lstm": "lstm_direction_v1",
    "garch": "garch_vol_v1",
}

# the Feast feature service of the decision's TA signal (its rule inputs, no model behind it)
DECISION_SERVICE: Final = "decision_v1"
# its features, in the order the decision kernels read them (`sextant.decision._kernels` keeps
# its own copy, FEATURES_USED, next to the kernels for numba's cache; a test holds them equal)
DECISION_FEATURES: Final = (
    "rsi_14",
    "macd_hist_pct",
    "bb_percent_b_20",
    "adx_14",
    "ema_cross_12_26",
    "donchian_breakout_20",
    "natr_14",
)

# every service the decision engine reads online: one Feast read per decision fetches them all
ONLINE_SERVICES: Final = (DECISION_SERVICE, *FEATURE_SERVICES.values())


class ModelTag:
    """Tag keys of a registered model version that its consumers read."""

    FEATURE_SERVICE: Final = "feature_service"
    FEATURES: Final = "features"  # JSON list: the ordered model input
    CALIBRATION: Final = "calibration"  # JSON: the calibrator inside the ONNX graph
    LABEL_HORIZON: Final = "label_horizon"  # bars
    SYMBOLS: Final = "symbols"  # GARCH: JSON list, the graph's symbol_index order
    BASELINE: Final = "baseline"  # JSON: the simple baseline's name and per-span figures
    SELECTION_METRICS: Final = "selection_metrics"
    REPORTED_METRICS: Final = "reported_metrics"
    FAMILY_CONFIG: Final = "family_config"
    CHAMPION_VERSION_AT_TRAIN: Final = "champion_version_at_train"
    CHAMPION_REPLAY_METRICS: Final = "champion_replay_metrics"
    # JSON list: the registered graph's first output on the logged input example, computed at
    # registration after parity passed; a serving process checks a loaded session against it
    PROBE_OUTPUT: Final = "probe_output"
    # artifact path, in the version's run, of its drift reference (`models.drift_reference`):
    # training rows' feature bins, reported-span output and calibration, read by the monitor
    DRIFT_REFERENCE: Final = "drift_reference"
    # XGBoost: artifact path, in the version's run, of the served booster in xgboost's own format
    # (`models.xgb.NATIVE_MODEL_FILE`), read for exact TreeSHAP; serving reads the ONNX graph
    NATIVE_MODEL: Final = "native_model"
