"""The online decision service: a FastAPI app over one `DecisionEngine` per process.

``create_app`` builds the app (tests pass an engine and a clock); ``app_from_env`` is the
uvicorn factory that ``sextant serve`` runs (``--workers N`` starts N processes, each with its
own engine; the decisions store arbitrates their writes). Endpoints, errors and metrics:
docs/serving.md, "HTTP API".

Endpoints are ``async`` and call the engine directly: a decision takes well under a millisecond,
and the event loop serialises engine access. Only the champion reload (MLflow downloads, new
onnxruntime sessions) and registry reads run in worker threads; the engine swaps its champions
in one assignment, so a decision in flight finishes on the set it started with.

The two decision endpoints answer a well-formed JSON request on a lean path (`_LeanDecisions`,
inside the app's middleware) with the same functions as their FastAPI routes, which answer
everything else (malformed bodies, other content types) and document them.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import gc
import inspect
import json
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request, Response, status
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from fastapi.telemetry import TelemetryConfig
from prometheus_client import make_asgi_app
from pydantic import AwareDatetime, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match, Route

from serving.auth import check_bearer
from serving.champions import registry_client
from serving.checkpointer import Checkpointer
from serving.decisions_store import DecisionsStore
from serving.engine import DecisionBatch, DecisionEngine, ReloadOutcome
from serving.explain_port import Explainer, ExplainSubject
from serving.metrics import ServiceMetrics
from serving.schemas import (
    ACCOUNT_PATTERN,
    MAX_PAGE,
    AdminResetRequest,
    AnomalyPage,
    AnomalyRecord,
    BatchDecisionRequest,
    BatchDecisionResponse,
    ChatRequest,
    DecisionFields,
    DecisionPage,
    DecisionRecord,
    DecisionRequest,
    DecisionResponse,
    ErrorResponse,
    ExplainRequest,
    ExplanationResponse,
    GateResponse,
    GateStatusOut,
    HealthResponse,
    KillSwitchRequest,
    LatestMark,
    ModelFamilyOut,
    ModelsResponse,
    PortfolioResponse,
    PositionOut,
    ReadinessResponse,
    ReloadRequest,
    ReloadResponse,
    SignalResponse,
)
from serving.web import ReviewBackend, add_review_page
from sextant.contracts import CHAMPION, FAMILIES, REGISTERED_MODELS, ModelTag
from sextant.decision import Action, RiskGate
from sextant.errors import (
    ConfigError,
    DataValidationError,
    ModelUnavailableError,
    RecordConflictError,
    SextantError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from sextant.settings import Settings, load_settings

__all__ = ["RETRY_AFTER_S", "app_from_env", "create_app"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

RETRY_AFTER_S = 5  # a locked store or market file frees up within a few seconds
CHECKPOINT_INTERVAL_S = 1.0  # the service folds the WAL this often (`serving.checkpointer`)
_ONE_MICROSECOND = timedelta(microseconds=1)  # the store's timestamp resolution
_ACCOUNT_QUERY = Query(
    pattern=ACCOUNT_PATTERN,
    description="Paper account (1-64 of A-Z a-z 0-9 _ . -); default: SEXTANT_PAPER_ACCOUNT.",
)
# documents the admin endpoints' scheme in /docs; `check_bearer` decides (401 or 403 otherwise)
_BEARER = HTTPBearer(auto_error=False, description="SEXTANT_ADMIN_TOKEN")
_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (404, 409, 413, 503)
}
_EXPLAIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (404, 413, 503)
}
_ADMIN_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 409, 503)
}


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _finite(value: Any) -> Any:
    """``value`` with every NaN and infinity as None: JSON has neither."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


class _Service:
    """What the routes share: settings, the engine (set by the lifespan), clock and metrics."""

    def __init__(
        self,
        settings: Settings,
        engine: DecisionEngine | None,
        clock: Clock,
        explainer: Explainer | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.clock = clock
        self.explainer = explainer
        self.metrics = ServiceMetrics(self._served_models, self._store)
        self.reload_lock = asyncio.Lock()
        self._tags: dict[tuple[str, str], Mapping[str, str]] = {}

    @property
    def live(self) -> DecisionEngine:
        """The engine; 503 before the lifespan built it (or after it closed)."""
        if self.engine is None:
            raise SourceUnavailableError(
                "the decision engine is not running (starting or stopping)"
            )
        return self.engine

    def account(self, requested: str | None) -> str:
        return requested or self.live.account

    @property
    def explaining(self) -> Explainer:
        """The explainer; 503 when this app was built without one."""
        if self.explainer is None:  # no Retry-After: it will not appear by waiting
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                "explanations are not available: this service runs without an explainer "
                "(`sextant serve` starts one; an app built by create_app(explainer=None) has none)",
            )
        return self.explainer

    def _store(self) -> DecisionsStore | None:
        return None if self.engine is None else self.engine.store

    def _served_models(self) -> dict[str, tuple[str, str]]:
        engine = self.engine
        if engine is None:
            return {}
        return {family: (c.model, c.version) for family, c in engine.champions.items()}

    async def reload(self, *, force: bool, trigger: str) -> ReloadOutcome:
        """Reload the champions in a worker thread, one reload at a time; failures counted."""
        engine = self.live
        async with self.reload_lock:
            try:
                outcome = await asyncio.to_thread(engine.reload, force=force)
            except Exception:
                self.metrics.reload_failures.labels(trigger).inc()
                raise
        if force or outcome.changed:
            self.metrics.reloads.labels(trigger).inc()
        return outcome

    async def version_tags(self, model: str, version: str) -> Mapping[str, str]:
        """A registered version's tags (read once per version, in a worker thread)."""
        key = (model, version)
        if key not in self._tags:
            try:
                found = await asyncio.to_thread(
                    lambda: registry_client(self.settings).get_model_version(model, version)
                )
            except Exception as exc:  # MLflow's errors are untyped; the registry may be away
                raise SourceUnavailableError(
                    f"the model registry did not answer for {model} version {version} "
                    f"({type(exc).__name__}); retry"
                ) from exc
            self._tags[key] = dict(found.tags or {})
        return self._tags[key]

    def observe_batch(self, batch: DecisionBatch) -> None:
        self.metrics.observe_decisions(batch.made)
        self.metrics.observe_feature_age(batch.feature_age_bars)
        if batch.made:
            self.metrics.observe_trading_state(batch.account, batch.made[-1].risk.state)


def _json_response(payload: Mapping[str, Any]) -> Response:
    """``payload`` as strict JSON (NaN and infinities as null, datetimes in ISO 8601)."""
    return Response(orjson.dumps(payload), media_type="application/json")


def _decision_payloads(batch: DecisionBatch) -> list[dict[str, Any]]:
    """Each record as stored (its JSON text sent on as it is), with how it was answered."""
    made = {d.symbol for d in batch.made}
    return [
        {
            "decision": orjson.Fragment(text),
            "stored": symbol not in made,
            "model_versions": dict(batch.versions),
            "feature_age_bars": _finite(float(batch.feature_age_bars[symbol])),
        }
        for symbol, text in zip(batch.symbols, batch.texts, strict=True)
    ]


def _decide_one(service: _Service, body: DecisionRequest) -> Response:
    """``POST /v1/decisions``: one symbol decided (or answered from the store), recorded."""
    engine = service.live
    batch = engine.decide([body.symbol], now=service.clock(), account=service.account(body.account))
    service.observe_batch(batch)
    return _json_response(_decision_payloads(batch)[0])


def _decide_batch(service: _Service, body: BatchDecisionRequest) -> Response:
    """``POST /v1/decisions/batch``: the symbols decided in one engine call, in request order."""
    account = service.account(body.account)
    batch = service.live.decide(body.symbols, now=service.clock(), account=account)
    service.observe_batch(batch)
    return _json_response(
        {
            "ts": batch.ts,
            "account": account,
            "model_versions": dict(batch.versions),
            "decisions": _decision_payloads(batch),
        }
    )


# --- pagination: keyset on (ts, symbol), newest bar first ---------------------------------------


def _cursor(record: Mapping[str, Any]) -> str:
    raw = json.dumps([record["ts"], record["symbol"]], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _parse_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        ts_text, symbol = json.loads(raw)
        ts = datetime.fromisoformat(ts_text)
        if not isinstance(symbol, str) or ts.utcoffset() is None:
            raise ValueError("not a (ts, symbol) pair")
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT,
            f"cursor {cursor!r} is not a cursor this service issued (pass next_cursor as is)",
        ) from exc
    return ts, symbol


def _page(
    store: DecisionsStore,
    *,
    account: str,
    symbol: str | None,
    action: str | None,
    since: datetime | None,
    limit: int,
    cursor: str | None,
) -> dict[str, Any]:
    """One page after ``cursor``: the rest of the cursor's bar (symbols after its symbol), then
    older bars; read in one snapshot, so records written meanwhile cannot shift the page."""
    records: list[dict[str, Any]] = []
    end: datetime | None = None

    def read(n: int, start: datetime | None, end: datetime | None) -> list[dict[str, Any]]:
        return store.latest(n, account=account, symbol=symbol, action=action, start=start, end=end)

    with store.snapshot():
        if cursor is not None:
            ts, after = _parse_cursor(cursor)
            if since is not None and since > ts:
                return {"decisions": [], "next_cursor": None}
            bar_end = ts + _ONE_MICROSECOND
            at_bar = store.count(
                account=account, symbol=symbol, action=action, start=ts, end=bar_end
            )
            # the store orders a bar's records by symbol: keep those after the cursor's
            records = [r for r in read(at_bar, ts, bar_end) if r["symbol"] > after]
            end = ts
        wanted = limit + 1 - len(records)  # one more than the page: is there a next page?
        if wanted > 0:
            records += read(wanted, since, end)
    page = records[:limit]
    more = len(records) > limit
    return {"decisions": page, "next_cursor": _cursor(page[-1]) if more else None}


# --- middleware: body limit and request metrics -------------------------------------------------


class _ServiceMiddleware:
    """Refuses bodies over ``settings.max_body_bytes`` (413, counted as they arrive, so chunked
    bodies without Content-Length too), hands a well-formed decision request to ``lean`` and
    everything else to the app, and times every request per route template."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: _Service,
        routes: Callable[[], list[BaseRoute]],
        lean: _LeanDecisions,
    ) -> None:
        self.app = app
        self.service = service
        self.routes = routes
        self.lean = lean

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500  # what the client gets when an exception escapes
        template: str | None = None

        async def send_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = int(message["status"])
            await send(message)

        try:
            body = await self._body(scope, receive)
            if body is None:
                limit = self.service.settings.max_body_bytes
                refused = JSONResponse(
                    {"detail": f"request body over {limit} bytes (SEXTANT_MAX_BODY_BYTES)"},
                    status_code=status.HTTP_413_CONTENT_TOO_LARGE,
                )
                await refused(scope, receive, send_status)
                return
            if await self.lean(scope, body, receive, send_status):
                template = scope["path"]  # the lean path serves exactly its routes' templates
                return
            await self.app(scope, _replay(body, receive), send_status)
        finally:
            self.service.metrics.observe_request(
                template or self._template(scope),
                scope["method"],
                status_code,
                time.perf_counter() - started,
            )

    async def _body(self, scope: Scope, receive: Receive) -> list[Message] | None:
        """The request's messages up to the end of its body, or None past the limit."""
        limit = self.service.settings.max_body_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return None
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages  # a disconnect: the app sees it as it is
            size += len(message.get("body", b""))
            if size > limit:
                return None
            if not message.get("more_body", False):
                return messages

    def _template(self, scope: Scope) -> str:
        route = scope.get("route")
        if route is None:  # refused before routing (413) or no route (404)
            route = next((r for r in self.routes() if r.matches(scope)[0] == Match.FULL), None)
        return str(getattr(route, "path", None) or "unmatched")


# --- the decision endpoints' lean path ----------------------------------------------------------

_Body = TypeVar("_Body", DecisionRequest, BatchDecisionRequest)
_JSON_MEDIA_TYPE = b"application/json"


def _lean_body(model: type[_Body], scope: Scope, messages: Sequence[Message]) -> _Body | None:
    """The request body as ``model`` when FastAPI's route would take it as is: a complete,
    non-empty body declared ``Content-Type: application/json`` that parses as strict JSON
    (orjson: UTF-8, RFC 8259, so never where FastAPI's ``json.loads`` would refuse, and to the
    same value) and validates. None otherwise: the route then answers as it always did (its 422
    naming the problem, its content-type rules)."""
    content_type = next(
        (value for name, value in scope["headers"] if name == b"content-type"), None
    )
    if content_type is None or content_type.split(b";", 1)[0].strip().lower() != _JSON_MEDIA_TYPE:
        return None
    if messages[-1]["type"] != "http.request":  # the client left: the route sees it as it is
        return None
    body = b"".join(m.get("body", b"") for m in messages)
    if not body:
        return None
    try:
        return model.model_validate(orjson.loads(body))
    except (orjson.JSONDecodeError, ValidationError):
        return None


class _LeanDecisions:
    """``POST /v1/decisions`` and ``POST /v1/decisions/batch`` without FastAPI's per-request
    machinery (route matching over every route, the request object, dependency solving,
    the exception middleware's wrapping): about 0.4 ms a request on the 2-core development VM,
    half a decision's own time.

    The same functions as the routes (`_decide_one`, `_decide_batch`) on the same validated
    request models; an error is answered by the handler the app registered for its type (the
    same lookup by class hierarchy as Starlette's), an exception without one propagates as it
    would from the route (a 500). A request this path does not take (not JSON, invalid, another
    method or path, a ``root_path``) goes to the app: FastAPI's routes stay the reference and
    the OpenAPI documentation. The body limit and the request metrics (`_ServiceMiddleware`)
    apply to both."""

    def __init__(
        self, service: _Service, handlers: Callable[[], Mapping[Any, Callable[..., Any]]]
    ) -> None:
        """``handlers``: the app's exception handlers by exception class (read per error)."""
        self.service = service
        self.handlers = handlers

    async def __call__(
        self, scope: Scope, messages: list[Message], receive: Receive, send: Send
    ) -> bool:
        """Answer the request (its body ``messages``) and return True, or leave it untouched
        and return False."""
        route = _LEAN_ROUTES.get((scope["method"], scope["path"]))
        if route is None or scope.get("root_path"):
            return False
        model, answer = route
        body = _lean_body(model, scope, messages)
        if body is None:
            return False
        try:
            response = answer(self.service, body)
        except Exception as exc:
            handler = _registered_handler(self.handlers(), exc)
            if handler is None:
                raise
            handled = handler(Request(scope), exc)
            response = await handled if inspect.isawaitable(handled) else handled
        await response(scope, receive, send)
        return True


def _registered_handler(
    handlers: Mapping[Any, Callable[..., Any]], exc: Exception
) -> Callable[..., Any] | None:
    """The handler FastAPI's exception middleware picks for ``exc`` among the app's: by status
    for an ``HTTPException``, else the first class of ``exc``'s hierarchy registered
    (``Exception`` itself is the server-error handler's, which answers the 500 outside)."""
    if isinstance(exc, StarletteHTTPException) and exc.status_code in handlers:
        return handlers[exc.status_code]
    return next(
        (handlers[c] for c in type(exc).__mro__ if c in handlers and c is not Exception), None
    )


# (method, path) → the request model and the function answering it (see `_LeanDecisions`)
_LEAN_ROUTES: dict[tuple[str, str], tuple[type[Any], Callable[[_Service, Any], Response]]] = {
    ("POST", "/v1/decisions"): (DecisionRequest, _decide_one),
    ("POST", "/v1/decisions/batch"): (BatchDecisionRequest, _decide_batch),
}


class _AsgiEndpoint:
    """An ASGI app as a route's endpoint (a plain function would be taken for a handler)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(reversed(messages))

    async def replayed() -> Message:
        return pending.pop() if pending else await receive()

    return replayed


# --- errors -------------------------------------------------------------------------------------


def _error(code: int, exc: Exception, **headers: str) -> JSONResponse:
    return JSONResponse({"detail": str(exc)}, status_code=code, headers=headers or None)


def _add_error_handlers(app: FastAPI) -> None:
    """Typed errors become their status with the error's message; never a 500 for these."""

    async def unknown_symbol(request: Request, exc: Exception) -> Response:
        return _error(status.HTTP_404_NOT_FOUND, exc)

    async def conflict(request: Request, exc: Exception) -> Response:
        return _error(status.HTTP_409_CONFLICT, exc)

    async def invalid(request: Request, exc: Exception) -> Response:
        return _error(status.HTTP_422_UNPROCESSABLE_CONTENT, exc)

    async def unavailable(request: Request, exc: Exception) -> Response:
        return _error(
            status.HTTP_503_SERVICE_UNAVAILABLE, exc, **{"Retry-After": str(RETRY_AFTER_S)}
        )

    app.add_exception_handler(UnknownSymbolError, unknown_symbol)
    app.add_exception_handler(RecordConflictError, conflict)  # another writer won the bar
    app.add_exception_handler(DataValidationError, invalid)
    app.add_exception_handler(ConfigError, conflict)  # the request clashes with the setup
    app.add_exception_handler(SourceUnavailableError, unavailable)
    app.add_exception_handler(ModelUnavailableError, unavailable)


# --- explanations -------------------------------------------------------------------------------


async def _explain(
    service: _Service, subject: ExplainSubject, subject_id: str, question: str | None
) -> dict[str, Any]:
    """The explainer's record for ``subject``/``subject_id``, run in a worker thread; an unknown
    decision id is refused (404) before the explainer is asked, an unknown anomaly id or symbol
    by the explainer's typed error (404 too)."""
    explainer = service.explaining
    if subject == "decision" and service.live.store.get(subject_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision with id {subject_id!r}")
    return await _answer(lambda: explainer.explain(subject, subject_id, question))


async def _answer(call: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a blocking explainer call in a worker thread; its unknown-record error (a
    `DataValidationError` naming a ``record_id``, e.g. an anomaly id) becomes a 404."""
    try:
        return await asyncio.to_thread(call)
    except DataValidationError as exc:
        if getattr(exc, "record_id", None) is None or isinstance(exc, RecordConflictError):
            raise
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc


# --- routes -------------------------------------------------------------------------------------


def _routes(service: _Service) -> APIRouter:
    router = APIRouter()

    def admin(
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_BEARER)],
    ) -> None:
        check_bearer(request.headers.get("authorization"), service.settings.admin_token)

    # The decision endpoints answer the store's records as they are (strict JSON already: NaN
    # was stored as null), serialized once with orjson: validating a full record into pydantic
    # models and back cost more than the decision itself. The response models document them.
    # A well-formed JSON request to either is answered by `_LeanDecisions` (same function,
    # without FastAPI's per-request machinery); these routes answer the rest and document them.
    @router.post("/v1/decisions", response_model=DecisionResponse, responses=_ERRORS)
    async def decide_one(body: DecisionRequest) -> Response:
        """Decide one symbol at the latest bar close, act on the paper book, record it (a bar
        already decided for the account is answered from the store: ``stored``)."""
        return _decide_one(service, body)

    @router.post("/v1/decisions/batch", response_model=BatchDecisionResponse, responses=_ERRORS)
    async def decide_batch(body: BatchDecisionRequest) -> Response:
        """Decide several symbols in one engine call: one online read, one run per champion."""
        return _decide_batch(service, body)

    @router.get("/v1/decisions", response_model=DecisionPage, responses=_ERRORS)
    async def list_decisions(
        symbol: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[
            AwareDatetime | None, Query(description="only bars closing at or after this")
        ] = None,
        action: Action | None = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        account: Annotated[str | None, _ACCOUNT_QUERY] = None,
    ) -> Response:
        """An account's decisions, newest bar first (then by symbol), ``limit`` per page."""
        return _json_response(
            _page(
                service.live.store,
                account=service.account(account),
                symbol=symbol,
                action=None if action is None else action.value,
                since=since,
                limit=limit,
                cursor=cursor,
            )
        )

    @router.get("/v1/decisions/{decision_id}", response_model=DecisionRecord, responses=_ERRORS)
    async def get_decision(decision_id: str) -> Response:
        """One recorded decision by its id."""
        record = service.live.store.get(decision_id)
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no decision with id {decision_id!r}")
        return _json_response(record)

    @router.get("/v1/anomalies", response_model=AnomalyPage, responses=_ERRORS)
    async def list_anomalies(
        kind: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z0-9_]+$")] = None,
        category: Annotated[str | None, Query(pattern=r"^(market|data|model)$")] = None,
        symbol: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[
            AwareDatetime | None, Query(description="only anomalies at bars at or after this")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> AnomalyPage:
        """What the monitor found (`sextant monitor`, the `monitor` flow), newest bar first,
        each with its statistic, threshold and evidence."""
        found = service.live.store.anomalies(
            limit, kind=kind, category=category, symbol=symbol, start=since
        )
        return AnomalyPage(anomalies=[AnomalyRecord.model_validate(_finite(a)) for a in found])

    @router.post("/v1/explain", response_model=ExplanationResponse, responses=_EXPLAIN_ERRORS)
    async def explain(body: ExplainRequest) -> Response:
        """Explain a decision or an anomaly (by id) or the market for a symbol, grounded in the
        recorded evidence (``grounded: false`` with the failed claims when the guard gave up)."""
        record = await _explain(service, body.subject, body.id, body.question)
        return _json_response(record)

    @router.post("/v1/chat", response_model=ExplanationResponse, responses=_EXPLAIN_ERRORS)
    async def chat(body: ChatRequest) -> Response:
        """Answer one message of a trade-review chat; the session keeps its history."""
        explainer = service.explaining
        return _json_response(await _answer(lambda: explainer.chat(body.session_id, body.message)))

    @router.get("/v1/signals/{symbol:path}", response_model=SignalResponse, responses=_ERRORS)
    async def signal(
        symbol: str, account: Annotated[str | None, _ACCOUNT_QUERY] = None
    ) -> SignalResponse:
        """What the decision for ``symbol`` would be now, with every component; nothing is
        recorded or submitted."""
        account = service.account(account)
        (decision,) = service.live.evaluate([symbol], now=service.clock(), account=account)
        service.metrics.observe_feature_age({symbol: decision.feature_age_bars})
        return SignalResponse(
            account=account, signal=DecisionFields.model_validate(_finite(decision.as_record()))
        )

    @router.get("/v1/models", response_model=ModelsResponse, responses=_ERRORS)
    async def models() -> ModelsResponse:
        """Per family, the champion served (registry version, features, its recorded metrics)."""
        return await _models(service)

    @router.get("/v1/portfolio", response_model=PortfolioResponse, responses=_ERRORS)
    async def portfolio(account: Annotated[str | None, _ACCOUNT_QUERY] = None) -> PortfolioResponse:
        """The account's paper book, its latest equity mark and its risk gate."""
        return _portfolio(service, account)

    @router.post(
        "/v1/admin/reload",
        response_model=ReloadResponse,
        responses=_ADMIN_ERRORS,
        dependencies=[Depends(admin)],
    )
    async def reload(body: ReloadRequest | None = None) -> ReloadResponse:
        """Load the registry's champions now (``force``: even when no alias moved)."""
        force = body is not None and body.force
        engine = service.live
        try:
            outcome = await service.reload(force=force, trigger="admin")
        except Exception as exc:
            code = (
                status.HTTP_409_CONFLICT
                if isinstance(exc, ConfigError)
                else status.HTTP_503_SERVICE_UNAVAILABLE
            )
            raise HTTPException(
                code,
                f"reload failed, still serving {engine.model_versions}: "
                f"{type(exc).__name__}: {exc}",
            ) from exc
        return ReloadResponse(
            changed=outcome.changed,
            versions=dict(outcome.versions),
            previous=dict(outcome.previous),
        )

    @router.post(
        "/v1/admin/kill-switch",
        response_model=GateResponse,
        responses=_ADMIN_ERRORS,
        dependencies=[Depends(admin)],
    )
    async def kill_switch(body: KillSwitchRequest) -> GateResponse:
        """Engage or release the account's kill switch (engaged: every decision is flat)."""
        account = service.account(body.account)
        change = RiskGate.engage_kill_switch if body.engaged else RiskGate.release_kill_switch
        gate = service.live.set_gate(change, account)
        service.metrics.observe_trading_state(account, gate.state)
        return GateResponse(account=account, gate=_gate_out(gate))

    @router.post(
        "/v1/admin/reset",
        response_model=GateResponse,
        responses=_ADMIN_ERRORS,
        dependencies=[Depends(admin)],
    )
    async def reset(body: AdminResetRequest | None = None) -> GateResponse:
        """Operator reset of the account's gate (ends a drawdown episode or a breaker halt)."""
        account = service.account(None if body is None else body.account)
        gate = service.live.set_gate(RiskGate.reset, account)
        service.metrics.observe_trading_state(account, gate.state)
        return GateResponse(account=account, gate=_gate_out(gate))

    @router.get("/healthz", response_model=HealthResponse)
    async def healthz() -> HealthResponse:
        """The process is up and answering."""
        return HealthResponse()

    @router.get(
        "/readyz", response_model=ReadinessResponse, responses={503: {"model": ReadinessResponse}}
    )
    async def readyz(response: Response) -> ReadinessResponse:
        """Ready when a champion is loaded and every symbol's features are fresh by the clock;
        503 with the reasons otherwise."""
        engine = service.live
        limit = engine.config.risk.max_feature_age_bars
        reasons = []
        if not engine.champions:
            reasons.append("no champion loaded: promote models (`sextant promote`), then reload")
        ages: dict[str, float] = {}
        try:
            ages = {d.symbol: d.feature_age_bars for d in engine.evaluate(now=service.clock())}
        except SextantError as exc:
            reasons.append(f"the decision path fails: {type(exc).__name__}: {exc}")
        service.metrics.observe_feature_age(ages)
        stale = {s: a for s, a in ages.items() if not a <= limit}  # NaN/inf: no features
        if stale:
            described = ", ".join(f"{s} {a:g} bars old" for s, a in stale.items())
            reasons.append(f"stale features: {described} (limit {limit} bars)")
        if reasons:
            response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return ReadinessResponse(
            ready=not reasons,
            reasons=reasons,
            model_versions=engine.model_versions,
            feature_age_bars=_finite(ages),
            max_feature_age_bars=limit,
        )

    return router


async def _models(service: _Service) -> ModelsResponse:
    """Per family, the champion served (``GET /v1/models``, the review page's status bar)."""
    champions = service.live.champions
    families = []
    for family in FAMILIES:
        champion = champions.get(family)
        if champion is None:
            families.append(
                ModelFamilyOut(
                    family=family, registered_model=REGISTERED_MODELS[family], present=False
                )
            )
            continue
        tags = await service.version_tags(champion.model, champion.version)
        families.append(
            ModelFamilyOut(
                family=family,
                registered_model=champion.model,
                present=True,
                alias=CHAMPION,
                version=champion.version,
                feature_service=champion.feature_service,
                features=list(champion.features),
                reported_metrics=_json_tag(tags, ModelTag.REPORTED_METRICS),
                selection_metrics=_json_tag(tags, ModelTag.SELECTION_METRICS),
            )
        )
    return ModelsResponse(families=families)


def _portfolio(service: _Service, requested: str | None) -> PortfolioResponse:
    """The account's paper book, latest mark and gate (``GET /v1/portfolio``, the status bar)."""
    engine = service.live
    account = service.account(requested)
    broker, gate = engine.account_state(account)
    marks = engine.store.marks(account, limit=1)
    mark = marks[-1] if marks else None
    positions: list[PositionOut] = []
    equity = cash = engine.execution.initial_equity
    realized = unrealized = 0.0
    if broker is not None:
        pending = broker.pending_orders()
        positions = [
            PositionOut(symbol=s, units=u, pending_order_units=pending.get(s))
            for s, u in broker.units().items()
        ]
        snapshot = broker.to_snapshot()
        equity, cash = broker.equity, snapshot["cash"]
        realized, unrealized = snapshot["realized"], snapshot["unrealized"]
    if mark is not None:
        cash, realized, unrealized = mark.cash, mark.realized, mark.unrealized
    service.metrics.observe_trading_state(account, gate.state)
    return PortfolioResponse(
        account=account,
        opened=broker is not None,
        last_bar_open=None if broker is None else broker.last_bar_open,
        equity=_finite(equity),
        cash=_finite(cash),
        realized=_finite(realized),
        unrealized=_finite(unrealized),
        positions=positions,
        latest_mark=None if mark is None else LatestMark(**_finite(_mark_fields(mark))),
        trading_state=gate.state,
        gate=_gate_out(gate),
    )


def _json_tag(tags: Mapping[str, str], key: str) -> dict[str, Any] | None:
    """A version's JSON tag as a mapping (None when absent or not a JSON object)."""
    raw = tags.get(key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        log.warning("tag %s is not JSON; left out", key)
        return None
    return _finite(value) if isinstance(value, dict) else None


def _gate_out(gate: RiskGate) -> GateStatusOut:
    s = gate.status()
    return GateStatusOut(
        state=s.state,
        halt_reasons=list(s.halt_reasons),
        kill_switch=s.kill_switch,
        peak_equity=_finite(s.peak_equity),
        day_start_equity=_finite(s.day_start_equity),
        orders_today=s.orders_today,
        consecutive_errors=s.consecutive_errors,
    )


def _mark_fields(mark: Any) -> dict[str, Any]:
    return {
        name: getattr(mark, name)
        for name in ("bar_open", "equity", "cash", "realized", "unrealized", "fees", "funding")
    }


# --- the app ------------------------------------------------------------------------------------


def _review_backend(service: _Service) -> ReviewBackend:
    """What the review page reads: the service's own store, paging, book, models, explainer."""

    def page(**filters: Any) -> dict[str, Any]:
        return _page(service.live.store, account=service.account(None), **filters)

    async def explain(subject: ExplainSubject, subject_id: str) -> dict[str, Any]:
        return await _explain(service, subject, subject_id, None)

    return ReviewBackend(
        settings=service.settings,
        store=lambda: service.live.store,
        account=lambda: service.account(None),
        page=page,
        portfolio=lambda: _portfolio(service, None),
        models=lambda: _models(service),
        explain=explain,
        has_explainer=lambda: service.explainer is not None,
    )


async def _reload_forever(service: _Service) -> None:
    """Poll the registry's aliases every ``reload_interval_s``; a failure keeps the old models."""
    while True:
        await asyncio.sleep(service.settings.reload_interval_s)
        try:
            await service.reload(force=False, trigger="interval")
        except Exception as exc:
            log.warning(
                "champion reload failed, still serving %s: %s: %s",
                service.live.model_versions,
                type(exc).__name__,
                exc,
            )


_FASTAPI_TELEMETRY_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def create_app(
    settings: Settings | None = None,
    *,
    engine: DecisionEngine | None = None,
    clock: Clock | None = None,
    explainer: Explainer | None = None,
) -> FastAPI:
    """The decision service over ``engine`` (default: built from ``settings`` at start-up and
    closed at shutdown); ``clock`` gives the ``now`` of every decision (default: UTC now);
    ``explainer`` answers ``/v1/explain``, ``/v1/chat`` and the review page's explanations
    (None: those answer 503)."""
    if settings is None:
        settings = engine.settings if engine is not None else load_settings()
    service = _Service(settings, engine, clock or _utc_now, explainer)
    owned = engine is None

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if owned:
            service.engine = await asyncio.to_thread(DecisionEngine.from_settings, settings)
            # what start-up loaded (Feast, MLflow, onnxruntime, the engine) lives as long as
            # the process: kept out of the collector's generations, so that a full collection
            # during a request walks only what requests allocate
            gc.collect()
            gc.freeze()
        poller = asyncio.create_task(_reload_forever(service), name="sextant-champion-reload")
        # the WAL folded every second off the decision path (`serving.checkpointer`)
        checkpointer = Checkpointer(settings.paths.decisions_db, CHECKPOINT_INTERVAL_S).start()
        try:
            yield
        finally:
            poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await poller
            await asyncio.to_thread(checkpointer.stop)
            if owned and service.engine is not None:
                service.engine.close()
                service.engine = None

    app = FastAPI(
        title="sextant decision service",
        summary="Risk-gated trading decisions from the registry's champion models.",
        version="1",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry spans, metrics and logs (on by default whenever a process
        # has an OpenTelemetry provider, which MLflow's tracing can install): off unless the
        # settings turn third-party telemetry on, like every library's (`sextant.runtime`)
        telemetry=None if settings.telemetry else _FASTAPI_TELEMETRY_OFF,
    )
    app.include_router(_routes(service))
    add_review_page(app, _review_backend(service))
    exporter = make_asgi_app(registry=service.metrics.registry)
    # `/metrics` itself (Prometheus' default path, no redirect), and the mount for `/metrics/`
    app.router.routes.append(
        Route("/metrics", _AsgiEndpoint(exporter), methods=["GET"], include_in_schema=False)
    )
    app.mount("/metrics", exporter)
    _add_error_handlers(app)
    lean = _LeanDecisions(service, lambda: app.exception_handlers)
    app.add_middleware(_ServiceMiddleware, service=service, routes=lambda: app.routes, lean=lean)
    return app


def app_from_env() -> FastAPI:
    """The uvicorn factory of ``sextant serve``: settings from the environment, runtime set up."""
    from sextant.runtime import init_runtime

    settings = load_settings()
    init_runtime(settings)
    return create_app(settings)
