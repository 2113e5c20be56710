"""The trade-review web page served by the decision service (docs/review_page.md)."""

from __future__ import annotations

from serving.web.routes import ReviewBackend, add_review_page, review_router

__all__ = ["ReviewBackend", "add_review_page", "review_router"]
