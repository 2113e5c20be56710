"""Render the feature registry as Markdown (`docs/features.md` is generated from it, never edited)."""

from __future__ import annotations

from features.definitions import (
    FEATURE_SERVICES,
    FEATURE_TTL,
    FEATURE_VIEWS,
    FEATURES,
    GARCH_WINDOW,
    SERVICE_VECTOR_VIEWS,
    VECTOR_FIELD,
    Kind,
    max_warmup,
    vector_layout,
)
from features.online import GARCH_VARIANCE_TOLERANCE

__all__ = ["render_markdown"]

HEADER = """# Features

Generated from `features/definitions.py` by `python -m scripts.gen_feature_docs`; a test fails when
this file and the registry disagree. Windows and warm-ups count bars of the series' timeframe.
Every value at a bar is known at that bar's close (`available_at` = open + timeframe); Feast joins
training rows on it. Alternative data is joined backwards on its own `available_at` and stays
null when missing or stale. Labels (`features/labels.py`) never enter a feature view.
"""

ONLINE_VECTORS = """Training frames join the per-kind views above. The online read of a service reads one
packed value instead: `<view>:{field}`, written by `sextant features build` with Feast's
point-in-time rule (each view's latest row at or before the close, at most {ttl_days} days old).
A vector holds the service's last `window` rows of its symbol, oldest first, each row in the
service's feature order (row-major: value `k * features + j` is feature `j` of row `k`); rows are
bar closes, and rows before the symbol's first bar are NaN. Each table records its feature order
and window; a table packed for another layout is refused at materialization. A Feast online read
costs per feature and per view; one packed value is one sqlite row, and `FeastStore.online_read`
fetches every service's vector of the symbols in one read. Tests hold each packed row equal to
the training frame's rows up to that bar, and the latest row equal to Feast's feature-by-feature
read of the service.

What the decision engine makes of them (`features/online.py`): the TA signal and XGBoost read the
latest row; the LSTM's ONNX input is the window's last `seq_len` rows; GARCH's one-step variance
is recomputed from the window of log returns with the registered ONNX recursion (null returns
skipped, as training skips them), so it advances with every bar. The recursion forgets its start
as beta^n: with {garch_window} returns and beta <= 0.95 (hourly BTC/ETH fits: 0.63-0.84) the
variance is within {tolerance} (relative) of the variance filtered over the whole history, unless
the variance moved about 30-fold within the window; training checks it for the fitted parameters
before registering.
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
        ONLINE_VECTORS.format(
            field=VECTOR_FIELD,
            ttl_days=FEATURE_TTL.days,
            garch_window=GARCH_WINDOW,
            tolerance=f"{GARCH_VARIANCE_TOLERANCE:.0e}",
        ),
        "| service | vector view | window (rows) | values |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| `{name}` | `{view}` | {vector_layout(name).window} | {vector_layout(name).size} |"
        for name, view in SERVICE_VECTOR_VIEWS.items()
    ]
    return "\n".join(lines) + "\n"
