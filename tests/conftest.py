"""Test-wide guards and fixtures: no internet, telemetry off, one private SEXTANT_HOME per test."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sextant.runtime import disable_telemetry
from tests.served_home import served_home

__all__ = ["served_home"]  # a session fixture: one trained home for every test that asks

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

_real_connect = socket.socket.connect


def _loopback_only(self: socket.socket, address: object) -> None:
    """Refuse any connection that would leave this machine: tests talk to loopback servers only."""
    if isinstance(address, tuple) and self.family in (socket.AF_INET, socket.AF_INET6):
        host = str(address[0])
        try:
            allowed = ipaddress.ip_address(host).is_loopback
        except ValueError:
            allowed = host == "localhost"
        if not allowed:
            raise ConnectionRefusedError(
                f"tests may not reach {host}: only loopback servers are allowed"
            )
    _real_connect(self, address)  # type: ignore[arg-type]


def pytest_configure(config: pytest.Config) -> None:
    disable_telemetry()
    socket.socket.connect = _loopback_only  # type: ignore[method-assign]
    # no LLM unless a test starts its own loopback one: a developer's OPENAI_* (environment or
    # .env; an empty variable wins over .env and reads as unset) must not turn offline tests,
    # or the CLIs they start, into LLM calls
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
        os.environ[name] = ""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SEXTANT_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("SEXTANT_HOME", str(path))
    yield path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real multi-year data under ../shared/data (tests may read it; the package must not need it).

    A user's clone has no ../shared: the tests that need it are skipped there, each saying why.
    CI has it, so under CI (``CI`` set) its absence is an error, never a silent skip.
    """
    if not SHARED_DATA.is_dir():
        message = (
            f"needs the multi-year market data at {SHARED_DATA} (../shared/data beside the "
            "repository; the bundled sample covers everything else)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI runs every test: {message}")
        pytest.skip(message)
    return SHARED_DATA
