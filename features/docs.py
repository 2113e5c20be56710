"""Render the feature registry as Markdown (`docs/features.md` is generated from it, never edited)."""

from __future__ import annotations

from features.definitions import FEATURE_SERVICES, FEATURE_VIEWS, FEATURES, Kind, max_warmup

__all__ = ["render_markdown"]

HEADER = """# Features

Generated from `features/definitions.py` by `python -m scripts.gen_feature_docs`; a test fails when
this file and the registry disagree. Windows and warm-ups count bars of the series' timeframe.
Every value at a bar is known at that bar's close (`available_at` = open + timeframe); Feast joins
training rows on it. Alternative data is joined backwards on its own `available_at` and stays
null when missing or stale. Labels (`features/labels.py`) never enter a feature view.
"""


def render_markdown() -> str:
    """The whole docs page."""
    lines = [
        HEADER,
        f"A series needs {max_warmup() + 1} bars before every feature has a value.",
        "",
    ]
    for kind in Kind:
        lines += [
            f"## {FEATURE_VIEWS[kind]} ({kind.value})",
            "",
            "| feature | window | warm-up | available | description |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| `{f.name}` | {f.window} | {f.warmup} | {f.available} | {f.description} |"
            for f in FEATURES
            if f.kind is kind
        ]
        lines.append("")
    lines += [
        "## Feature services",
        "",
        "| service | features (in model input order) |",
        "|---|---|",
    ]
    lines += [
        f"| `{name}` | {', '.join(f'`{n}`' for n in names)} |"
        for name, names in FEATURE_SERVICES.items()
    ]
    return "\n".join(lines) + "\n"
