"""MLflow stores are settings, the client is passed explicitly, the fluent API is scoped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.tracking import EXPERIMENTS, Tracking
from sextant.settings import load_settings


@pytest.fixture
def clean_mlflow_state(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No process-wide MLflow URI before the test, none left after it."""
    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tracking_state, "_tracking_uri", None)
    monkeypatch.setattr(registry_state, "_registry_uri", None)
    yield


def test_the_default_store_is_the_homes_sqlite(tmp_path: Path) -> None:
    # Act
    tracking = Tracking.from_settings(load_settings(home=tmp_path / "h"))

    # Assert
    database = tmp_path / "h" / "mlflow" / "mlflow.db"
    assert tracking.tracking_uri == tracking.registry_uri == f"sqlite:///{database}"
    assert tracking.artifact_root == (tmp_path / "h" / "mlflow" / "artifacts").as_uri()


def test_configured_uris_reach_the_client(tmp_path: Path) -> None:
    # Arrange: runs in one database, the registry in another, artifacts elsewhere (no server)
    runs, registry = tmp_path / "runs" / "track.db", tmp_path / "models" / "registry.db"
    settings = load_settings(
        home=tmp_path / "h",
        mlflow_tracking_uri=f"sqlite:///{runs}",
        mlflow_registry_uri=f"sqlite:///{registry}",
        mlflow_artifact_root=(tmp_path / "store").as_uri(),
    )
    tracking = Tracking.from_settings(settings)

    # Act
    experiment_id = tracking.experiment_id(EXPERIMENTS["backtest"])
    tracking.client.create_registered_model("sextant-probe")

    # Assert
    from mlflow import MlflowClient

    assert tracking.client.tracking_uri == f"sqlite:///{runs}"
    assert runs.is_file() and registry.is_file()
    assert not (tmp_path / "h" / "mlflow").exists()  # the home's default store is untouched
    experiment = tracking.client.get_experiment(experiment_id)
    assert experiment.artifact_location == f"{(tmp_path / 'store').as_uri()}/sextant-backtest"
    assert tracking.experiment_id(EXPERIMENTS["backtest"]) == experiment_id  # found, not re-made
    elsewhere = MlflowClient(tracking_uri=f"sqlite:///{runs}", registry_uri=f"sqlite:///{runs}")
    assert [m.name for m in elsewhere.search_registered_models()] == []
    assert [m.name for m in tracking.client.search_registered_models()] == ["sextant-probe"]


@pytest.mark.usefixtures("clean_mlflow_state")
def test_the_fluent_scope_points_mlflow_here_and_restores_what_was_there(tmp_path: Path) -> None:
    # Arrange: some other code pointed MLflow elsewhere before
    import os

    import mlflow

    before = f"sqlite:///{tmp_path / 'before.db'}"
    mlflow.set_tracking_uri(before)
    tracking = Tracking.from_settings(load_settings(home=tmp_path / "h"))
    experiment_id = tracking.experiment_id(EXPERIMENTS["direction"])

    # Act
    with tracking.fluent():
        inside = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
        with mlflow.start_run(experiment_id=experiment_id) as run:
            mlflow.log_metric("probe", 1.0)

    # Assert
    assert inside == (tracking.tracking_uri, tracking.registry_uri)
    assert tracking.client.get_run(run.info.run_id).data.metrics == {"probe": 1.0}
    assert mlflow.get_tracking_uri() == before and os.environ["MLFLOW_TRACKING_URI"] == before
    assert "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.mark.usefixtures("clean_mlflow_state")
def test_the_fluent_scope_leaves_nothing_set_when_nothing_was(tmp_path: Path) -> None:
    # Arrange
    import os

    from mlflow.tracking._model_registry import utils as registry_state
    from mlflow.tracking._tracking_service import utils as tracking_state

    tracking = Tracking.from_settings(load_settings(home=tmp_path / "h"))

    # Act
    with pytest.raises(RuntimeError, match="boom"), tracking.fluent():
        raise RuntimeError("boom")

    # Assert: even after a failure inside the block
    assert tracking_state._tracking_uri is None and registry_state._registry_uri is None
    assert "MLFLOW_TRACKING_URI" not in os.environ and "MLFLOW_REGISTRY_URI" not in os.environ


@pytest.mark.usefixtures("clean_mlflow_state")
def test_a_registered_model_downloads_from_a_configured_registry(tmp_path: Path) -> None:
    # Arrange: a version registered in a registry database of its own
    import os

    import mlflow

    settings = load_settings(
        home=tmp_path / "h", mlflow_registry_uri=f"sqlite:///{tmp_path / 'registry.db'}"
    )
    tracking = Tracking.from_settings(settings)
    with (
        tracking.fluent(),
        mlflow.start_run(experiment_id=tracking.experiment_id(EXPERIMENTS["direction"])) as run,
    ):
        mlflow.log_dict({"probe": 1}, "model/probe.json")
    tracking.client.create_registered_model("sextant-probe")
    tracking.client.create_model_version(
        "sextant-probe", f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )

    # Act
    local = Path(tracking.download(uri="models:/sextant-probe/1"))

    # Assert
    assert json.loads((local / "probe.json").read_text(encoding="utf-8")) == {"probe": 1}
    assert "MLFLOW_REGISTRY_URI" not in os.environ and "MLFLOW_TRACKING_URI" not in os.environ
