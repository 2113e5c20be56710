"""The uvicorn factory of ``sextant serve``: the decision service with the explainer plugged in.

`serving` may not import `agents` (DESIGN.md), so the app knows the explainer only by its port
(`serving.explain_port.Explainer`); this composition-root factory builds the real one
(`agents.explain.service.ExplainService`: the LLM when OPENAI_BASE_URL or OPENAI_API_KEY is set,
the offline explainer otherwise) and hands it to `serving.app.create_app`. Imports are lazy, as
everywhere in the CLI.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app_with_explainer"]


def app_with_explainer() -> Any:
    """Settings from the environment, runtime set up, the app with its explainer."""
    from agents.explain.service import ExplainService
    from serving.app import create_app
    from sextant.runtime import init_runtime
    from sextant.settings import load_settings

    settings = load_settings()
    init_runtime(settings)
    return create_app(settings, explainer=ExplainService(settings))
