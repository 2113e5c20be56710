"""Render the feature registry as Markdown (`docs/features.md` is generated from it, never edited)."""

from __future__ import annotations

from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_TTL,
    FEATURE_VIEWS,
    FEATURES,
    SERVICE_VECTOR_VIEWS,
    VECTOR_FIELD,
    Kind,
    max_warmup,
)

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
    lines += [
        "",
        "## Online vectors",
        "",
        "Training frames join the per-kind views above. The online read of a service",
        f"(`online_array`, `online_features`) reads one packed value instead: `<view>:{VECTOR_FIELD}`, "
        "the",
        "service's features in its order as of each bar close, written by `sextant features build`",
        "with Feast's point-in-time rule (each view's latest row at or before the close, at most",
        f"{FEATURE_TTL.days} days old). A Feast online read costs per feature and per view; one packed "
        "value is",
        "one sqlite row. Tests hold each packed row equal to the training frame at that bar and the",
        "online vector equal to Feast's feature-by-feature read of the service.",
        "",
        "| service | vector view |",
        "|---|---|",
    ]
    lines += [f"| `{name}` | `{view}` |" for name, view in SERVICE_VECTOR_VIEWS.items()]
    return "\n".join(lines) + "\n"
