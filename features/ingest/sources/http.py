"""HTTP GET with the retry policy shared by the Fear & Greed and news sources.

Transient failures (connection errors, timeouts, 5xx, 429) are retried with exponential backoff
and a numeric ``Retry-After`` is honoured; a refused request (other 4xx) fails at once with
``SourceRequestError``, since asking again cannot help.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

import httpx

from sextant import __version__
from sextant.errors import (
    ConfigError,
    DataValidationError,
    SourceRequestError,
    SourceUnavailableError,
)

__all__ = [
    "DEFAULT_BACKOFF_MAX_S",
    "DEFAULT_BACKOFF_S",
    "DEFAULT_MAX_TRIES",
    "USER_AGENT",
    "fetch_with_retry",
]

log = logging.getLogger(__name__)

USER_AGENT = f"sextant/{__version__}"
DEFAULT_MAX_TRIES = 5
DEFAULT_BACKOFF_S = 1.0
DEFAULT_BACKOFF_MAX_S = 60.0


def fetch_with_retry(
    client: httpx.Client,
    url: str,
    *,
    params: Mapping[str, str | int] | None = None,
    max_tries: int = DEFAULT_MAX_TRIES,
    backoff_s: float = DEFAULT_BACKOFF_S,
    backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
    sleep: Callable[[float], None] = time.sleep,
) -> httpx.Response:
    """GET ``url``; retry transient failures with exponential backoff, then SourceUnavailableError."""
    shown = str(httpx.URL(url, params=dict(params or {})))
    if max_tries < 1:
        raise ConfigError(f"max_tries must be at least 1, got {max_tries} (fetching {shown})")
    for attempt in range(1, max_tries + 1):
        retry_after: float | None = None
        try:
            response = client.get(url, params=params)
        except httpx.TransportError as exc:  # connect/read/write errors and every timeout
            problem = f"{type(exc).__name__}: {exc}"
        except httpx.RequestError as exc:  # too many redirects, undecodable body: not transient
            raise DataValidationError(
                f"request failed: {type(exc).__name__}: {exc}", origin=shown
            ) from exc
        else:
            status = response.status_code
            if response.is_success:
                return response
            if status != 429 and status < 500:
                raise SourceRequestError(
                    f"{shown}: refused with HTTP {status} {response.reason_phrase}; check the URL"
                )
            problem = f"HTTP {status} {response.reason_phrase}"
            retry_after = _retry_after_s(response)
        if attempt == max_tries:
            raise SourceUnavailableError(
                f"{shown}: gave up after {max_tries} tries; last failure: {problem}"
            )
        delay = min(backoff_s * 2 ** (attempt - 1), backoff_max_s)
        if retry_after is not None:
            delay = min(max(delay, retry_after), backoff_max_s)
        log.warning(
            "%s: %s (try %d of %d), retrying in %.1f s", shown, problem, attempt, max_tries, delay
        )
        sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")


def _retry_after_s(response: httpx.Response) -> float | None:
    """Seconds from a numeric ``Retry-After`` header (the HTTP-date form is rare on APIs: ignored)."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None
