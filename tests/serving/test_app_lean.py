"""The decision endpoints' lean path (`serving.app._LeanDecisions`): which requests it takes, and
that it serves exactly the routes FastAPI documents, with their request models.

What it answers over real HTTP, compared with FastAPI's route answering the same request, is in
test_app.py ("lean path" tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from starlette.exceptions import HTTPException as StarletteHTTPException

from serving.app import _LEAN_ROUTES, _lean_body, _registered_handler, create_app
from serving.schemas import BatchDecisionRequest, DecisionRequest
from sextant.errors import (
    ConfigError,
    DataValidationError,
    ModelUnavailableError,
    RecordConflictError,
    SextantError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from sextant.settings import load_settings

ONE = json.dumps({"symbol": "BTC/USDT", "account": "lean-1"}).encode()


def scope(content_type: bytes | None = b"application/json") -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1")]
    if content_type is not None:
        headers.append((b"content-type", content_type))
    return {"type": "http", "method": "POST", "path": "/v1/decisions", "headers": headers}


def request(body: bytes, *, more: bytes | None = None) -> list[dict[str, Any]]:
    """The body's ASGI messages (``more``: a second chunk)."""
    if more is None:
        return [{"type": "http.request", "body": body, "more_body": False}]
    return [
        {"type": "http.request", "body": body, "more_body": True},
        {"type": "http.request", "body": more, "more_body": False},
    ]


@pytest.mark.parametrize(
    "content_type",
    [
        b"application/json",
        b"application/json; charset=utf-8",
        b"Application/JSON",
        b" application/json ",
    ],
)
def test_a_valid_json_body_declared_json_is_taken(content_type: bytes) -> None:
    body = _lean_body(DecisionRequest, scope(content_type), request(ONE))

    assert body == DecisionRequest(symbol="BTC/USDT", account="lean-1")


def test_a_body_in_several_chunks_is_joined() -> None:
    body = _lean_body(
        BatchDecisionRequest, scope(), request(b'{"symbols": ["BTC/U', more=b'SDT"]}')
    )

    assert body == BatchDecisionRequest(symbols=["BTC/USDT"])


@pytest.mark.parametrize(
    ("content_type", "messages"),
    [
        # FastAPI's rules on the content type stay FastAPI's: no type is a 422 (strict content
        # type), a +json type is parsed; either way the route answers
        (None, request(ONE)),
        (b"text/plain", request(ONE)),
        (b"application/merge-patch+json", request(ONE)),
        (b"application/json, text/plain", request(ONE)),
        # not strict UTF-8 JSON (json.loads would take some of these: the route decides)
        (b"application/json", request(b"\xef\xbb\xbf" + ONE)),  # a byte-order mark
        (b"application/json", request(b'{"symbol": NaN}')),
        (b"application/json", request(b'{"symbol": "\\ud800"}')),  # a lone surrogate
        (b"application/json", request(b'{"symbol": "BTC/USDT"')),  # cut short
        (b"application/json", request(b"")),
        # valid JSON the model refuses: the route's 422 names the problem
        (b"application/json", request(b"{}")),
        (b"application/json", request(b'{"symbol": "BTC/USDT", "acount": "x"}')),
        (b"application/json", request(b'{"symbol": "BTC/USDT", "account": "../etc"}')),
        (b"application/json", request(b"null")),
        # the client left before the body ended
        (b"application/json", [*request(ONE[:5], more=b"")[:1], {"type": "http.disconnect"}]),
    ],
)
def test_anything_else_is_left_to_the_route(
    content_type: bytes | None, messages: list[dict[str, Any]]
) -> None:
    assert _lean_body(DecisionRequest, scope(content_type), messages) is None


def test_a_batch_with_repeated_symbols_is_left_to_the_route() -> None:
    messages = request(b'{"symbols": ["BTC/USDT", "BTC/USDT"]}')

    assert _lean_body(BatchDecisionRequest, scope(), messages) is None


def test_the_lean_routes_are_the_documented_routes_with_the_same_request_models(
    tmp_path: Path,
) -> None:
    app = create_app(load_settings(home=tmp_path))

    paths = app.openapi()["paths"]

    assert set(_LEAN_ROUTES) == {("POST", "/v1/decisions"), ("POST", "/v1/decisions/batch")}
    for (method, path), (model, _) in _LEAN_ROUTES.items():
        body = paths[path][method.lower()]["requestBody"]["content"]["application/json"]
        assert body["schema"]["$ref"] == f"#/components/schemas/{model.__name__}"


def test_errors_are_answered_by_the_handler_the_app_registered_for_their_class(
    tmp_path: Path,
) -> None:
    handlers = create_app(load_settings(home=tmp_path)).exception_handlers

    class NarrowerConflictError(ConfigError):
        """Not registered itself: its nearest registered base class answers."""

    for exc, registered in [
        (
            UnknownSymbolError("DOGE/USDT is not traded here", symbol="DOGE/USDT"),
            UnknownSymbolError,
        ),
        (RecordConflictError("another writer won", record_id="x"), RecordConflictError),
        (DataValidationError("bad"), DataValidationError),
        (ConfigError("clash"), ConfigError),
        (SourceUnavailableError("busy"), SourceUnavailableError),
        (ModelUnavailableError("gone"), ModelUnavailableError),
        (NarrowerConflictError("clash"), ConfigError),
    ]:
        assert _registered_handler(handlers, exc) is handlers[registered], exc
    # an HTTPException: by its status where one is registered, else by class (Starlette's base)
    assert _registered_handler(handlers, HTTPException(404)) is handlers[StarletteHTTPException]
    by_status: dict[Any, Callable[..., Any]] = {**handlers, 404: lambda *_: None}
    assert _registered_handler(by_status, HTTPException(404)) is by_status[404]
    # without a handler (here: the base class, a plain error) the exception propagates: a 500
    assert _registered_handler(handlers, SextantError("no handler")) is None
    assert _registered_handler(handlers, RuntimeError("bug")) is None
    with_server_error: dict[Any, Callable[..., Any]] = {**handlers, Exception: lambda *_: None}
    assert _registered_handler(with_server_error, RuntimeError()) is None
