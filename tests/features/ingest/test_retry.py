"""The shared retry delay: doubling backoff, Retry-After honoured, a longer ask than the cap refused."""

from __future__ import annotations

import pytest

from features.ingest.sources.fear_greed import FearGreedSource
from features.ingest.sources.retry import parse_retry_after, retry_delay
from sextant.errors import SourceUnavailableError
from tests.fakes.alt_data_server import load_fng_rows, serve_alt_data


@pytest.mark.parametrize(
    ("attempt", "retry_after", "expected"),
    [
        (1, None, 0.5),
        (2, None, 1.0),
        (4, None, 3.0),
        (1, 2.5, 2.5),
        (3, 0.1, 2.0),
        (1, 3.0, 3.0),
        (1, 3.5, None),
    ],
)
def test_retry_delay(attempt: int, retry_after: float | None, expected: float | None) -> None:
    assert retry_delay(attempt, base_s=0.5, cap_s=3.0, retry_after_s=retry_after) == expected


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"Retry-After": "Wed, 21 Oct 2015"}, None),
        ({}, None),
        (None, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str] | None, expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_http_source_refuses_a_retry_after_beyond_its_cap() -> None:
    slept: list[float] = []
    with serve_alt_data(load_fng_rows().head(10)) as server:
        server.fail_next(429, retry_after="120")
        source = FearGreedSource(server.url("/fng/"), backoff_max_s=60, sleep=slept.append)
        with pytest.raises(SourceUnavailableError, match="asks to wait 120 s"):
            list(source.batches(_NoCursor()))
    assert slept == []


class _NoCursor:
    def last_event_ts(self, *args: object, **kwargs: object) -> None:
        return None
