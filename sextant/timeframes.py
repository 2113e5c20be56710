"""Bar timeframes ('15m', '1h', '1d') and their grid arithmetic."""

from __future__ import annotations

import re
from datetime import timedelta

from sextant.errors import ConfigError

__all__ = ["bars_per_year", "timeframe_ms", "timeframe_to_timedelta"]

_UNIT_MS = {"m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PATTERN = re.compile(r"^(\d+)([mhdw])$")
_YEAR_MS = 365 * 86_400_000  # the annualization year: 365 days of 24 hours (crypto trades daily)


def timeframe_ms(timeframe: str) -> int:
    """Length of one bar in milliseconds; raises ConfigError for an unknown timeframe."""
    match = _PATTERN.match(timeframe)
    if match is None or int(match.group(1)) == 0:
        raise ConfigError(f"unknown timeframe {timeframe!r}: expected e.g. '15m', '1h', '4h', '1d'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def timeframe_to_timedelta(timeframe: str) -> timedelta:
    """Length of one bar as a timedelta."""
    return timedelta(milliseconds=timeframe_ms(timeframe))


def bars_per_year(timeframe: str) -> float:
    """Bars in a 365-day year: the annualization factor of per-bar volatility and returns (8760 for 1h)."""
    return _YEAR_MS / timeframe_ms(timeframe)
