"""The registry's ``champion`` models as onnxruntime sessions, checked against the feature services.

The decision engine serves only ONNX: each family's ``champion`` version is downloaded from the
MLflow registry (an ``MlflowClient`` bound to the settings' URIs; `serving/` may not import
`models/`) and opened with onnxruntime on the CPU. No torch, no xgboost, no arch.

Start-up validation: a champion's recorded feature service must be the one the online read
fetches for its family (`sextant.contracts.FEATURE_SERVICES`), and its recorded ordered feature
list must be that service's (`features.definitions.service_features`, which the Feast declarations
and their test share); anything else is a ``ConfigError`` naming model, version and the features
that differ. A family without a champion is absent (its output is NaN), never an error.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from features.change_token import ChangeToken, sqlite_uri_path
from features.definitions import service_features
from features.feast_store import MATERIALIZE_HINT
from sextant.contracts import (
    CHAMPION,
    FAMILIES,
    FEATURE_SERVICES,
    REGISTERED_MODELS,
    VOLATILITY_FAMILIES,
    ModelTag,
)
from sextant.errors import ConfigError, ModelUnavailableError
from sextant.settings import Settings

if TYPE_CHECKING:
    import onnxruntime
    from mlflow import MlflowClient

    from features.feast_store import FeastStore

__all__ = [
    "Champion",
    "champion_versions",
    "check_features",
    "check_probe",
    "check_registry",
    "load_champions",
    "registry_change_token",
    "registry_client",
]

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"  # what `mlflow.onnx.log_model` writes inside the model's artifacts
LOGGED_MODEL_PREFIX = "models:/m-"  # a version's source when registered from a logged model


@dataclass(frozen=True)
class Champion:
    """One family's champion: its registry identity, recorded input, and an ONNX session."""

    family: str
    model: str  # registered model name
    version: str
    feature_service: str
    features: tuple[str, ...]
    session: onnxruntime.InferenceSession = field(repr=False)
    metadata: Mapping[str, str] = field(default_factory=dict, repr=False)  # ONNX metadata props

    @property
    def label(self) -> str:
        """``<model> version <n>``, for messages."""
        return f"{self.model} version {self.version}"


def registry_change_token(settings: Settings) -> ChangeToken:
    """Change tokens of the settings' model registry: a new token after any commit to its
    SQLite database (an alias move among them); no token for a registry server, which a
    caller must then ask (`features.change_token`)."""
    return ChangeToken(sqlite_uri_path(settings.registry_uri))


def registry_client(settings: Settings) -> MlflowClient:
    """An ``MlflowClient`` bound to the settings' tracking and registry URIs (no global state)."""
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri, registry_uri=settings.registry_uri)


def check_features(
    family: str, label: str, service: str | None, recorded: str | None
) -> tuple[str, tuple[str, ...]]:
    """The champion's feature service and ordered features, once they match what is served.

    Raises ``ConfigError`` naming the model version and the features that differ.
    """
    expected_service = FEATURE_SERVICES[family]
    if service != expected_service:
        raise ConfigError(
            f"{label} was trained on feature service {service!r}; the engine serves "
            f"{family} from {expected_service!r}: retrain, or promote a matching version"
        )
    served = service_features(service)
    if recorded is None and family in VOLATILITY_FAMILIES:
        # GARCH is fitted on its service's return series alone and records no feature list
        return service, served
    try:
        features = tuple(json.loads(recorded or "null") or ())
    except (TypeError, ValueError):
        raise ConfigError(f"{label}: tag {ModelTag.FEATURES!r} is not a JSON list") from None
    if features != served:
        missing = [f for f in served if f not in features]
        extra = [f for f in features if f not in served]
        order = "" if missing or extra else " (same features, other order)"
        raise ConfigError(
            f"{label} reads features that {service!r} does not serve{order}: "
            f"not in the model {missing}, not in the service {extra}; retrain on the "
            "current service or rebuild the features it was trained on"
        )
    return service, features


def load_champions(
    settings: Settings, *, client: MlflowClient | None = None
) -> dict[str, Champion]:
    """Every family's champion, checked and opened; a family without one is left out.

    ``ConfigError`` when a champion does not match its feature service; ``ModelUnavailableError``
    when its ONNX artifact cannot be downloaded or opened (a registry that lies about a model
    is not something to serve around).
    """
    client = client or registry_client(settings)
    champions: dict[str, Champion] = {}
    for family in FAMILIES:
        version = _champion_version(client, REGISTERED_MODELS[family])
        if version is None:
            log.warning("no %s champion registered: its output is unavailable", family)
            continue
        champions[family] = _open(client, family, version, settings.tracking_uri)
    return champions


def champion_versions(settings: Settings, *, client: MlflowClient | None = None) -> dict[str, str]:
    """Family → the version its ``champion`` alias points at now (families without one left out)."""
    client = client or registry_client(settings)
    versions = {}
    for family in FAMILIES:
        found = _champion_version(client, REGISTERED_MODELS[family])
        if found is not None:
            versions[family] = str(found.version)
    return versions


def _champion_version(client: MlflowClient, model: str) -> Any | None:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(model, CHAMPION)
    except MlflowException:  # no such model, or no such alias
        return None


def _open(client: MlflowClient, family: str, version: Any, tracking_uri: str) -> Champion:
    import onnx
    import onnxruntime

    from serving.garch_window import windowed_model

    label = f"{version.name} version {version.version}"
    tags = dict(version.tags or {})
    service, features = check_features(
        family, label, tags.get(ModelTag.FEATURE_SERVICE), tags.get(ModelTag.FEATURES)
    )
    path = _download_onnx(client, version, label, tracking_uri)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1  # single-row requests: threads cost more than they give
    try:
        session = onnxruntime.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise ModelUnavailableError(f"{label}: onnxruntime cannot open {path}: {exc}") from exc
    check_probe(family, label, session, path.parent, tags)
    if family in VOLATILITY_FAMILIES:  # the one-step graph over a whole window, one call
        try:
            windowed = windowed_model(onnx.load(path)).SerializeToString()
            session = onnxruntime.InferenceSession(
                windowed, options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelUnavailableError(f"{label}: cannot build its window graph: {exc}") from exc
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    log.info("serving %s (%s)", label, service)
    return Champion(
        family=family,
        model=str(version.name),
        version=str(version.version),
        feature_service=service,
        features=features,
        session=session,
        metadata=metadata,
    )


def check_probe(
    family: str,
    label: str,
    session: onnxruntime.InferenceSession,
    model_dir: Path,
    tags: Mapping[str, str],
) -> float:
    """Run the registered graph on the input example logged with it and compare the output with
    the one recorded at registration (tag ``probe_output``), within the version's recorded
    parity figure; returns the difference. ``ModelUnavailableError`` when it differs, or when
    the version has no probe: the artifact is then not known to be the model that passed parity.
    """
    import mlflow

    recorded = tags.get(ModelTag.PROBE_OUTPUT)
    if recorded is None:
        raise ModelUnavailableError(
            f"{label} has no {ModelTag.PROBE_OUTPUT!r} tag (registered before probes were "
            "recorded): retrain it (`sextant train`) to serve it"
        )
    relative = family in VOLATILITY_FAMILIES
    figure = tags.get("parity_max_rel_err" if relative else "parity_max_abs_err")
    tolerance = max(float(figure or 0.0), PROBE_FLOOR[relative])
    try:
        expected = np.asarray(json.loads(recorded), dtype=np.float64)
        example: Any = mlflow.models.Model.load(str(model_dir)).load_input_example(str(model_dir))
        feeds = {
            i.name: np.asarray(example[i.name]).astype(_ONNX_TYPES[i.type])
            for i in session.get_inputs()
        }
        output = session.run([session.get_outputs()[0].name], feeds)[0]
        got = np.asarray(output, dtype=np.float64).ravel()
    except Exception as exc:  # a missing example, a graph that cannot run it
        raise ModelUnavailableError(f"{label}: its probe cannot run: {exc}") from exc
    if got.shape != expected.shape:
        raise ModelUnavailableError(
            f"{label}: probe output has shape {got.shape}, {expected.shape} at registration"
        )
    scale = np.maximum(np.abs(expected), np.finfo(np.float64).tiny) if relative else 1.0
    error = float(np.max(np.abs(got - expected) / scale, initial=0.0))
    if not error <= tolerance:  # NaN fails too
        kind = "relative" if relative else "absolute"
        raise ModelUnavailableError(
            f"{label}: probe output {got.tolist()} differs from the one recorded at "
            f"registration {expected.tolist()} by {error:.3g} ({kind}), beyond its parity "
            f"figure {tolerance:.3g}: the artifact is not the model that was registered"
        )
    return error


# the smallest tolerance a probe gets: a parity figure of 0 still allows the last bits that a
# different CPU's kernels may round differently (absolute for probabilities, relative for
# variances)
PROBE_FLOOR: Mapping[bool, float] = {False: 1e-7, True: 1e-9}
_ONNX_TYPES = {"tensor(float)": np.float32, "tensor(double)": np.float64, "tensor(int64)": np.int64}


def _download_onnx(client: MlflowClient, version: Any, label: str, tracking_uri: str) -> Path:
    """The version's ONNX file, downloaded through explicit URIs.

    MLflow 3.17 resolves ``models:/`` URIs through the process-wide registry URI, so the logged
    model's own artifact location is used (or, for versions registered from a run path, the
    version's source), never the global state.
    """
    import mlflow

    source = str(version.source)
    model_id = getattr(version, "model_id", None)
    if not model_id and source.startswith(LOGGED_MODEL_PREFIX):
        model_id = source.removeprefix("models:/")
    try:
        if model_id:
            source = client.get_logged_model(model_id).artifact_location
        local = Path(
            mlflow.artifacts.download_artifacts(artifact_uri=source, tracking_uri=tracking_uri)
        )
    except Exception as exc:  # any store error: the artifact is not there to serve
        raise ModelUnavailableError(f"{label}: cannot download {source}: {exc}") from exc
    path = local / ONNX_FILE if local.is_dir() else local
    if not path.is_file():
        raise ModelUnavailableError(f"{label}: no {ONNX_FILE} in {source}")
    return path


def check_registry(champions: Mapping[str, Champion], feast: FeastStore) -> None:
    """Each champion's feature service is registered in Feast with the features it reads.

    ``ConfigError`` names the model version and the features that differ (or the missing service).
    """
    if not champions:
        return
    registry = feast.paths.feast_dir / "registry.db"
    if not registry.is_file():
        raise ConfigError(f"no Feast registry in {registry.parent}; {MATERIALIZE_HINT}")
    from feast.errors import FeatureServiceNotFoundException

    for champion in champions.values():
        try:
            registered = feast.store.get_feature_service(champion.feature_service)
        except FeatureServiceNotFoundException:
            raise ConfigError(
                f"{champion.label} reads feature service {champion.feature_service!r}, which "
                f"the Feast registry of {registry.parent} lacks; {MATERIALIZE_HINT}"
            ) from None
        names = {f.name for p in registered.feature_view_projections for f in p.features}
        if names != set(champion.features):
            raise ConfigError(
                f"{champion.label}: the Feast registry's {champion.feature_service!r} serves "
                f"other features: not registered {sorted(set(champion.features) - names)}, "
                f"not in the model {sorted(names - set(champion.features))}; {MATERIALIZE_HINT}"
            )
