"""The retry delay every source uses: exponential backoff that honours a server's Retry-After.

A server asking to wait longer than the backoff cap is not argued with: the caller gives up
(``SourceUnavailableError``) instead of retrying early or hanging.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["parse_retry_after", "retry_delay"]


def parse_retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds of a numeric ``Retry-After`` header, or None (absent, or the rare HTTP-date form)."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def retry_delay(
    attempt: int, *, base_s: float, cap_s: float, retry_after_s: float | None
) -> float | None:
    """Seconds to sleep before try ``attempt + 1``; None when the server asks for more than the cap."""
    if retry_after_s is not None and retry_after_s > cap_s:
        return None
    backoff = min(base_s * 2.0 ** (attempt - 1), cap_s)
    return backoff if retry_after_s is None else max(backoff, retry_after_s)
