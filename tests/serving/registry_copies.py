"""New registry versions copied from a champion, intact or with their weights changed."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
from onnx import numpy_helper

from serving.champions import _download_onnx, registry_client
from sextant.contracts import CHAMPION, REGISTERED_MODELS
from tests.serving.conftest import ServedHome

__all__ = ["copy_champion"]


def copy_champion(served_home: ServedHome, family: str, tmp_path: Path, *, tamper: bool) -> str:
    """Register a new version of ``family``'s model from a copy of its champion's artifacts
    (with one weight changed when ``tamper``), with the champion's tags; returns the version."""
    client = registry_client(served_home.settings)
    name = REGISTERED_MODELS[family]
    champion = client.get_model_version_by_alias(name, CHAMPION)
    source = _download_onnx(client, champion, name, served_home.settings.tracking_uri).parent
    target = tmp_path / f"{family}-{'tampered' if tamper else 'copy'}"
    shutil.copytree(source, target)
    if tamper:
        model = onnx.load(target / "model.onnx")
        for initializer in model.graph.initializer:
            values = numpy_helper.to_array(initializer)
            if values.dtype.kind == "f" and values.size > 1:
                changed = values.copy()
                changed.flat[:] = changed.flat[:] * 1.5 + 0.1
                initializer.CopyFrom(numpy_helper.from_array(changed, initializer.name))
        onnx.save(model, target / "model.onnx")
    version = client.create_model_version(name, str(target), tags=dict(champion.tags))
    return str(version.version)
