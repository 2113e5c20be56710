"""FastAPI's own OpenTelemetry instrumentation stays off unless the settings turn telemetry on.

FastAPI (0.150) records a span, metrics and logs for every request as soon as the process has an
OpenTelemetry provider, which a library of the process (MLflow's tracing) can install. Each case
runs in a process of its own: the global provider can be set once per process.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.processes import ROOT

SCRIPT = """
import sys
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
trace.set_tracer_provider(provider)

from starlette.testclient import TestClient

from serving.app import create_app
from sextant.settings import load_settings

settings = load_settings(home=sys.argv[1]).model_copy(update={"telemetry": sys.argv[2] == "on"})
answer = TestClient(create_app(settings)).get("/no-such-path")  # no start-up: no engine needed
assert answer.status_code == 404, answer.status_code
print(len(exporter.get_finished_spans()))
"""


def spans(home: Path, telemetry: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(home), telemetry],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return int(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize(("telemetry", "recorded"), [("off", False), ("on", True)])
def test_fastapi_records_spans_only_when_telemetry_is_on(
    tmp_path: Path, telemetry: str, recorded: bool
) -> None:
    # Act
    count = spans(tmp_path, telemetry)
    # Assert: with a provider installed, FastAPI's spans appear only when the settings allow them
    assert (count > 0) is recorded, count
