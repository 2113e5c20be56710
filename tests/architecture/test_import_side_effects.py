"""Importing any module of ours has no side effects: no files written, no environment changed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("sextant", "features", "models", "serving", "agents", "flows")

# Third-party libraries with import-time effects of their own (prefect creates its home directory)
# are imported first; what is measured is what importing *our* modules adds.
PROBE = """
import importlib, json, os, pathlib, pkgutil, sys
import prefect, duckdb, pandas  # noqa: F401
def files():
    return sorted(str(p) for p in pathlib.Path.cwd().rglob("*") if "__pycache__" not in p.parts)
before = dict(os.environ)
files_before = files()
names = []
for pkg in {packages!r}:
    module = importlib.import_module(pkg)
    names.append(pkg)
    for info in pkgutil.walk_packages(module.__path__, pkg + "."):
        if info.name.endswith("__main__"):
            continue
        importlib.import_module(info.name)
        names.append(info.name)
changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))
created = sorted(set(files()) - set(files_before))
print(json.dumps({{"modules": names, "env_changed": changed, "created": created}}))
"""


def test_importing_every_module_changes_nothing(tmp_path: Path) -> None:
    # Arrange: an empty working directory (cwd and HOME), so any file created by an import shows up
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("SEXTANT_", "PREFECT_", "MLFLOW_"))
    }
    env["HOME"] = str(tmp_path)
    env["PYTHONPATH"] = str(ROOT)

    # Act
    proc = subprocess.run(
        [sys.executable, "-c", PROBE.format(packages=PACKAGES)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    # Assert
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "features.ingest.store" in report["modules"] and "flows.ingest" in report["modules"]
    assert report["env_changed"] == []
    assert report["created"] == []
