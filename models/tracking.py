"""MLflow for sextant: a `Tracking` object, built from the settings and passed to whoever needs it.

Nothing here reads or leaves MLflow's process-wide URIs: reads and registry writes go through
``Tracking.client`` (an ``MlflowClient`` bound to the configured tracking and registry URIs), and
the few calls that only exist in MLflow's fluent API (a run context, ``mlflow.onnx.log_model``,
``mlflow.register_model``) run inside ``Tracking.fluent()``, which points the fluent API at this
store for the block and restores whatever was there before. Nothing runs at import.
"""

from __future__ import annotations

import functools
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from sextant.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["EXPERIMENTS", "Tracking", "git_commit"]

EXPERIMENTS = {
    "direction": "sextant-direction",
    "volatility": "sextant-volatility",
    "backtest": "sextant-backtest",
}
REPO_ROOT = Path(__file__).resolve().parents[1]
# MLflow's environment variables for its process-wide URIs (set_tracking_uri writes the first)
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


@dataclass(frozen=True)
class Tracking:
    """Where runs, artifacts and registered models live, and the client that reaches them.

    Build it once per entry point (`from_settings`) and pass it down; two `Tracking` objects for
    two stores can be used side by side. `fluent` changes process-wide state for the duration of
    its block, so two threads must not run fluent blocks against different stores at once.
    """

    tracking_uri: str
    registry_uri: str
    artifact_root: str | None = None  # None: the tracking server's own artifact root

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracking:
        """The configured store: ``SEXTANT_MLFLOW_*`` settings, else the home's sqlite database."""
        return cls(settings.tracking_uri, settings.registry_uri, settings.artifact_root)

    @functools.cached_property
    def client(self) -> MlflowClient:
        """An ``MlflowClient`` bound to this store's tracking and registry URIs."""
        from mlflow import MlflowClient

        self._prepare()
        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def _prepare(self) -> None:
        """Create the directory of a sqlite database (MLflow creates the file, not its parents)."""
        for uri in (self.tracking_uri, self.registry_uri):
            if uri.startswith("sqlite:///"):  # sqlite:////abs/path.db or sqlite:///relative.db
                database = unquote(uri.removeprefix("sqlite:///").split("?", 1)[0])
                if database and database != ":memory:":
                    Path(database).parent.mkdir(parents=True, exist_ok=True)

    def experiment_id(self, name: str) -> str:
        """The experiment's id, created (artifacts under ``artifact_root``) if it does not exist."""
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return str(found.experiment_id)
        location = (
            None if self.artifact_root is None else f"{self.artifact_root.rstrip('/')}/{name}"
        )
        return str(self.client.create_experiment(name, artifact_location=location))

    def alias_version(self, model: str, alias: str) -> Any | None:
        """The registered model's version under ``alias``, or None when there is none."""
        from mlflow.exceptions import MlflowException

        try:
            return self.client.get_model_version_by_alias(model, alias)
        except MlflowException:
            return None

    def download(self, *, run_id: str | None = None, path: str = "", uri: str | None = None) -> str:
        """Download a run's artifact (``run_id`` + ``path``) or any artifact URI (``models:/...``).

        A ``models:/`` URI is resolved inside `fluent`: MLflow 3.17 looks registered models up
        through the process-wide registry URI, whatever ``registry_uri`` it is given.
        """
        import mlflow

        self._prepare()
        scope = self.fluent() if uri is not None and uri.startswith("models:") else nullcontext()
        with scope:
            return str(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=uri,
                    run_id=run_id,
                    artifact_path=path if run_id is not None else None,
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.registry_uri,
                )
            )

    @contextmanager
    def fluent(self) -> Iterator[None]:
        """MLflow's fluent API (``mlflow.start_run``, ``mlflow.log_*``, ``mlflow.onnx.log_model``,
        ``mlflow.register_model``) pointed at this store for the block, then restored.

        The one place sextant touches MLflow's process-wide URIs: whatever another caller set
        (or did not set) before is back afterwards, so no code depends on a URI set elsewhere.
        """
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_state
        from mlflow.tracking._tracking_service import utils as tracking_state

        # MLflow keeps its URIs in module globals mirrored into environment variables, and its
        # public getters resolve defaults (they cannot tell "unset" apart), so the saved state is
        # read from there; MLflow's own _use_tracking_uri restores the tracking global.
        saved_registry = registry_state._registry_uri
        saved_environment = {name: os.environ.get(name) for name in _URI_VARIABLES}
        self._prepare()
        try:
            with tracking_state._use_tracking_uri(self.tracking_uri):
                mlflow.set_registry_uri(self.registry_uri)
                yield
        finally:
            registry_state._registry_uri = saved_registry
            for name, value in saved_environment.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def git_commit() -> str:
    """The source checkout's commit, or 'unknown' outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"
