"""MLflow registry: register a checked ONNX model as ``challenger``; the promotion gate; the ledger.

A model reaches ``champion`` only through `promote`: it must have passed ONNX parity, meet its
single-row latency budget (measured again at promotion), and beat the incumbent champion on the
same walk-forward folds by a margin (with no champion: beat a naive baseline). Every decision,
promotion or refusal, is appended to the promotion ledger (`<home>/promotions.jsonl`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx

from models.tracking import REGISTERED_MODELS
from sextant.errors import ConfigError

__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "LATENCY_BUDGET_MS",
    "PromotionDecision",
    "PromotionPolicy",
    "champion_config",
    "ledger_path",
    "promote",
    "read_ledger",
    "register_version",
]

log = logging.getLogger(__name__)

CHALLENGER = "challenger"
CHAMPION = "champion"
# single-row onnxruntime p99 budgets (issue 5; measured here: xgb 0.02 ms, lstm 0.15 ms)
LATENCY_BUDGET_MS = {"xgb": 0.2, "lstm": 1.0, "garch": 0.2}


@dataclass(frozen=True)
class PromotionPolicy:
    """Which metric decides and by how much a challenger must win."""

    direction_metric: str = "auc"  # higher is better
    direction_margin: float = 0.002
    volatility_metric: str = "qlike"  # lower is better
    volatility_margin: float = 0.0
    latency_reads: int = 2000


@dataclass(frozen=True)
class PromotionDecision:
    """One gate decision, as written to the ledger."""

    time: str
    family: str
    model: str
    promoted: bool
    reason: str  # UPPER_SNAKE code
    detail: str
    challenger_version: str | None
    champion_version: str | None  # the incumbent before this decision
    metrics: dict[str, float]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _client() -> Any:
    from mlflow import MlflowClient

    return MlflowClient()


def _alias_version(name: str, alias: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return _client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def register_version(
    *,
    family: str,
    run_id: str,
    proto: onnx.ModelProto,
    input_example: dict[str, npt.NDArray[Any]],
    tags: dict[str, str],
) -> str:
    """Log the ONNX model in the run, register it, tag it and alias it ``challenger``; returns the version.

    If any step after the version exists fails, the version is deleted: nothing half-registered.
    """
    import mlflow
    import onnxruntime

    name = REGISTERED_MODELS[family]
    champion = _alias_version(name, CHAMPION)
    # NaN (missing alternative data, sequence padding) is a valid input but not valid JSON: the
    # stored example shows zeros there
    example = {
        k: np.nan_to_num(v) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in input_example.items()
    }
    info = mlflow.onnx.log_model(
        proto,
        name="model",
        input_example=example,
        onnx_execution_providers=["CPUExecutionProvider"],
        save_as_external_data=False,
        pip_requirements=[f"onnx=={onnx.__version__}", f"onnxruntime=={onnxruntime.__version__}"],
    )
    version = mlflow.register_model(info.model_uri, name, tags={"family": family, "run_id": run_id})
    client = _client()
    try:
        for key, value in {
            **tags,
            "champion_version_at_train": str(champion.version) if champion else "",
        }.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    except Exception:
        client.delete_model_version(name, version.version)
        raise
    log.info("registered %s version %s as %s", name, version.version, CHALLENGER)
    return str(version.version)


def champion_config(family: str) -> dict[str, Any] | None:
    """The family configuration of the live champion, or None when there is none."""
    version = _alias_version(REGISTERED_MODELS[family], CHAMPION)
    if version is None or "family_config" not in version.tags:
        return None
    config: dict[str, Any] = json.loads(version.tags["family_config"])
    return config


def ledger_path(home: Path) -> Path:
    """Where promotion decisions are appended (one JSON object per line)."""
    return home / "promotions.jsonl"


def read_ledger(home: Path) -> list[dict[str, Any]]:
    """Every recorded promotion decision, oldest first."""
    path = ledger_path(home)
    if not path.exists():
        return []
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _append(home: Path, decision: PromotionDecision) -> None:
    home.mkdir(parents=True, exist_ok=True)
    with ledger_path(home).open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(decision.to_json(), sort_keys=True) + "\n")


def measure_latency(model_uri: str, reads: int) -> tuple[float, float]:
    """Single-row onnxruntime p50/p99 (ms) of a registered ONNX model, inputs shaped from its graph."""
    import mlflow

    from models.onnx_parity import onnx_latency

    proto = mlflow.onnx.load_model(model_uri)
    inputs: dict[str, npt.NDArray[Any]] = {}
    for spec in proto.graph.input:
        dims = [d.dim_value if d.dim_value > 0 else 1 for d in spec.type.tensor_type.shape.dim]
        elem = spec.type.tensor_type.elem_type
        dtype = {
            onnx.TensorProto.FLOAT: np.float32,
            onnx.TensorProto.DOUBLE: np.float64,
            onnx.TensorProto.INT64: np.int64,
        }[elem]
        inputs[spec.name] = np.zeros(dims, dtype=dtype) + (0 if dtype is np.int64 else 0.01)
    return onnx_latency(proto, inputs, n=reads)


def promote(
    home: Path, families: tuple[str, ...], policy: PromotionPolicy | None = None
) -> list[PromotionDecision]:
    """Run the gate for each family; move ``champion`` where it passes; record every decision."""
    policy = policy or PromotionPolicy()
    unknown = [f for f in families if f not in REGISTERED_MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model families {unknown}; known: {', '.join(REGISTERED_MODELS)}"
        )
    decisions = []
    for family in families:
        decision = _decide(family, policy)
        if decision.promoted and decision.challenger_version is not None:
            _client().set_registered_model_alias(
                decision.model, CHAMPION, decision.challenger_version
            )
        _append(home, decision)
        log.info("%s: %s (%s)", decision.model, decision.reason, decision.detail)
        decisions.append(decision)
    return decisions


def _decide(family: str, policy: PromotionPolicy) -> PromotionDecision:
    name = REGISTERED_MODELS[family]
    now = datetime.now(UTC).isoformat()
    challenger = _alias_version(name, CHALLENGER)
    champion = _alias_version(name, CHAMPION)
    incumbent = str(champion.version) if champion else None

    def verdict(
        promoted: bool, reason: str, detail: str, metrics: dict[str, float]
    ) -> PromotionDecision:
        return PromotionDecision(
            now,
            family,
            name,
            promoted,
            reason,
            detail,
            str(challenger.version) if challenger else None,
            incumbent,
            metrics,
        )

    if challenger is None:
        return verdict(
            False, "NO_CHALLENGER", "nothing registered as challenger: run `sextant train`", {}
        )
    if champion is not None and str(champion.version) == str(challenger.version):
        return verdict(
            False, "ALREADY_CHAMPION", f"version {challenger.version} is already the champion", {}
        )
    tags = challenger.tags
    if "cv_metrics" not in tags or (
        "parity_max_abs_err" not in tags and "parity_max_rel_err" not in tags
    ):
        return verdict(False, "PARITY_UNVERIFIED", "the challenger carries no parity figures", {})
    cv: dict[str, float] = json.loads(tags["cv_metrics"])
    p50, p99 = measure_latency(f"models:/{name}/{challenger.version}", policy.latency_reads)
    metrics = {
        **{f"challenger_{k}": float(v) for k, v in cv.items()},
        "onnx_p50_ms": p50,
        "onnx_p99_ms": p99,
    }
    budget = LATENCY_BUDGET_MS[family]
    if p99 >= budget:
        return verdict(
            False, "LATENCY_BUDGET", f"single-row p99 {p99:.4f} ms, budget {budget} ms", metrics
        )

    higher_is_better = family != "garch"
    metric = policy.direction_metric if higher_is_better else policy.volatility_metric
    margin = policy.direction_margin if higher_is_better else policy.volatility_margin
    ours = float(cv[metric])
    if champion is None:
        if higher_is_better:
            baseline, beats = 0.5, ours > 0.5 + margin
            what = f"{metric} {ours:.4f} vs naive baseline 0.5 + margin {margin}"
        else:
            baseline = float(cv["baseline_qlike"])
            ours = float(cv["qlike_vs_baseline_rows"])
            beats = ours < baseline - margin
            what = f"qlike {ours:.5f} vs rolling-variance baseline {baseline:.5f} - margin {margin}"
        metrics["baseline"] = baseline
        if not beats:
            return verdict(
                False, "BELOW_BASELINE", what + ": no champion, family stays unavailable", metrics
            )
        return verdict(True, "PROMOTED_OVER_BASELINE", what, metrics)

    if tags.get("champion_version_at_train", "") != str(champion.version):
        return verdict(
            False,
            "STALE_COMPARISON",
            f"challenger was compared with champion version {tags.get('champion_version_at_train') or 'none'}, "
            f"the champion is now {champion.version}: retrain to compare on the same folds",
            metrics,
        )
    replay: dict[str, float] = json.loads(tags.get("champion_replay_metrics", "{}") or "{}")
    if metric not in replay:
        return verdict(
            False,
            "NO_COMPARISON",
            f"no {metric} of the champion on the challenger's folds",
            metrics,
        )
    theirs = float(replay[metric])
    metrics[f"champion_{metric}"] = theirs
    beats = ours > theirs + margin if higher_is_better else ours < theirs - margin
    what = f"{metric} {ours:.5f} vs champion {theirs:.5f} on the same folds (margin {margin})"
    if not beats:
        return verdict(False, "NOT_BETTER", what, metrics)
    return verdict(True, "PROMOTED", what, metrics)
