"""Per-feature XGBoost contributions of a decision: TreeSHAP by xgboost's ``pred_contribs``.

**Which model.** The decision record names the ``sextant-xgb`` version that served it
(``model_versions["xgb"]``). Training registers that version as ONNX only (no native booster is
logged), so the booster is rebuilt from the registered graph's ``TreeEnsembleClassifier``: the
same trees, thresholds, default (missing-value) directions, leaf values and base margin, loaded
into xgboost from its own JSON model format; xgboost's ``predict(pred_contribs=True)`` then
computes TreeSHAP on it. The graph does not carry the trees' covers (the training hessian sums
that path-dependent TreeSHAP weighs paths with), so they are recounted: the number of the
version's training rows (the packed ``xgb_direction_v1`` vectors of every traded symbol whose
bar close lies in the version's recorded ``data_range``) that reach each node, which is TreeSHAP
as first defined (covers as sample counts). Local accuracy holds exactly either way: the
contributions plus the bias sum to the model's margin for the row.

**Which row.** The record keeps the TA features only; the model's vector is re-read from the
packed vector table the online store is materialized from: the symbol's row with the latest
``available_at`` at or before the decision's bar close (what was online then; no later row is
read). The recomputed probability, through the version's recorded calibrator, is reported beside
the recorded ``p_xgb`` (``check.matches``): equal within float32 rounding when the row is the one
the decision was made on.

Results are deterministic and cached in the process (``Evidence.cache``); nothing is written.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd
import pyarrow.dataset as ds
import pyarrow.parquet as pq
from pydantic import ConfigDict, Field

from agents.tools.base import Tool
from agents.tools.context import Evidence, json_float, utc_text
from agents.tools.decisions import DecisionArgs
from models.calibration import Calibrator
from sextant.contracts import FEATURE_SERVICES, REGISTERED_MODELS, ModelTag
from sextant.errors import ModelUnavailableError

__all__ = [
    "DECISION_CONTRIBUTIONS",
    "ContributionArgs",
    "RebuiltBooster",
    "decision_contributions",
    "rebuild_booster",
    "registered_graph",
    "vector_at",
]

FloatArray = npt.NDArray[np.float64]
# the packed vector table of a service (features.definitions.SERVICE_VECTOR_VIEWS: "<service>_vector";
# agents may not import features, and the table's own metadata is checked against the model)
_VECTOR_TABLE = "{service}_vector.parquet"
_FEATURES_KEY = b"sextant.features"
_ONNX_FILE = "model.onnx"
_MATCH_TOLERANCE = 1e-4  # float32 graph vs float64 rebuild, through the calibrator's slope
DEFAULT_TOP = 10


class ContributionArgs(DecisionArgs):
    """One decision, and how many of the largest contributions to return."""

    model_config = ConfigDict(extra="forbid")

    top: int = Field(DEFAULT_TOP, ge=1, le=200, description="largest |contribution| first")


@dataclass(frozen=True)
class RebuiltBooster:
    """A registered ``sextant-xgb`` version as an xgboost booster, with what it needs to read."""

    version: str
    booster: Any  # xgboost.Booster
    features: tuple[str, ...]
    feature_service: str
    calibrator: Calibrator | None
    base_margin: float
    cover_rows: int


def _attributes(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def registered_graph(evidence: Evidence, version: Any) -> onnx.ModelProto:
    """A registered version's ONNX graph, downloaded through explicit URIs (as the service does)."""
    import mlflow

    label = f"{version.name} version {version.version}"

    source = str(version.source)
    model_id = getattr(version, "model_id", None)
    if not model_id and source.startswith("models:/m-"):
        model_id = source.removeprefix("models:/")
    try:
        if model_id:
            source = evidence.registry.get_logged_model(model_id).artifact_location
        local = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=source, tracking_uri=evidence.settings.tracking_uri
            )
        )
    except Exception as exc:  # any store error: the model cannot be read
        raise ModelUnavailableError(f"{label}: cannot download {source}: {exc}") from exc
    path = local / _ONNX_FILE if local.is_dir() else local
    if not path.is_file():
        raise ModelUnavailableError(f"{label}: no {_ONNX_FILE} in {source}")
    return onnx.load(str(path))


@dataclass(frozen=True)
class _Tree:
    left: list[int]
    right: list[int]
    feature: list[int]
    threshold: list[float]
    default_left: list[int]
    leaf_value: list[float]
    is_leaf: list[bool]


def _trees(model: onnx.ModelProto, label: str) -> tuple[list[_Tree], float]:
    """The ensemble's trees (node ids as the graph numbers them, root 0) and base margin."""
    found = [n for n in model.graph.node if n.op_type == "TreeEnsembleClassifier"]
    if len(found) != 1:
        raise ModelUnavailableError(f"{label}: not one TreeEnsembleClassifier in the graph")
    attrs = _attributes(found[0])
    if attrs.get("post_transform", b"") not in (b"LOGISTIC", "LOGISTIC"):
        raise ModelUnavailableError(f"{label}: the ensemble is not a logistic one")
    modes = [m.decode() if isinstance(m, bytes) else str(m) for m in attrs["nodes_modes"]]
    if set(modes) - {"BRANCH_LT", "LEAF"}:
        raise ModelUnavailableError(f"{label}: split modes {sorted(set(modes))} not supported")
    leaf_values: dict[tuple[int, int], float] = {}
    for tree, node, weight in zip(
        attrs["class_treeids"], attrs["class_nodeids"], attrs["class_weights"], strict=True
    ):
        leaf_values[(tree, node)] = leaf_values.get((tree, node), 0.0) + float(weight)
    n_trees = max(attrs["nodes_treeids"]) + 1
    sizes = [0] * n_trees
    for tree, node in zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True):
        sizes[tree] = max(sizes[tree], node + 1)
    trees = [
        _Tree([-1] * k, [-1] * k, [0] * k, [0.0] * k, [0] * k, [0.0] * k, [True] * k) for k in sizes
    ]
    for i, (tree, node) in enumerate(
        zip(attrs["nodes_treeids"], attrs["nodes_nodeids"], strict=True)
    ):
        t = trees[tree]
        if modes[i] == "LEAF":
            t.leaf_value[node] = leaf_values.get((tree, node), 0.0)
            continue
        t.is_leaf[node] = False
        t.left[node] = int(attrs["nodes_truenodeids"][i])  # x < threshold: xgboost's "yes"
        t.right[node] = int(attrs["nodes_falsenodeids"][i])
        t.feature[node] = int(attrs["nodes_featureids"][i])
        t.threshold[node] = float(attrs["nodes_values"][i])
        t.default_left[node] = int(attrs["nodes_missing_value_tracks_true"][i])
    base = attrs.get("base_values") or [0.0]
    return [_paired(tree) for tree in trees], float(base[0])


def _paired(tree: _Tree) -> _Tree:
    """The tree renumbered breadth first, children in pairs (right = left + 1).

    xgboost allocates a split's children together and its per-row walk (prediction of one row,
    ``pred_leaf``, TreeSHAP) finds the right child as the left one + 1; the ONNX graph numbers
    nodes depth first, which only the batched prediction path would read correctly.
    """
    order, new_id = [0], {0: 0}
    for old in order:  # grows while it is walked: a breadth-first queue
        if not tree.is_leaf[old]:
            for child in (tree.left[old], tree.right[old]):
                new_id[child] = len(order)
                order.append(child)
    n = len(order)
    out = _Tree([-1] * n, [-1] * n, [0] * n, [0.0] * n, [0] * n, [0.0] * n, [True] * n)
    for new, old in enumerate(order):
        out.is_leaf[new] = tree.is_leaf[old]
        out.leaf_value[new] = tree.leaf_value[old]
        if not tree.is_leaf[old]:
            out.left[new], out.right[new] = new_id[tree.left[old]], new_id[tree.right[old]]
            out.feature[new] = tree.feature[old]
            out.threshold[new] = tree.threshold[old]
            out.default_left[new] = tree.default_left[old]
    return out


def _covers(tree: _Tree, rows: npt.NDArray[np.float32]) -> list[float]:
    """How many ``rows`` reach each node (leaves counted, inner nodes the sum of children)."""
    n = len(tree.left)
    left, right = np.asarray(tree.left), np.asarray(tree.right)
    feature, threshold = np.asarray(tree.feature), np.asarray(tree.threshold, dtype=np.float32)
    default_left, is_leaf = np.asarray(tree.default_left, dtype=bool), np.asarray(tree.is_leaf)
    node = np.zeros(len(rows), dtype=np.int64)
    index = np.arange(len(rows))
    for _ in range(n):  # a path is never longer than the tree's node count
        inner = ~is_leaf[node]
        if not inner.any():
            break
        at = node[inner]
        value = rows[index[inner], feature[at]]
        go_left = np.where(np.isnan(value), default_left[at], value < threshold[at])
        node[inner] = np.where(go_left, left[at], right[at])
    counts = np.bincount(node, minlength=n).astype(np.float64)
    # a leaf no training row reaches keeps a vanishing weight (TreeSHAP divides by covers)
    counts[is_leaf & (counts == 0)] = 1e-6
    cover = counts.copy()
    for i in reversed(range(n)):  # children have larger ids than their parent in this numbering
        if not is_leaf[i]:
            cover[i] = cover[left[i]] + cover[right[i]]
    return [float(c) for c in cover]


def _booster_json(
    trees: list[_Tree], covers: list[list[float]], n_features: int, base: float
) -> bytes:
    """xgboost's JSON model for the trees, from a template xgboost itself writes."""
    import xgboost

    probe = np.zeros((2, n_features), dtype=np.float32)
    probe[1, 0] = 1.0
    template = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 1, "base_score": 0.5, "verbosity": 0},
        xgboost.DMatrix(probe, label=np.array([0.0, 1.0])),
        num_boost_round=1,
    )
    model = json.loads(template.save_raw("json"))
    learner = model["learner"]
    written = []
    for k, (tree, cover) in enumerate(zip(trees, covers, strict=True)):
        n = len(tree.left)
        parents = [2147483647] * n
        for i in range(n):
            if not tree.is_leaf[i]:
                parents[tree.left[i]] = parents[tree.right[i]] = i
        values = [tree.leaf_value[i] if tree.is_leaf[i] else 0.0 for i in range(n)]
        written.append(
            {
                "base_weights": values,
                "categories": [],
                "categories_nodes": [],
                "categories_segments": [],
                "categories_sizes": [],
                "default_left": list(tree.default_left),
                "id": k,
                "left_children": list(tree.left),
                "loss_changes": [0.0] * n,
                "parents": parents,
                "right_children": list(tree.right),
                "split_conditions": [
                    tree.leaf_value[i] if tree.is_leaf[i] else tree.threshold[i] for i in range(n)
                ],
                "split_indices": list(tree.feature),
                "split_type": [0] * n,
                "sum_hessian": cover,
                "tree_param": {
                    "num_deleted": "0",
                    "num_feature": str(n_features),
                    "num_nodes": str(n),
                    "size_leaf_vector": "1",
                },
            }
        )
    gbtree = learner["gradient_booster"]["model"]
    gbtree["trees"] = written
    gbtree["tree_info"] = [0] * len(written)
    gbtree["iteration_indptr"] = list(range(len(written) + 1))
    gbtree["gbtree_model_param"]["num_trees"] = str(len(written))
    learner["learner_model_param"]["base_score"] = f"[{1.0 / (1.0 + math.exp(-base))!r}]"
    learner["learner_model_param"]["num_feature"] = str(n_features)
    return json.dumps(model).encode()


def _training_rows(
    evidence: Evidence, service: str, features: tuple[str, ...], data_range: str | None
) -> npt.NDArray[np.float32]:
    """The packed vectors of every traded symbol with a bar close inside ``data_range``."""
    path = _vector_path(evidence, service, features)
    wanted = ds.field("symbol").isin(list(evidence.symbols))
    if data_range and " .. " in data_range:
        first, last = (pd.Timestamp(part.strip()) for part in data_range.split(" .. "))
        first = first.tz_localize("UTC") if first.tzinfo is None else first
        last = last.tz_localize("UTC") if last.tzinfo is None else last
        wanted = wanted & (ds.field("available_at") >= first) & (ds.field("available_at") <= last)
    table = ds.dataset(path, format="parquet").to_table(columns=["vector"], filter=wanted)
    vectors = table.column("vector").to_pylist()
    return np.asarray(vectors, dtype=np.float32).reshape(-1, len(features))


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


def rebuild_booster(evidence: Evidence, version: str) -> RebuiltBooster:
    """The registered ``sextant-xgb`` ``version`` as an xgboost booster (cached per version)."""
    import xgboost

    key = ("xgb_booster", version)
    cached = evidence.cache.get(key)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    name = REGISTERED_MODELS["xgb"]
    label = f"{name} version {version}"
    try:
        registered = evidence.registry.get_model_version(name, version)
    except Exception as exc:  # MLflow raises its own error for an unknown version
        raise ModelUnavailableError(f"{label} is not in the registry: {exc}") from exc
    tags = dict(registered.tags)
    features = tuple(json.loads(tags.get(ModelTag.FEATURES, "[]")))
    service = tags.get(ModelTag.FEATURE_SERVICE, FEATURE_SERVICES["xgb"])
    if not features:
        raise ModelUnavailableError(f"{label} records no feature list ({ModelTag.FEATURES!r})")
    trees, base = _trees(registered_graph(evidence, registered), label)
    rows = _training_rows(evidence, service, features, tags.get("data_range"))
    covers = [_covers(tree, rows) for tree in trees]
    booster = xgboost.Booster()
    booster.load_model(bytearray(_booster_json(trees, covers, len(features), base)))
    booster.set_param({"nthread": 1})
    calibration = tags.get(ModelTag.CALIBRATION)
    rebuilt = RebuiltBooster(
        version=version,
        booster=booster,
        features=features,
        feature_service=service,
        calibrator=None if not calibration else Calibrator.from_dict(json.loads(calibration)),
        base_margin=base,
        cover_rows=len(rows),
    )
    evidence.cache[key] = rebuilt
    return rebuilt


def vector_at(
    evidence: Evidence, service: str, features: tuple[str, ...], symbol: str, at: datetime
) -> tuple[datetime, FloatArray] | None:
    """The symbol's packed vector with the latest ``available_at`` at or before ``at`` (what
    was online then), or None when there is none.

    The symbol's rows are read once per version of the table file (its size and modification
    time) and kept in ``Evidence.cache``; a lookup is then a binary search.
    """
    path = _vector_path(evidence, service, features)
    stat = path.stat()
    key = ("vectors", str(path), str(stat.st_mtime_ns), str(stat.st_size), symbol)
    cached = evidence.cache.get(key)
    if cached is None:
        table = ds.dataset(path, format="parquet").to_table(
            columns=["available_at", "vector"], filter=ds.field("symbol") == symbol
        )
        frame = table.to_pandas().sort_values("available_at", kind="stable")
        times = pd.DatetimeIndex(pd.to_datetime(frame["available_at"], utc=True))
        vectors = np.asarray(frame["vector"].to_list(), dtype=np.float64).reshape(-1, len(features))
        cached = (times, vectors)
        evidence.cache[key] = cached
    times, vectors = cached
    position = int(times.searchsorted(pd.Timestamp(at), side="right")) - 1
    if position < 0:
        return None
    return times[position].to_pydatetime(), vectors[position]


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

    try:
        model = rebuild_booster(evidence, version)
    except ModelUnavailableError as exc:
        return _unavailable(decision_id, record, str(exc))
    ts = datetime.fromisoformat(str(record["ts"]))
    found = vector_at(evidence, model.feature_service, model.features, str(record["symbol"]), ts)
    if found is None:
        return _unavailable(
            decision_id, record, f"no {model.feature_service} vector at or before {record['ts']}"
        )
    as_of, vector = found
    # one row: one thread (starting a thread pool costs more than the trees)
    row = xgboost.DMatrix(vector.astype(np.float32).reshape(1, -1), missing=np.nan, nthread=1)
    phi = np.asarray(model.booster.predict(row, pred_contribs=True), dtype=np.float64)[0]
    margin = float(model.booster.predict(row, output_margin=True)[0])
    p_raw = 1.0 / (1.0 + math.exp(-margin))
    p_model = (
        p_raw if model.calibrator is None else float(model.calibrator.apply(np.array([p_raw]))[0])
    )
    recorded = json_float((record.get("models") or {}).get("p_xgb"))
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
            "matches": recorded is not None and abs(recorded - p_model) <= _MATCH_TOLERANCE,
        },
        "method": (
            "TreeSHAP (xgboost pred_contribs) on the registered trees rebuilt from ONNX, "
            f"covers recounted on {model.cover_rows} training rows"
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
        "sigmoid(margin), p_up after calibration (check.matches: equal to the recorded p_xgb). "
        "available=false with a reason when no XGBoost model served the decision."
    ),
    args_schema=ContributionArgs,
    func=decision_contributions,
)
