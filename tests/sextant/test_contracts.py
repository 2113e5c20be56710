"""The shared names: one definition, cheap to import, and what the other packages actually use."""

from __future__ import annotations

import subprocess
import sys

from sextant.contracts import (
    DECISION_FEATURES,
    DECISION_SERVICE,
    FAMILIES,
    FEATURE_SERVICES,
    ONLINE_SERVICES,
    REGISTERED_MODELS,
)


def test_every_family_has_a_registered_model_and_a_feature_service() -> None:
    assert set(REGISTERED_MODELS) == set(FAMILIES) == set(FEATURE_SERVICES)
    assert len(set(REGISTERED_MODELS.values())) == len(FAMILIES)


def test_the_feature_registry_declares_exactly_the_contract_services() -> None:
    from features.definitions import FEATURE_SERVICES as DECLARED

    # every family's service and the decision's own, each read online
    assert set(ONLINE_SERVICES) == {*FEATURE_SERVICES.values(), DECISION_SERVICE}
    assert len(ONLINE_SERVICES) == len(set(ONLINE_SERVICES))
    assert set(DECLARED) == set(ONLINE_SERVICES)


def test_the_decision_features_are_the_ones_its_kernels_read() -> None:
    from sextant.decision.signals import FEATURES_USED

    assert DECISION_FEATURES == FEATURES_USED


def test_importing_the_contract_pulls_in_no_heavy_library() -> None:
    # serving reads these names on its hot start-up path; they must not drag in models/ or ML stacks
    code = (
        "import sys, sextant.contracts; "
        "heavy = [m for m in ('models', 'features', 'torch', 'mlflow', 'feast', 'pandas', 'numpy') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
