"""Tz-aware UTC helpers: every timestamp in sextant is UTC and carries its zone."""

from __future__ import annotations

from datetime import UTC, datetime

__all__ = ["from_epoch_ms", "parse_utc", "to_epoch_ms"]


def parse_utc(value: str) -> datetime:
    """Parse an ISO date or timestamp; a value without a zone is read as UTC."""
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def to_epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch of a tz-aware datetime."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: sextant only handles tz-aware UTC timestamps")
    return int(moment.timestamp() * 1000)


def from_epoch_ms(ms: int) -> datetime:
    """Tz-aware UTC datetime from epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC)
