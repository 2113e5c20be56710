"""Per-feature XGBoost contributions of a decision: exact TreeSHAP on the served booster.

**Which model.** The decision record names the ``sextant-xgb`` version that served it
(``model_versions["xgb"]``). Training logs that version's booster in xgboost's own format beside
its ONNX graph (the run's artifact named by the version tag ``native_model``, e.g.
``xgb_booster.ubj``): the very trees serving runs as ONNX, with the covers (training hessian sums)
that path-dependent TreeSHAP weighs paths with, which the graph does not carry. It is downloaded
once per version and kept in ``Evidence.cache``. xgboost's ``Booster.predict(DMatrix(row,
missing=nan), pred_contribs=True)`` then gives one contribution per feature and the bias, in
log-odds of P(up) before calibration; they sum to the booster's margin (``output_margin=True``),
up to float32 rounding. A version registered before the booster was logged (no tag) has no
contributions: ``available: false`` with the reason, never an approximation.

**Which row.** The record keeps the TA features only; the model's vector is re-read from the
packed vector table the online store is materialized from: the symbol's row with the latest
``available_at`` at or before the decision's bar close (what was online then; no later row is
read). The margin goes through the sigmoid and the version's recorded calibrator (tag
``calibration``, the map inside the served graph) and is reported beside the recorded ``p_xgb``
(``check.matches``): equal within the parity bound training enforced between the served graph
and this booster (1e-5, plus the calibrator's steepest slope times 1e-5) when the row is the one
the decision was made on.

Results are deterministic and cached in the process (``Evidence.cache``); nothing is written.
"""

from __future__ import annotations

import functools
import json
import math
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, json_float, utc_text
from agents.tools.decisions import DecisionArgs
from models.calibration import Calibrator
from models.onnx_parity import DIRECTION_PARITY_TOLERANCE
from sextant.contracts import FEATURE_SERVICES, REGISTERED_MODELS, ModelTag
from sextant.errors import ModelUnavailableError

__all__ = [
    "DECISION_CONTRIBUTIONS",
    "ContributionArgs",
    "NativeBooster",
    "decision_contributions",
    "native_booster",
    "vector_at",
]

FloatArray = npt.NDArray[np.float64]
# the packed vector table of a service (features.definitions.SERVICE_VECTOR_VIEWS: "<service>_vector";
# agents may not import features, and the table's own metadata is checked against the model)
_VECTOR_TABLE = "{service}_vector.parquet"
_FEATURES_KEY = b"sextant.features"
DEFAULT_TOP = 10


class ContributionArgs(DecisionArgs):
    """One decision, and how many of the largest contributions to return."""

    model_config = ConfigDict(extra="forbid")

    top: int = Field(DEFAULT_TOP, ge=1, le=200, description="largest |contribution| first")


@dataclass(frozen=True)
class NativeBooster:
    """A registered ``sextant-xgb`` version's own booster, with what it needs to read a row."""

    version: str
    booster: Any  # xgboost.Booster
    features: tuple[str, ...]
    feature_service: str
    calibrator: Calibrator | None
    run_id: str
    artifact: str  # the booster's artifact path in the run (tag ``native_model``)

    @functools.cached_property
    def match_tolerance(self) -> float:
        """How far the recomputed P(up) may lie from the served graph's: training's parity bound.

        Raw graph and booster agree within ``DIRECTION_PARITY_TOLERANCE`` (float32 rounding),
        and the calibrator magnifies that by at most its steepest slope.
        """
        slope = 1.0 if self.calibrator is None else self.calibrator.max_slope
        return DIRECTION_PARITY_TOLERANCE * (1.0 + slope)


def native_booster(evidence: Evidence, version: str) -> NativeBooster:
    """The registered ``sextant-xgb`` ``version``'s logged booster (downloaded once per version).

    ``ModelUnavailableError`` naming the version when it is not registered, records no feature
    list, was registered without its native booster, or the artifact cannot be read.
    """
    import xgboost
    from mlflow.exceptions import MlflowException

    key = ("xgb_native_booster", version)
    cached = evidence.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    name = REGISTERED_MODELS["xgb"]
    label = f"{name} version {version}"
    try:
        registered = evidence.registry.get_model_version(name, version)
    except MlflowException as exc:  # an unknown version
        raise ModelUnavailableError(f"{label} is not in the registry: {exc}") from exc
    tags = dict(registered.tags or {})
    features = tuple(json.loads(tags.get(ModelTag.FEATURES, "[]")))
    if not features:
        raise ModelUnavailableError(f"{label} records no feature list ({ModelTag.FEATURES!r})")
    artifact = tags.get(ModelTag.NATIVE_MODEL)
    if not artifact:
        raise ModelUnavailableError(
            f"{label} was registered without its native booster (no {ModelTag.NATIVE_MODEL!r} "
            "tag: trained before training logged it), so its exact contributions cannot be "
            "computed; retrain to have them"
        )
    run_id = str(registered.run_id or "")
    if not run_id:
        raise ModelUnavailableError(f"{label} has no run to read its native booster from")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(evidence.registry.download_artifacts(run_id, artifact, tmp))
            raw = local.read_bytes()
        booster = xgboost.Booster()
        booster.load_model(bytearray(raw))
    except (MlflowException, OSError, xgboost.core.XGBoostError) as exc:
        raise ModelUnavailableError(
            f"{label}: cannot read its native booster {artifact!r} in run {run_id}: {exc}"
        ) from exc
    if booster.num_features() != len(features):
        raise ModelUnavailableError(
            f"{label}: its native booster reads {booster.num_features()} features, "
            f"the version's feature list has {len(features)}"
        )
    booster.set_param({"nthread": 1})  # one row: starting a thread pool costs more than the trees
    calibration = tags.get(ModelTag.CALIBRATION)
    model = NativeBooster(
        version=version,
        booster=booster,
        features=features,
        feature_service=tags.get(ModelTag.FEATURE_SERVICE, FEATURE_SERVICES["xgb"]),
        calibrator=None if not calibration else Calibrator.from_dict(json.loads(calibration)),
        run_id=run_id,
        artifact=artifact,
    )
    evidence.cache[key] = model
    return model


def _vector_path(evidence: Evidence, service: str, features: tuple[str, ...]) -> Path:
    path = evidence.settings.paths.features_dir / _VECTOR_TABLE.format(service=service)
    if not path.is_file():
        raise ModelUnavailableError(f"no packed vector table {path}: run `sextant features build`")
    packed = json.loads((pq.read_schema(path).metadata or {}).get(_FEATURES_KEY, b"[]"))
    if tuple(packed) != features:
        raise ModelUnavailableError(
            f"{path} packs other features than the model reads (rebuilt since training?): "
            f"not packed {[f for f in features if f not in packed]}"
        )
    return path


def vector_at(
    evidence: Evidence, service: str, features: tuple[str, ...], symbol: str, at: datetime
) -> tuple[datetime, FloatArray] | None:
    """The symbol's packed vector with the latest ``available_at`` at or before ``at`` (what
    was online then), or None when there is none.

    The table is sorted by (symbol, available_at) and written in small row groups: the keys
    of the row groups holding the symbol are read once per version of the file (its size and
    modification time, kept in ``Evidence.cache``), a binary search finds the row, and only its
    row group's vectors are decoded.
    """
    path = _vector_path(evidence, service, features)
    stat = path.stat()
    key = ("vector-keys", str(path), str(stat.st_mtime_ns), str(stat.st_size), symbol)
    cached = evidence.cache.get(key)
    if cached is None:
        cached = evidence.cache[key] = _symbol_rows(path, symbol)
    times, groups, offsets = cached
    position = int(times.searchsorted(pd.Timestamp(at), side="right")) - 1
    if position < 0:
        return None
    column = pq.ParquetFile(path).read_row_group(int(groups[position]), columns=["vector"])
    vector = np.asarray(column.column("vector")[int(offsets[position])].as_py(), dtype=np.float64)
    return times[position].to_pydatetime(), vector.reshape(len(features))


def _symbol_rows(
    path: Path, symbol: str
) -> tuple[pd.DatetimeIndex, npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The symbol's rows of a vector table: their times (ascending), row groups and offsets."""
    file = pq.ParquetFile(path)
    index = file.schema_arrow.get_field_index("symbol")
    times: list[pd.Series] = []
    groups: list[npt.NDArray[np.int64]] = []
    offsets: list[npt.NDArray[np.int64]] = []
    for group in range(file.metadata.num_row_groups):
        stats = file.metadata.row_group(group).column(index).statistics
        if stats is not None and stats.has_min_max and not stats.min <= symbol <= stats.max:
            continue  # the row group's symbols cannot include this one
        keys = file.read_row_group(group, columns=["symbol", "available_at"])
        mine = np.flatnonzero(np.asarray(keys.column("symbol").to_pylist(), dtype=object) == symbol)
        if len(mine):
            stamps = keys.column("available_at").to_pandas().iloc[mine]
            times.append(pd.to_datetime(stamps, utc=True))
            groups.append(np.full(len(mine), group, dtype=np.int64))
            offsets.append(mine.astype(np.int64))
    if not times:
        return pd.DatetimeIndex([], tz="UTC"), np.empty(0, np.int64), np.empty(0, np.int64)
    stamp = pd.concat(times, ignore_index=True)
    order = np.argsort(stamp.to_numpy(), kind="stable")
    return (
        pd.DatetimeIndex(stamp.iloc[order]),
        np.concatenate(groups)[order],
        np.concatenate(offsets)[order],
    )


def _unavailable(decision_id: str, record: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "decision_id": decision_id,
        "ts": record.get("ts"),
        "symbol": record.get("symbol"),
        "available": False,
        "reason": reason,
    }


def decision_contributions(evidence: Evidence, args: ContributionArgs) -> dict[str, Any]:
    """TreeSHAP contributions of the decision's XGBoost output, largest first (log-odds units)."""
    record = evidence.decision(args.decision_id)
    version = (record.get("model_versions") or {}).get("xgb")
    if not version:
        return _unavailable(
            args.decision_id,
            record,
            "no XGBoost model served this decision (no xgb version in its model_versions)",
        )
    key = ("contributions", args.decision_id)
    full = evidence.cache.get(key)
    if full is None:
        full = _compute(evidence, args.decision_id, record, str(version))
        evidence.cache[key] = full
    if not full["available"]:
        return dict(full)
    return {**full, "contributions": full["contributions"][: args.top]}


def _compute(
    evidence: Evidence, decision_id: str, record: dict[str, Any], version: str
) -> dict[str, Any]:
    import xgboost

    ts = datetime.fromisoformat(str(record["ts"]))
    try:
        model = native_booster(evidence, version)
        found = vector_at(
            evidence, model.feature_service, model.features, str(record["symbol"]), ts
        )
    except ModelUnavailableError as exc:  # no booster, or no vector table to read the row from
        return _unavailable(decision_id, record, str(exc))
    if found is None:
        return _unavailable(
            decision_id, record, f"no {model.feature_service} vector at or before {record['ts']}"
        )
    as_of, vector = found
    # float32, as the served graph read it; one row: one thread
    row = xgboost.DMatrix(vector.astype(np.float32).reshape(1, -1), missing=np.nan, nthread=1)
    phi = np.asarray(model.booster.predict(row, pred_contribs=True), dtype=np.float64)[0]
    margin = float(model.booster.predict(row, output_margin=True)[0])
    p_raw = 1.0 / (1.0 + math.exp(-margin))
    p_model = (
        p_raw if model.calibrator is None else float(model.calibrator.apply(np.array([p_raw]))[0])
    )
    recorded = json_float((record.get("models") or {}).get("p_xgb"))
    tolerance = model.match_tolerance
    order = np.argsort(-np.abs(phi[:-1]), kind="stable")
    contributions = [
        {
            "rank": rank + 1,
            "feature": model.features[j],
            "value": json_float(vector[j]),
            "contribution": float(phi[j]),
        }
        for rank, j in enumerate(order)
    ]
    return {
        "decision_id": decision_id,
        "ts": record.get("ts"),
        "symbol": record.get("symbol"),
        "available": True,
        "model": REGISTERED_MODELS["xgb"],
        "model_version": version,
        "features_as_of": utc_text(as_of),
        "units": "log-odds of P(up) before calibration",
        "bias": float(phi[-1]),
        "margin": margin,
        "p_up_raw": p_raw,
        "p_up": p_model,
        "check": {
            "p_xgb_recorded": recorded,
            "p_xgb_recomputed": p_model,
            "tolerance": tolerance,
            "matches": recorded is not None and abs(recorded - p_model) <= tolerance,
        },
        "method": (
            "TreeSHAP (xgboost pred_contribs) on the version's own booster "
            f"({model.artifact} of run {model.run_id}: the served trees with their training covers)"
        ),
        "n_features": len(model.features),
        "contributions": contributions,
    }


DECISION_CONTRIBUTIONS: Tool[Evidence] = Tool(
    name="decision_contributions",
    description=(
        "Why the XGBoost model said what it did for one decision: per-feature TreeSHAP "
        "contributions (log-odds of P(up), before calibration), largest |contribution| first, "
        "with each feature's value; bias + sum of all contributions = margin; p_up_raw = "
        "sigmoid(margin), p_up after calibration (check.matches: equal to the recorded p_xgb "
        "within check.tolerance). available=false with a reason when no XGBoost model served "
        "the decision or its version was registered without its native booster."
    ),
    args_schema=ContributionArgs,
    func=decision_contributions,
)
