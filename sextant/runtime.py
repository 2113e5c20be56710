"""Process-wide setup done only by entry points (CLI, flows, app factory): logging and telemetry."""

from __future__ import annotations

import logging
import os

from sextant.settings import Settings

__all__ = ["TELEMETRY_OFF", "configure_logging", "disable_telemetry", "init_runtime"]

# Each library's documented switch; setdefault keeps an explicit user choice.
TELEMETRY_OFF: dict[str, str] = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "FEAST_USAGE": "False",
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "DO_NOT_TRACK": "1",
}


def disable_telemetry() -> None:
    """Turn third-party telemetry off unless the user already set the variable."""
    for name, value in TELEMETRY_OFF.items():
        os.environ.setdefault(name, value)


def configure_logging(level: str = "INFO") -> None:
    """Configure the root logger once; library code only ever calls ``logging.getLogger``."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    # one line per HTTP request of every client library is noise at INFO, and so is Feast's
    # "Registry cache expired, so refreshing" on reads
    for chatty in ("httpx", "httpcore", "urllib3", "feast.infra.registry.registry"):
        logging.getLogger(chatty).setLevel(max(logging.WARNING, logging.getLogger().level))


def init_runtime(settings: Settings) -> None:
    """Everything an entry point does before real work (before Prefect/MLflow are imported)."""
    if not settings.telemetry:
        disable_telemetry()
    # Prefect keeps its (ephemeral) server database under the sextant home unless told otherwise,
    # so two homes never share orchestration state.
    # A fresh Prefect home migrates its database on the first start, which can take longer than
    # Prefect's 20 s default on a cold 2-core machine.
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    if "PREFECT_HOME" not in os.environ:
        settings.paths.prefect_dir.mkdir(parents=True, exist_ok=True)
        os.environ["PREFECT_HOME"] = str(settings.paths.prefect_dir)
    configure_logging(settings.log_level)
