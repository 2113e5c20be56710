"""sextant: ML-driven crypto trading decisions (shared domain package)."""

from __future__ import annotations

__version__ = "0.1.0"
