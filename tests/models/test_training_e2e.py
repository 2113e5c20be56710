"""Train → register → promote for real: sample data, Feast, MLflow (sqlite), onnxruntime.

One home is prepared per module (ingest the sample, build and materialize features) and the
three families are trained once with the quick configuration; the tests read what that left.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.build import build_features
from features.feast_store import materialize
from features.ingest.service import ingest_source
from features.ingest.sources.sample import SampleSource
from features.ingest.store import MarketStore
from models.registry import PromotionPolicy, promote, read_ledger
from models.tracking import Tracking
from models.training import FamilyReport, TrainConfig, train_models
from sextant.contracts import CHALLENGER, CHAMPION, REGISTERED_MODELS, ModelTag
from sextant.errors import DataValidationError
from sextant.settings import Settings, load_settings

pytestmark = pytest.mark.slow


@dataclass(frozen=True)
class Trained:
    settings: Settings
    tracking: Tracking
    reports: dict[str, FamilyReport]

    @property
    def client(self) -> Any:
        return self.tracking.client


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Trained]:
    home = tmp_path_factory.mktemp("train-home")
    settings = load_settings(home=home)
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(SampleSource(), store)
    build_features(settings)
    materialize(settings)
    tracking = Tracking.from_settings(settings)
    reports = train_models(settings, TrainConfig.quick(), tracking)
    yield Trained(settings, tracking, {r.family: r for r in reports})


def test_every_family_has_a_run_metrics_and_a_challenger(trained: Trained) -> None:
    client = trained.client
    assert set(trained.reports) == {"garch", "xgb", "lstm"}
    for family, report in trained.reports.items():
        run = client.get_run(report.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.tags["sextant.config_hash"] and run.data.tags["sextant.git_commit"]
        assert run.data.tags["mlflow.parentRunId"]
        version = client.get_model_version_by_alias(REGISTERED_MODELS[family], CHALLENGER)
        assert str(version.version) == report.model_version
        assert version.tags["feature_service"].endswith("_v1")
        artifacts = {a.path for a in client.list_artifacts(report.run_id)}
        assert "oof_predictions.parquet" in artifacts and "plots" in artifacts
    xgb = trained.reports["xgb"]
    for span in (
        "selection",
        "reported",
    ):  # every figure is per span, with the baseline's beside it
        assert 0.0 < xgb.metrics[f"{span}_auc"] < 1.0
        assert 0.0 < xgb.metrics[f"baseline_{span}_auc"] < 1.0
        assert {"brier", "log_loss", "ece"} <= {
            k.split("_", 1)[1] for k in xgb.metrics if k.startswith(span)
        }
    assert xgb.parity["passed"]
    assert trained.reports["garch"].parity["max_rel_err"] <= 1e-9
    assert set(xgb.spans) == {"train", "calibration", "selection", "reported", "reported_start"}
    assert xgb.baseline["name"].split("_")[0] in {"momentum", "reversal"}
    version = client.get_model_version(REGISTERED_MODELS["xgb"], xgb.model_version)
    assert json.loads(version.tags["calibration"])["method"] == "platt"
    assert version.tags["sextant.span.reported"] == xgb.spans["reported"]
    # GARCH parity is checked out of sample: on returns after the served fit's last one
    garch = client.get_model_version(
        REGISTERED_MODELS["garch"], trained.reports["garch"].model_version
    )
    fitted, sampled = json.loads(garch.tags["fit_range"]), json.loads(garch.tags["parity_sample"])
    for symbol, span in sampled.items():
        assert span.split(" .. ")[0] > fitted[symbol].split(" .. ")[1]


def test_xgb_version_names_its_native_booster_which_is_the_served_model(trained: Trained) -> None:
    import mlflow
    import numpy as np
    import xgboost

    from models.calibration import Calibrator

    client = trained.client
    xgb = trained.reports["xgb"]
    version = client.get_model_version(REGISTERED_MODELS["xgb"], xgb.model_version)

    path = version.tags[ModelTag.NATIVE_MODEL]

    assert path == "xgb_booster.ubj"
    assert path in {a.path for a in client.list_artifacts(xgb.run_id)}
    booster = xgboost.Booster()
    booster.load_model(
        bytearray(Path(trained.tracking.download(run_id=xgb.run_id, path=path)).read_bytes())
    )
    # the served model's trees: cut to the best iteration, on the version's feature list
    params = client.get_run(xgb.run_id).data.params
    assert booster.num_boosted_rounds() == int(params["final.n_trees"])
    assert booster.num_features() == len(json.loads(version.tags[ModelTag.FEATURES]))
    # through the version's calibrator it gives the registered graph's recorded output on the
    # logged input example (the graph's probe, within the parity bound training enforced)
    model_dir = trained.tracking.download(
        uri=f"models:/{REGISTERED_MODELS['xgb']}/{xgb.model_version}"
    )
    example = mlflow.models.Model.load(model_dir).load_input_example(model_dir)
    assert isinstance(example, dict)
    rows = np.asarray(example["features"], dtype=np.float32)
    margin = booster.predict(xgboost.DMatrix(rows, missing=np.nan), output_margin=True)
    calibrator = Calibrator.from_dict(json.loads(version.tags[ModelTag.CALIBRATION]))
    p_up = calibrator.apply(1.0 / (1.0 + np.exp(-margin.astype(np.float64))))
    probe = json.loads(version.tags[ModelTag.PROBE_OUTPUT])
    np.testing.assert_allclose(p_up, probe, atol=1e-5 * (1 + calibrator.max_slope))
    # the other families keep their graphs only
    for family in ("lstm", "garch"):
        other = client.get_model_version(
            REGISTERED_MODELS[family], trained.reports[family].model_version
        )
        assert ModelTag.NATIVE_MODEL not in other.tags


def test_out_of_fold_predictions_cover_only_test_blocks(trained: Trained) -> None:
    path = trained.tracking.download(
        run_id=trained.reports["xgb"].run_id, path="oof_predictions.parquet"
    )
    oof = pd.read_parquet(path)
    assert set(oof.columns) >= {
        "symbol",
        "decision_ts",
        "fold",
        "p_up",
        "label_up",
        "fwd_log_return",
    }
    assert not oof.duplicated(["symbol", "decision_ts"]).any()
    assert oof["p_up"].between(0, 1).all() and oof["p_baseline"].between(0, 1).all()
    assert sorted(oof["fold"].unique()) == [0, 1, 2]
    # the protocol: selection labels are known when the reported span starts; nothing overlaps
    start = pd.Timestamp(trained.reports["xgb"].spans["reported_start"])
    selection, reported = oof[oof["span"] == "selection"], oof[oof["span"] == "reported"]
    assert len(selection) > 1000 and len(reported) > 1000
    assert (selection["label_end_ts"] <= start).all()
    assert (reported["decision_ts"] >= start).all()
    assert (oof.loc[oof["span"] == "purged", "decision_ts"] < start).all()


def test_promotion_gate_ledger_and_loading_the_champion(trained: Trained) -> None:
    import mlflow
    import onnxruntime as ort

    home = trained.settings.paths.home
    tracking = trained.tracking

    decisions = {d.family: d for d in promote(tracking, home, ("garch", "xgb", "lstm"))}

    ledger = read_ledger(home)
    assert [e["family"] for e in ledger[-3:]] == ["garch", "xgb", "lstm"]
    for family, decision in decisions.items():
        assert decision.reason in {
            "PROMOTED_OVER_BASELINE",
            "BELOW_BASELINE",
            "BELOW_SIMPLE_BASELINE",
            "LATENCY_BUDGET",
        }, decision
        client = trained.client
        aliases = client.get_registered_model(REGISTERED_MODELS[family]).aliases
        assert (str(aliases.get(CHAMPION)) == decision.challenger_version) is decision.promoted
        if decision.reason != "LATENCY_BUDGET":  # the tests ran, on the selection span only
            first = decision.tests[0]
            assert first["name"] in {"auc_difference", "diebold_mariano_ewc"}
            assert {"estimate", "bound", "p_value", "n"} <= set(first)
            assert "on the selection span" in decision.detail or decision.promoted
    # whatever the sample allows, a champion can be loaded: make the xgb challenger one by hand
    promoted = [d for d in decisions.values() if d.promoted]
    if not promoted:
        client = trained.client
        xgb = decisions["xgb"]
        client.set_registered_model_alias(xgb.model, CHAMPION, xgb.challenger_version)
        promoted = [xgb]
    for decision in promoted:
        uri = f"models:/{decision.model}@{CHAMPION}"
        proto = mlflow.onnx.load_model(tracking.download(uri=uri))
        session = ort.InferenceSession(
            proto.SerializeToString(), providers=["CPUExecutionProvider"]
        )
        assert session.get_outputs()
        with tracking.fluent():  # pyfunc resolves models:/ URIs through the fluent registry
            assert mlflow.pyfunc.load_model(uri) is not None

    # a second promote with nothing new: the champion stays, the refusal is recorded
    again = {d.family: d for d in promote(tracking, home, tuple(d.family for d in promoted))}
    assert all(d.reason == "ALREADY_CHAMPION" and not d.promoted for d in again.values())
    assert len(read_ledger(home)) == len(ledger) + len(promoted)
    assert all("tests" in entry for entry in read_ledger(home))


def test_champion_replay_is_on_the_same_folds(trained: Trained) -> None:
    # Arrange: a champion exists (previous test or promote here); retrain xgb with the same config
    home = trained.settings.paths.home
    client = trained.client
    name = REGISTERED_MODELS["xgb"]
    client.set_registered_model_alias(name, CHAMPION, trained.reports["xgb"].model_version)
    champion = client.get_model_version_by_alias(name, CHAMPION)

    # Act
    (report,) = train_models(
        trained.settings, TrainConfig.quick(families=("xgb",)), trained.tracking
    )
    lenient = PromotionPolicy(confidence=0.5, require_simple_baseline=False, n_boot=200)
    decision = promote(trained.tracking, home, ("xgb",), lenient)[0]

    # Assert: identical config and seed give identical metrics, so the challenger cannot win
    challenger = client.get_model_version(name, report.model_version)
    replay = json.loads(challenger.tags["champion_replay_metrics"])
    assert challenger.tags["champion_version_at_train"] == str(champion.version)
    assert replay["auc"] == pytest.approx(report.metrics["selection_auc"], abs=1e-12)
    assert report.metrics["selection_auc"] == pytest.approx(
        trained.reports["xgb"].metrics["selection_auc"], abs=1e-12
    )  # reproducible
    assert decision.reason in {"NOT_BETTER", "BELOW_BASELINE"} and not decision.promoted
    if decision.reason == "NOT_BETTER":
        assert decision.tests[-1]["against"] == "champion"
        assert decision.tests[-1]["estimate"] == 0.0


def test_bad_input_fails_before_fitting_and_registers_nothing(trained: Trained) -> None:
    client = trained.client
    before = {
        m: len(client.search_model_versions(f"name='{m}'")) for m in REGISTERED_MODELS.values()
    }
    too_short = TrainConfig.quick(
        families=("xgb",), start=pd.Timestamp("2023-12-20", tz="UTC").to_pydatetime()
    )

    with pytest.raises(
        DataValidationError, match=r"^xgb on BTC/USDT, ETH/USDT 2023-12-.*needs 1500 training"
    ):
        train_models(trained.settings, too_short, trained.tracking)

    after = {
        m: len(client.search_model_versions(f"name='{m}'")) for m in REGISTERED_MODELS.values()
    }
    assert after == before
    failed = client.search_runs(
        [client.get_experiment_by_name("sextant-direction").experiment_id],
        "attributes.status = 'FAILED'",
    )
    assert failed, "the failed training run is marked FAILED in MLflow"


def test_unknown_family_is_a_config_error() -> None:
    from sextant.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown model families"):
        TrainConfig.quick().replace(families=("prophet",))


def test_backtest_replays_out_of_fold_predictions_with_baselines(trained: Trained) -> None:
    from models.backtest import SELECTION_GRID, run_backtest_study

    # the gate may refuse GARCH on the sample; without a volatility champion nothing is sized, so
    # make this run's GARCH the champion by hand to exercise trading
    client = trained.client
    name = REGISTERED_MODELS["garch"]
    if CHAMPION not in client.get_registered_model(name).aliases:
        client.set_registered_model_alias(name, CHAMPION, trained.reports["garch"].model_version)

    report = run_backtest_study(trained.settings, trained.tracking)

    # champions only (xgb and garch are by now; lstm only if the gate let it through)
    for family, version in report.model_versions.items():
        alias = client.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION)
        assert version == f"{alias.version} (champion)"
    assert set(report.absent) == {"xgb", "lstm", "garch"} - set(report.model_versions)
    assert set(report.metrics) == {"buy_and_hold", "ta_only", "ml_only", "fused", "simple_baseline"}
    selection, reported = list(report.periods.values())
    assert selection.split(" .. ")[1] < reported.split(" .. ")[0]  # chosen earlier than reported
    # the reported span starts no earlier than any champion's own reported span
    for family in report.model_versions:
        tags = client.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION).tags
        start = pd.Timestamp(tags["sextant.span.reported_start"])
        assert pd.Timestamp(reported.split(" .. ")[0]) >= start - pd.Timedelta(hours=1)
    assert len(report.trials) == len(SELECTION_GRID)
    versions = sum(
        len(client.search_model_versions(f"name='{REGISTERED_MODELS[f]}'")) for f in ("xgb", "lstm")
    )
    assert report.trial_count["n_trials"] == (versions + 6) * len(SELECTION_GRID)
    assert Path(report.report_html).is_file()
    assert sum(m["n_trades"] for name, m in report.metrics.items() if name != "buy_and_hold") > 0
    assert report.rejections.get("VAR_LIMIT", 0) < 1_000  # VaR is computed, not missing
    run = client.get_run(report.run_id)
    assert run.info.status == "FINISHED"
    assert any(a.path == "report" for a in client.list_artifacts(report.run_id))
    for strategy in report.metrics:
        assert f"{strategy}.total_return" in run.data.metrics
    assert run.data.params["n_trials"] == str(report.trial_count["n_trials"])
    assert sum(report.size_binding["fused"].values()) > 0
    assert run.data.metrics["calibration.xgb.ece"] == pytest.approx(
        trained.reports["xgb"].metrics["reported_ece"]
    )
    assert run.data.metrics["calibration.simple_baseline.brier"] > 0
    xgb_spans = json.loads(run.data.tags["sextant.spans.xgb"])
    assert xgb_spans == trained.reports["xgb"].spans  # all four spans of the champion
    html = Path(report.report_html).read_text(encoding="utf-8")
    assert f"xgb spans: train {xgb_spans['train']}; calibration" in html
    assert f"Deflated Sharpe ratio trials: {report.trial_count['n_trials']}" in html


def test_backtest_of_a_range_without_predictions_names_symbol_and_period(trained: Trained) -> None:
    from models.backtest import run_backtest_study

    with pytest.raises(DataValidationError, match=r"BTC/USDT|ETH/USDT"):
        run_backtest_study(
            trained.settings,
            trained.tracking,
            start=pd.Timestamp("2023-01-01", tz="UTC").to_pydatetime(),
            end=pd.Timestamp("2023-02-01", tz="UTC").to_pydatetime(),
        )
