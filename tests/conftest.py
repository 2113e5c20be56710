"""Test-wide guards and fixtures: no internet, telemetry off, one private SEXTANT_HOME per test."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from sextant.runtime import disable_telemetry

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


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh SEXTANT_HOME for one test."""
    path = tmp_path / "home"
    monkeypatch.setenv("SEXTANT_HOME", str(path))
    yield path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data under ../shared/data (tests may read it; the package must not need it)."""
    if not SHARED_DATA.is_dir():
        pytest.fail(f"expected the shared data at {SHARED_DATA}")
    return SHARED_DATA
