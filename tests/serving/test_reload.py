"""Hot reload: champions validated on their registration probe, swapped atomically, or refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from serving.champions import load_champions, registry_client
from serving.engine import DecisionEngine
from sextant.contracts import CHAMPION, REGISTERED_MODELS, ModelTag
from sextant.errors import ModelUnavailableError
from tests.serving.conftest import ServedHome
from tests.serving.registry_copies import copy_champion

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(served_home: ServedHome) -> Iterator[DecisionEngine]:
    built = DecisionEngine.from_settings(served_home.settings, account="reload")
    yield built
    built.close()


def test_every_champion_passes_its_registration_probe(served_home: ServedHome) -> None:
    champions = load_champions(served_home.settings)

    assert set(champions) == {"garch", "xgb", "lstm"}
    client = registry_client(served_home.settings)
    for champion in champions.values():
        tags = client.get_model_version(champion.model, champion.version).tags
        assert json.loads(tags[ModelTag.PROBE_OUTPUT])  # recorded at registration, non-empty


def test_an_unmoved_alias_reloads_nothing(engine: DecisionEngine) -> None:
    before = dict(engine.champions)

    outcome = engine.reload()

    assert not outcome.changed and outcome.versions == outcome.previous
    assert engine.champions == before  # the very same sessions


def test_the_aliases_are_looked_up_again_only_after_a_commit_to_the_registry(
    engine: DecisionEngine, served_home: ServedHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine.reload()  # looks the aliases up and keeps the registry's change token
    looked: list[int] = []
    lookup = engine.registry_versions

    def counted() -> dict[str, str]:
        looked.append(1)
        return lookup()

    monkeypatch.setattr(engine, "registry_versions", counted)

    assert not engine.reload().changed
    assert looked == []  # nothing committed to the registry since: nothing to look up

    client = registry_client(served_home.settings)
    version = engine.model_versions["xgb"]
    client.set_model_version_tag(REGISTERED_MODELS["xgb"], version, "touched", "yes")  # a commit
    assert not engine.reload().changed
    assert looked == [1]
    assert not engine.reload().changed and looked == [1]


def test_a_moved_alias_is_loaded_and_swapped(
    engine: DecisionEngine, served_home: ServedHome, tmp_path: Path
) -> None:
    client = registry_client(served_home.settings)
    name = REGISTERED_MODELS["xgb"]
    old = engine.model_versions["xgb"]
    new = copy_champion(served_home, "xgb", tmp_path, tamper=False)
    client.set_registered_model_alias(name, CHAMPION, new)
    try:
        outcome = engine.reload()
        assert outcome.changed and outcome.previous["xgb"] == old
        assert outcome.versions["xgb"] == new == engine.model_versions["xgb"]
        batch = engine.decide(now=served_home.last_close + timedelta(minutes=5))
        assert all(d.model_versions["xgb"] == new for d in batch.made)
    finally:
        client.set_registered_model_alias(name, CHAMPION, old)
    assert engine.reload().versions["xgb"] == old


def test_a_tampered_model_is_refused_and_the_old_one_keeps_serving(
    engine: DecisionEngine, served_home: ServedHome, tmp_path: Path
) -> None:
    client = registry_client(served_home.settings)
    name = REGISTERED_MODELS["lstm"]
    old_versions = engine.model_versions
    old_session = engine.champions["lstm"].session
    bad = copy_champion(served_home, "lstm", tmp_path, tamper=True)
    client.set_registered_model_alias(name, CHAMPION, bad)
    try:
        with pytest.raises(ModelUnavailableError, match=rf"{name} version {bad}: probe output"):
            engine.reload()
        assert engine.model_versions == old_versions
        assert engine.champions["lstm"].session is old_session
        decisions = engine.evaluate(now=served_home.last_close + timedelta(minutes=5))
        assert all(0.0 < d.models.p_lstm < 1.0 for d in decisions)
    finally:
        client.set_registered_model_alias(name, CHAMPION, old_versions["lstm"])


def test_an_unreadable_artifact_is_refused(
    engine: DecisionEngine, served_home: ServedHome, tmp_path: Path
) -> None:
    client = registry_client(served_home.settings)
    name = REGISTERED_MODELS["garch"]
    old = engine.model_versions["garch"]
    broken = copy_champion(served_home, "garch", tmp_path, tamper=False)
    path = Path(client.get_model_version(name, broken).source) / "model.onnx"
    path.write_bytes(b"\x00not an onnx graph" + np.arange(64, dtype=np.uint8).tobytes())
    client.set_registered_model_alias(name, CHAMPION, broken)
    try:
        with pytest.raises(ModelUnavailableError, match="onnxruntime cannot open"):
            engine.reload()
        assert engine.model_versions["garch"] == old
    finally:
        client.set_registered_model_alias(name, CHAMPION, old)
