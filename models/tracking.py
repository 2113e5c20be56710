"""MLflow tracking for sextant: one sqlite backend and artifact store per home.

Called by training and promotion (which entry points invoke); nothing here runs at import.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from sextant.paths import StatePaths

__all__ = [
    "EXPERIMENTS",
    "config_hash",
    "ensure_experiment",
    "git_commit",
    "tracking_uri",
    "use_home",
]

EXPERIMENTS = {
    "direction": "sextant-direction",
    "volatility": "sextant-volatility",
    "backtest": "sextant-backtest",
}
REPO_ROOT = Path(__file__).resolve().parents[1]


def tracking_uri(paths: StatePaths) -> str:
    """The home's MLflow backend (sqlite; a file store is refused by MLflow 3)."""
    return f"sqlite:///{paths.mlflow_dir / 'mlflow.db'}"


def use_home(paths: StatePaths) -> str:
    """Point MLflow's tracking and registry at the home; returns the URI."""
    import mlflow

    paths.mlflow_dir.mkdir(parents=True, exist_ok=True)
    uri = tracking_uri(paths)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def ensure_experiment(paths: StatePaths, name: str) -> str:
    """The experiment's id, creating it with artifacts under the home (not ./mlruns)."""
    import mlflow

    found = mlflow.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    location = (paths.mlflow_dir / "artifacts" / name).resolve().as_uri()
    return str(mlflow.create_experiment(name, artifact_location=location))


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def config_hash(config: Any) -> str:
    """Stable short hash of a configuration (dataclasses, dicts, scalars)."""
    payload = json.dumps(_plain(config), sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


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
