"""MLflow registry: register a checked ONNX model as ``challenger``; the promotion gate; the ledger.

A model reaches ``champion`` only through `promote`: it must have passed ONNX parity, meet its
single-row latency budget (measured again at promotion), and win one-sided statistical tests on
the selection span of its out-of-fold predictions (never the reported span): against no skill
and the simple past-return baseline (direction) or the rolling-variance forecast (volatility),
and against the incumbent champion replayed on the same folds. Every decision, promotion or
refusal, is appended to the promotion ledger (`<home>/promotions.jsonl`) with its test figures.
"""

from __future__ import annotations

import functools
import json
import logging
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import onnx
import pandas as pd

from models.garch_family import qlike_losses
from models.significance import TestResult, auc_difference_test, diebold_mariano_test
from models.spans import SELECTION, SPAN_COLUMN, EvaluationSpans
from models.tracking import Tracking
from sextant.config import PositiveInt, SextantConfig, int_range, interval
from sextant.contracts import CHALLENGER, CHAMPION, REGISTERED_MODELS, ModelTag
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

# single-row onnxruntime p99 budgets (issue 5; measured here: xgb 0.02 ms, lstm 0.15 ms)
LATENCY_BUDGET_MS = {"xgb": 0.2, "lstm": 1.0, "garch": 0.2}


class PromotionPolicy(SextantConfig):
    """How sure the gate must be, and what a challenger must beat, on the selection span.

    ``confidence`` is the level of every one-sided test (block-bootstrap AUC difference for
    direction, Diebold–Mariano on QLIKE for volatility): a challenger passes only when the test
    rejects "no better" at that level. ``require_simple_baseline``: a direction model must also
    beat the best past-return baseline (`models/baselines.py`).
    """

    confidence: Annotated[float, interval(0.5, 1.0, hi_open=True)] = 0.95
    require_simple_baseline: bool = True
    n_boot: Annotated[int, int_range(100)] = 1000
    latency_reads: PositiveInt = 2000


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
    tests: list[dict[str, Any]] = field(default_factory=list)  # each test's figures, in order

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class GateTest:
    """One test of the gate: what the challenger is compared with, and the refusal if it fails."""

    reason: str  # UPPER_SNAKE code of a refusal
    against: str
    result: TestResult

    def detail(self) -> str:
        return f"vs {self.against}: {self.result.detail()}"

    def figures(self) -> dict[str, float]:
        """``vs_<against>_estimate|bound|p_value`` for the decision's metrics."""
        key = self.against.split(" ")[0]
        r = self.result
        return {
            f"vs_{key}_estimate": r.estimate,
            f"vs_{key}_bound": r.bound,
            f"vs_{key}_p_value": r.p_value,
        }

    def as_dict(self) -> dict[str, Any]:
        return {"reason": self.reason, "against": self.against, **self.result.as_dict()}


def register_version(
    tracking: Tracking,
    *,
    family: str,
    run_id: str,
    proto: onnx.ModelProto,
    input_example: dict[str, npt.NDArray[Any]],
    tags: dict[str, str],
) -> str:
    """Log the ONNX model in the active run, register it, tag it and alias it ``challenger``.

    Called inside the run ``run_id`` (``mlflow.onnx.log_model`` logs into the active run); returns
    the version. If any step after the version exists fails, the version is deleted: nothing
    half-registered.
    """
    import mlflow
    import onnxruntime

    name = REGISTERED_MODELS[family]
    champion = tracking.alias_version(name, CHAMPION)
    # NaN (missing alternative data, sequence padding) is a valid input but not valid JSON: the
    # stored example shows zeros there
    example = {
        k: np.nan_to_num(v) if np.issubdtype(v.dtype, np.floating) else v
        for k, v in input_example.items()
    }
    with tracking.fluent():  # both exist only in the fluent API
        info = mlflow.onnx.log_model(
            proto,
            name="model",
            input_example=example,
            onnx_execution_providers=["CPUExecutionProvider"],
            save_as_external_data=False,
            pip_requirements=[
                f"onnx=={onnx.__version__}",
                f"onnxruntime=={onnxruntime.__version__}",
            ],
        )
        version = mlflow.register_model(
            info.model_uri, name, tags={"family": family, "run_id": run_id}
        )
    probe = probe_output(proto, example)
    client = tracking.client
    try:
        for key, value in {
            **tags,
            ModelTag.PROBE_OUTPUT: json.dumps(probe),
            ModelTag.CHAMPION_VERSION_AT_TRAIN: str(champion.version) if champion else "",
        }.items():
            client.set_model_version_tag(name, version.version, key, value)
        client.set_registered_model_alias(name, CHALLENGER, version.version)
    except Exception:
        client.delete_model_version(name, version.version)
        raise
    log.info("registered %s version %s as %s", name, version.version, CHALLENGER)
    return str(version.version)


def probe_output(proto: onnx.ModelProto, example: dict[str, npt.NDArray[Any]]) -> list[float]:
    """The graph's first output on ``example`` as onnxruntime computes it (inputs cast to the
    graph's declared types, as a reader of the logged JSON example must), flattened."""
    import onnxruntime

    session = onnxruntime.InferenceSession(
        proto.SerializeToString(), providers=["CPUExecutionProvider"]
    )
    feeds = {
        i.name: np.asarray(example[i.name]).astype(_ONNX_TYPES[i.type])
        for i in session.get_inputs()
    }
    output = session.run([session.get_outputs()[0].name], feeds)[0]
    return [float(v) for v in np.asarray(output, dtype=np.float64).ravel()]


_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def champion_config(tracking: Tracking, family: str) -> dict[str, Any] | None:
    """The family configuration of the live champion, or None when there is none."""
    version = tracking.alias_version(REGISTERED_MODELS[family], CHAMPION)
    if version is None or ModelTag.FAMILY_CONFIG not in version.tags:
        return None
    config: dict[str, Any] = json.loads(version.tags[ModelTag.FAMILY_CONFIG])
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


def measure_latency(tracking: Tracking, model_uri: str, reads: int) -> tuple[float, float]:
    """Single-row onnxruntime p50/p99 (ms) of a registered ONNX model, inputs shaped from its graph."""
    import mlflow

    from models.onnx_parity import onnx_latency

    proto = mlflow.onnx.load_model(tracking.download(uri=model_uri))
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
    tracking: Tracking,
    home: Path,
    families: tuple[str, ...],
    policy: PromotionPolicy | None = None,
) -> list[PromotionDecision]:
    """Run the gate for each family; move ``champion`` where it passes; record every decision.

    ``home`` holds the promotion ledger; ``tracking`` is the registry the gate reads and moves.
    """
    policy = policy or PromotionPolicy()
    unknown = [f for f in families if f not in REGISTERED_MODELS]
    if unknown:
        raise ConfigError(
            f"unknown model families {unknown}; known: {', '.join(REGISTERED_MODELS)}"
        )
    decisions = []
    for family in families:
        decision = _decide(tracking, family, policy)
        if decision.promoted and decision.challenger_version is not None:
            tracking.client.set_registered_model_alias(
                decision.model, CHAMPION, decision.challenger_version
            )
        _append(home, decision)
        log.info("%s: %s (%s)", decision.model, decision.reason, decision.detail)
        decisions.append(decision)
    return decisions


def _decide(tracking: Tracking, family: str, policy: PromotionPolicy) -> PromotionDecision:
    name = REGISTERED_MODELS[family]
    now = datetime.now(UTC).isoformat()
    challenger = tracking.alias_version(name, CHALLENGER)
    champion = tracking.alias_version(name, CHAMPION)
    incumbent = str(champion.version) if champion else None
    tests: list[GateTest] = []

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
            [t.as_dict() for t in tests],
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
    if "parity_max_abs_err" not in tags and "parity_max_rel_err" not in tags:
        return verdict(False, "PARITY_UNVERIFIED", "the challenger carries no parity figures", {})
    spans = EvaluationSpans.from_tags(tags)
    if spans is None or ModelTag.SELECTION_METRICS not in tags:
        return verdict(
            False,
            "NO_SELECTION_SPAN",
            "the challenger was trained before the evaluation protocol: retrain it",
            {},
        )
    p50, p99 = measure_latency(
        tracking, f"models:/{name}/{challenger.version}", policy.latency_reads
    )
    metrics = {
        **{
            f"selection_{k}": float(v)
            for k, v in json.loads(tags[ModelTag.SELECTION_METRICS]).items()
        },
        "onnx_p50_ms": p50,
        "onnx_p99_ms": p99,
    }
    budget = LATENCY_BUDGET_MS[family]
    if p99 >= budget:
        return verdict(
            False, "LATENCY_BUDGET", f"single-row p99 {p99:.4f} ms, budget {budget} ms", metrics
        )
    if champion is not None and tags.get(ModelTag.CHAMPION_VERSION_AT_TRAIN, "") != str(
        champion.version
    ):
        return verdict(
            False,
            "STALE_COMPARISON",
            f"challenger was compared with champion version {tags.get(ModelTag.CHAMPION_VERSION_AT_TRAIN) or 'none'}, "
            f"the champion is now {champion.version}: retrain to compare on the same folds",
            metrics,
        )

    selection = selection_rows(tracking, challenger.run_id)
    horizon = int(tags.get(ModelTag.LABEL_HORIZON, "1"))
    recorded_baseline = json.loads(tags.get(ModelTag.BASELINE, "{}"))
    baseline = str(recorded_baseline.get("name", "past return"))
    # the simple baseline beside the model, whatever the tests conclude
    key = "qlike" if family == "garch" else "auc"
    theirs = recorded_baseline.get(SELECTION, {}).get(key)
    side_by_side = f"selection {key} {metrics.get(f'selection_{key}', math.nan):.5f}" + (
        f", {baseline} {float(theirs):.5f}" if theirs is not None else ""
    )
    if theirs is not None:
        metrics[f"baseline_selection_{key}"] = float(theirs)
    for test in gate_tests(family, selection, horizon, policy, champion is not None, baseline):
        tests.append(test)
        metrics.update(test.figures())
        if not test.result.passed:
            return verdict(
                False,
                test.reason,
                f"{test.detail()} on the selection span ({side_by_side})",
                metrics,
            )
    what = "; ".join(t.detail() for t in tests) + f" ({side_by_side}; span {spans.selection})"
    return verdict(
        True, "PROMOTED" if champion is not None else "PROMOTED_OVER_BASELINE", what, metrics
    )


def selection_rows(tracking: Tracking, run_id: str) -> pd.DataFrame:
    """The out-of-fold predictions of a training run that lie in its selection span."""
    path = tracking.download(run_id=run_id, path="oof_predictions.parquet")
    oof = pd.read_parquet(path)
    return oof[oof[SPAN_COLUMN] == SELECTION].reset_index(drop=True)


def gate_tests(
    family: str,
    selection: pd.DataFrame,
    horizon: int,
    policy: PromotionPolicy,
    has_champion: bool,
    baseline: str = "past return",
) -> Iterator[GateTest]:
    """Each test the challenger must pass, in order, with the reason code of its failure.

    Lazy: the gate stops at the first failure, so later tests are not run for nothing.
    """
    if family == "garch":

        def lower_qlike(rows: pd.DataFrame, against: str) -> TestResult:
            times = np.unique(rows["ts"].to_numpy(), return_inverse=True)[1]
            return diebold_mariano_test(
                qlike_losses(rows, "forecast_var"),
                qlike_losses(rows, against),
                horizon=1,
                confidence=policy.confidence,
                groups=times,
            )

        usable = selection[selection["baseline_var"].notna() & (selection["baseline_var"] > 0)]
        yield GateTest("BELOW_BASELINE", "rolling_variance", lower_qlike(usable, "baseline_var"))
        if has_champion:
            yield GateTest("NOT_BETTER", "champion", lower_qlike(selection, "champion_var"))
        return
    y = selection["label_up"].to_numpy()
    times = np.unique(selection["decision_ts"].to_numpy(), return_inverse=True)[1]
    compare = functools.partial(
        auc_difference_test,
        y,
        selection["p_up"].to_numpy(),
        groups=times,
        horizon=horizon,
        n_boot=policy.n_boot,
        confidence=policy.confidence,
    )
    yield GateTest("BELOW_BASELINE", "no_skill", compare(None))
    if policy.require_simple_baseline:
        yield GateTest(
            "BELOW_SIMPLE_BASELINE",
            f"simple_baseline ({baseline})",
            compare(selection["p_baseline"].to_numpy()),
        )
    if has_champion:
        yield GateTest("NOT_BETTER", "champion", compare(selection["p_champion"].to_numpy()))
