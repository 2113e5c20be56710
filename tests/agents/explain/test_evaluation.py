"""`sextant eval-explanations`: the scorers judge stored answers, and the run lands in MLflow."""

from __future__ import annotations

import copy

import pytest

from agents.explain.evaluation import EXPERIMENT, evaluate_explanations, score_record
from agents.explain.service import ExplainService
from tests.agents.tools.evidence_home import ACCOUNT, EvidenceHome, evidence_home

__all__ = ["evidence_home"]


@pytest.fixture(scope="module")
def stored(evidence_home: EvidenceHome) -> tuple[dict[str, object], dict[str, object]]:
    decision = evidence_home.decisions[("BTC/USDT", evidence_home.last_close)]
    with ExplainService(evidence_home.settings, llm=None, account=ACCOUNT) as service:
        record = service.explain("decision", decision)
        found = service.evidence.decision(decision)
    return record, {"symbol": found["symbol"], "ts": found["ts"]}


def test_scorers_pass_a_grounded_answer_and_fail_each_kind_of_error(
    stored: tuple[dict[str, object], dict[str, object]],
) -> None:
    record, expected = stored
    invented = copy.deepcopy(record)
    invented["answer"]["summary"] += " RSI stood at 97.31."  # type: ignore[index]
    wrong_symbol = copy.deepcopy(record)
    wrong_symbol["answer"]["drivers"].append("SOL/USDT moved the same way.")  # type: ignore[index]
    dangling = copy.deepcopy(record)
    dangling["answer"]["citations"].append({"tool_call_id": "offline-99", "field": "price"})  # type: ignore[index]
    wrong_field = copy.deepcopy(record)
    wrong_field["answer"]["citations"][0]["field"] = "no.such.field"  # type: ignore[index]

    assert score_record(record, expected) == {
        "numbers_grounded": 1.0, "entities_correct": 1.0, "citations_resolvable": 1.0
    }  # fmt: skip
    assert score_record(invented, expected)["numbers_grounded"] == 0.0
    assert score_record(wrong_symbol, expected)["entities_correct"] == 0.0
    assert score_record(dangling, expected)["citations_resolvable"] == 0.0
    assert score_record(wrong_field, expected)["citations_resolvable"] == 0.0
    # the expectation comes from the decision: naming another bar is an entity error
    assert score_record(record, {**expected, "symbol": "ETH/USDT"})["entities_correct"] == 0.0


def test_the_evaluation_run_is_logged_with_its_metrics(evidence_home: EvidenceHome) -> None:
    import mlflow

    report = evaluate_explanations(evidence_home.settings, limit=4, account=ACCOUNT)

    assert report.decisions == 4 and report.model == "offline"
    for name in ("numbers_grounded", "entities_correct", "citations_resolvable"):
        assert report.metrics[f"{name}/mean"] == 1.0
    assert report.failures == {}
    client = mlflow.MlflowClient(tracking_uri=evidence_home.settings.tracking_uri)
    run = client.get_run(report.run_id)
    assert client.get_experiment(run.info.experiment_id).name == EXPERIMENT
    assert run.data.metrics["numbers_grounded/mean"] == 1.0
    assert run.data.params["decisions"] == "4"


def test_the_evaluation_leaves_no_mlflow_state_in_the_environment(
    evidence_home: EvidenceHome,
) -> None:
    import os

    before = {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")}

    evaluate_explanations(evidence_home.settings, limit=1, account=ACCOUNT)

    assert {k: v for k, v in os.environ.items() if k.startswith("MLFLOW_")} == before
