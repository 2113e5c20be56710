"""docs/features.md is the registry rendered: a feature cannot be documented and missing, or vice versa."""

from __future__ import annotations

from pathlib import Path

from features.definitions import FEATURES
from features.docs import render_markdown

DOCS = Path(__file__).resolve().parents[2] / "docs" / "features.md"


def test_docs_match_the_registry() -> None:
    assert DOCS.read_text(encoding="utf-8") == render_markdown(), (
        "run: python -m scripts.gen_feature_docs"
    )


def test_every_feature_is_documented_once() -> None:
    # the per-kind tables, before the services (a one-feature service lists its feature alone)
    tables = DOCS.read_text(encoding="utf-8").split("## Feature services")[0]
    for feature in FEATURES:
        assert tables.count(f"| `{feature.name}` |") == 1, feature.name
