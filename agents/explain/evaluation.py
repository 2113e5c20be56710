"""Grounding as a tracked metric: an ``mlflow.genai.evaluate`` pass over stored decisions.

`evaluate_explanations` asks the explainer (`agents.explain.service.ExplainService`: the LLM when
one is configured, the offline narrative otherwise) to explain the latest ``limit`` decisions of
an account, then scores every answer with three custom scorers and logs the run in the MLflow
experiment ``sextant-explanations`` (visible in ``mlflow ui`` next to the model runs):

- ``numbers_grounded``: every number the answer writes equals, at its written precision, a value
  its own tool calls returned (the grounding guard's number rule, re-run on the stored record);
- ``entities_correct``: the only symbol it names is the decision's, and every date it names is
  the decision's bar or appears in its tool outputs (expectations come from the stored decision,
  not from the answer);
- ``citations_resolvable``: each citation names a tool call of the answer and a field that
  exists in that call's output.

Each scorer returns 1.0 or 0.0 per answer, so the run's ``<scorer>/mean`` is the share of answers
that pass. The scorers read only the stored record (answer and tool calls), so they judge what
was shown to a person, and never call a model: nothing here needs a hosted judge.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from agents.explain.grounding import GroundingResult, check_grounding, claim_kind
from agents.explain.schema import Explanation
from agents.tools.base import ToolCall
from sextant.errors import DataValidationError
from sextant.settings import Settings

__all__ = ["EXPERIMENT", "EvaluationReport", "evaluate_explanations", "score_record"]

EXPERIMENT = "sextant-explanations"
SCORERS = ("numbers_grounded", "entities_correct", "citations_resolvable")


@dataclass(frozen=True)
class EvaluationReport:
    """What the evaluation run measured: per scorer the share of answers that pass."""

    run_id: str
    experiment: str
    model: str
    decisions: int
    metrics: dict[str, float]
    failures: dict[str, list[str]]  # decision id -> the claims that failed

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "model": self.model,
            "decisions": self.decisions,
            "metrics": self.metrics,
            "failures": self.failures,
        }


def score_record(record: Mapping[str, Any], expectations: Mapping[str, Any]) -> dict[str, float]:
    """The three scores of one stored explanation record against its decision's symbol and bar."""
    checked = _checked(record, expectations)
    kinds = [claim_kind(claim) for claim in checked.failed_claims]
    return {
        "numbers_grounded": float("number" not in kinds),
        "entities_correct": float("entity" not in kinds),
        "citations_resolvable": float("citation" not in kinds),
    }


def _checked(record: Mapping[str, Any], expectations: Mapping[str, Any]) -> GroundingResult:
    try:
        answer = Explanation.model_validate(record["answer"])
        calls = [
            ToolCall(str(c["id"]), str(c["tool"]), dict(c["args"]), dict(c["output"]))
            for c in record["tool_calls"]
        ]
    except (KeyError, TypeError, ValueError) as exc:
        raise DataValidationError(
            f"explanation record {record.get('id')!r} is malformed: {exc}", field="record"
        ) from exc
    return check_grounding(
        answer,
        calls,
        symbols=[str(expectations["symbol"])],
        dates=[datetime.fromisoformat(str(expectations["ts"]))],
        known_symbols=list(expectations.get("known_symbols", ())),
    )


def evaluate_explanations(
    settings: Settings, *, limit: int = 20, account: str | None = None
) -> EvaluationReport:
    """Explain the latest ``limit`` decisions of ``account`` and log the scored run in MLflow."""
    import mlflow
    import mlflow.genai
    from mlflow.genai.scorers import scorer

    from agents.explain.service import ExplainService
    from models.tracking import Tracking

    if limit < 1:
        raise DataValidationError(f"limit must be at least 1, got {limit}", field="limit")
    rows: list[dict[str, Any]] = []
    failures: dict[str, list[str]] = {}
    with ExplainService(settings, account=account) as service:
        chosen = account or settings.paper_account
        decisions = service.evidence.decisions.latest(limit, account=chosen)
        if not decisions:
            raise DataValidationError(
                f"no decisions of account {chosen!r} to explain (run `sextant decide` or "
                "`sextant run` first)",
                field="account",
            )
        model = service.model
        for decision in decisions:
            record = service.explain("decision", str(decision["id"]))
            expectations = {
                "symbol": decision["symbol"],
                "ts": decision["ts"],
                "known_symbols": list(settings.symbols),
            }
            failed = _checked(record, expectations).failed_claims
            if failed:
                failures[str(decision["id"])] = list(failed)
            rows.append(
                {
                    "inputs": {"decision_id": decision["id"], "question": record["question"]},
                    "outputs": record,
                    "expectations": expectations,
                }
            )

    def _score(name: str) -> Any:
        @scorer(name=name)
        def one(outputs: dict[str, Any], expectations: dict[str, Any]) -> float:
            return score_record(outputs, expectations)[name]

        return one

    tracking = Tracking.from_settings(settings)
    experiment_id = tracking.experiment_id(EXPERIMENT)
    # the run names its experiment: mlflow.set_experiment would leave MLFLOW_EXPERIMENT_ID set in
    # this process's environment (and in every process it starts)
    name = f"explanations-{model}"
    with tracking.fluent(), mlflow.start_run(experiment_id=experiment_id, run_name=name) as run:
        mlflow.log_params({"model": model, "decisions": len(rows), "account": chosen})
        result = mlflow.genai.evaluate(data=rows, scorers=[_score(n) for n in SCORERS])
        run_id = run.info.run_id
    metrics = {k: float(v) for k, v in result.metrics.items()}
    return EvaluationReport(run_id, EXPERIMENT, model, len(rows), metrics, failures)
