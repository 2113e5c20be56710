"""The served home (tests/served_home.py) for the decision engine's and the service's tests."""

from __future__ import annotations

from tests.served_home import ServedHome

__all__ = ["ServedHome"]
