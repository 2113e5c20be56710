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

from features.ingest.sources.retry import parse_retry_after, retry_delay
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
            retry_after = parse_retry_after(response.headers)
        if attempt == max_tries:
            raise SourceUnavailableError(
                f"{shown}: gave up after {max_tries} tries; last failure: {problem}"
            )
        delay = retry_delay(
            attempt, base_s=backoff_s, cap_s=backoff_max_s, retry_after_s=retry_after
        )
        if delay is None:
            raise SourceUnavailableError(
                f"{shown}: the server asks to wait {retry_after:.0f} s (Retry-After), more than the "
                f"backoff cap of {backoff_max_s:g} s; giving up after {attempt} tries; last failure: {problem}"
            )
        log.warning(
            "%s: %s (try %d of %d), retrying in %.1f s", shown, problem, attempt, max_tries, delay
        )
        sleep(delay)
    raise AssertionError("unreachable: the last try returns or raises")
