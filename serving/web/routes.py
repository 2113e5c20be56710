"""The trade-review page's routes: decisions, one decision's evidence, anomalies, explanations.

Everything is rendered on the server with Jinja2 (autoescape on: symbols, headlines, explanations
and chat answers are outside text) from the service's own store and state (`ReviewBackend`, built
by `serving.app`, so the page reads what the API answers without a second HTTP hop). A little
plain JavaScript (static/review.js) loads explanations, posts chat messages to ``/v1/chat`` and
holds the admin token in the tab's sessionStorage for the kill switch; the server never keeps it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import duckdb
from fastapi import APIRouter, FastAPI, HTTPException, Query, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from serving.decisions_store import DecisionsStore
from serving.explain_port import ExplainSubject
from serving.schemas import MAX_PAGE, ModelsResponse, PortfolioResponse
from serving.web.chart import PriceChart, build_chart, decision_levels, read_candles
from sextant.decision import Action
from sextant.errors import (
    ConfigError,
    DataValidationError,
    ModelUnavailableError,
    SextantError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["STATIC_DIR", "TEMPLATES_DIR", "ReviewBackend", "add_review_page", "review_router"]

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
_SUBJECTS: tuple[ExplainSubject, ...] = ("decision", "anomaly", "market")
_Text = Annotated[str | None, Query(max_length=128)]


@dataclass(frozen=True)
class ReviewBackend:
    """What the page reads, all from the running service (`serving.app` builds it)."""

    settings: Settings
    store: Callable[[], DecisionsStore]
    account: Callable[[], str]
    page: Callable[..., dict[str, Any]]  # the list endpoint's keyset paging
    portfolio: Callable[[], PortfolioResponse]
    models: Callable[[], Awaitable[ModelsResponse]]
    explain: Callable[[ExplainSubject, str], Awaitable[dict[str, Any]]]
    has_explainer: Callable[[], bool]


def _number(value: Any, digits: int = 6) -> str:
    """A figure for people: ``—`` when unknown, thousands separators, ``digits`` significant."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "—" if value is None else str(value)
    if not math.isfinite(value):
        return "—"
    if abs(value) >= 10**digits:
        return f"{value:,.2f}"
    return f"{value:,.{digits}g}"


def _pretty(value: Any) -> str:
    """JSON evidence, indented (rendered inside <pre>, escaped by the template)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES_DIR))
    env = templates.env
    env.autoescape = True  # every template, whatever its name
    env.filters["num"] = _number
    env.filters["pretty"] = _pretty
    return templates


def _blank(value: str | None) -> str | None:
    """A form field as a filter: empty means "any"."""
    if value is None:
        return None
    value = value.strip()
    return value or None


def _since(value: str | None) -> datetime:
    """A ``since`` filter: a date (midnight UTC) or an ISO 8601 time (UTC when naive)."""
    assert value is not None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ValueError(
            f"since {value!r} is not a date (2024-01-31) or a time (2024-01-31T14:00)"
        ) from exc
    return parsed if parsed.utcoffset() is not None else parsed.replace(tzinfo=UTC)


def review_router(backend: ReviewBackend) -> APIRouter:
    """The page's routes (``/``, ``/review``, ``/review/...``) and its static files."""
    templates = _templates()
    router = APIRouter(include_in_schema=False)

    async def status_bar() -> dict[str, Any]:
        """The bar on every page: the trading state and paper book, and the models in use;
        a part that cannot be read says why instead of failing the page."""
        bar: dict[str, Any] = {"portfolio": None, "models": None, "errors": []}
        try:
            bar["portfolio"] = backend.portfolio()
        except SextantError as exc:
            bar["errors"].append(f"portfolio unavailable: {exc}")
        try:
            bar["models"] = await backend.models()
        except SextantError as exc:
            bar["errors"].append(f"models unavailable: {exc}")
        return bar

    async def render(
        request: Request, name: str, context: Mapping[str, Any], code: int = status.HTTP_200_OK
    ) -> HTMLResponse:
        full = {
            "status_bar": await status_bar(),
            "has_explainer": backend.has_explainer(),
            **context,
        }
        return templates.TemplateResponse(request, name, full, status_code=code)

    @router.get("/")
    async def home() -> RedirectResponse:
        return RedirectResponse("/review", status_code=status.HTTP_307_TEMPORARY_REDIRECT)

    @router.get("/review", response_class=HTMLResponse)
    async def decisions(
        request: Request,
        symbol: _Text = None,
        action: _Text = None,
        since: Annotated[str | None, Query(max_length=40)] = None,
        cursor: Annotated[str | None, Query(max_length=512)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    ) -> HTMLResponse:
        """Recent decisions, newest bar first, with filters and keyset paging."""
        filters = {"symbol": _blank(symbol), "action": _blank(action), "since": _blank(since)}
        problems = []
        chosen_action = filters["action"]
        if chosen_action is not None:
            chosen_action = chosen_action.upper()
            if chosen_action not in Action.__members__:
                problems.append(
                    f"action {filters['action']!r} is not one of {', '.join(Action.__members__)}"
                )
        start = None
        if filters["since"] is not None:
            try:
                start = _since(filters["since"])
            except ValueError as exc:
                problems.append(str(exc))
        page: dict[str, Any] = {"decisions": [], "next_cursor": None}
        if not problems:
            try:
                page = backend.page(
                    symbol=filters["symbol"],
                    action=chosen_action,
                    since=start,
                    limit=limit,
                    cursor=_blank(cursor),
                )
            except HTTPException as exc:  # a cursor this service did not issue
                problems.append(str(exc.detail))
        context = {
            "filters": filters,
            "actions": list(Action.__members__),
            "symbols": backend.settings.symbols,
            "page": page,
            "limit": limit,
            "problems": problems,
        }
        code = status.HTTP_422_UNPROCESSABLE_CONTENT if problems else status.HTTP_200_OK
        return await render(request, "decisions.html", context, code)

    @router.get("/review/decisions/{decision_id}", response_class=HTMLResponse)
    async def decision(request: Request, decision_id: str) -> HTMLResponse:
        """One decision: its evidence, a price chart around it, its explanation, a chat box."""
        record = backend.store().get(decision_id)
        if record is None:
            missing = {"message": f"no decision with id {decision_id!r} is recorded"}
            return await render(request, "missing.html", missing, status.HTTP_404_NOT_FOUND)
        chart, chart_error = await _chart(backend.settings, record)
        context = {
            "d": record,
            "chart": chart,
            "chart_error": chart_error,
        }
        return await render(request, "decision.html", context)

    @router.get("/review/anomalies", response_class=HTMLResponse)
    async def anomalies(
        request: Request,
        kind: _Text = None,
        symbol: _Text = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> HTMLResponse:
        """What the monitor found, newest bar first, each with its evidence."""
        filters = {"kind": _blank(kind), "symbol": _blank(symbol)}
        found = backend.store().anomalies(limit, kind=filters["kind"], symbol=filters["symbol"])
        context = {
            "filters": filters,
            "anomalies": found,
            "kinds": sorted(backend.store().anomaly_counts()),
            "symbols": backend.settings.symbols,
        }
        return await render(request, "anomalies.html", context)

    @router.get("/review/explain", response_class=HTMLResponse)
    async def explanation(
        request: Request,
        subject: ExplainSubject,
        id: Annotated[str, Query(min_length=1, max_length=128)],
    ) -> HTMLResponse:
        """An explanation as an HTML fragment (the page inserts it); errors as fragments too."""
        context: dict[str, Any] = {"record": None, "error": None}
        code = status.HTTP_200_OK
        try:
            context["record"] = await backend.explain(subject, id)
        except HTTPException as exc:
            context["error"], code = str(exc.detail), exc.status_code
        except SextantError as exc:
            context["error"], code = str(exc), _error_status(exc)
        return templates.TemplateResponse(request, "_explanation.html", context, status_code=code)

    return router


def add_review_page(app: FastAPI, backend: ReviewBackend) -> None:
    """Serve the review page on ``app``: its routes and its static files (``/review/static``)."""
    app.include_router(review_router(backend))
    app.mount("/review/static", StaticFiles(directory=STATIC_DIR), name="review-static")


def _error_status(exc: SextantError) -> int:
    """The API's status for a typed error (as `serving.app`'s handlers map them)."""
    if isinstance(exc, UnknownSymbolError):
        return status.HTTP_404_NOT_FOUND
    if isinstance(exc, SourceUnavailableError | ModelUnavailableError):
        return status.HTTP_503_SERVICE_UNAVAILABLE
    if isinstance(exc, DataValidationError):
        return status.HTTP_422_UNPROCESSABLE_CONTENT
    if isinstance(exc, ConfigError):
        return status.HTTP_409_CONFLICT
    return status.HTTP_500_INTERNAL_SERVER_ERROR


async def _chart(settings: Settings, record: Mapping[str, Any]) -> tuple[PriceChart | None, str]:
    """The decision's chart, read in a worker thread (DuckDB blocks); while another process
    holds the market store, no chart and the reason."""
    ts = datetime.fromisoformat(record["ts"])
    try:
        candles = await asyncio.to_thread(read_candles, settings, record["symbol"], ts)
    except (SextantError, duckdb.Error) as exc:
        log.warning("no chart for decision %s: %s: %s", record.get("id"), type(exc).__name__, exc)
        return None, f"the market store could not be read ({type(exc).__name__}: {exc}); reload"
    if not candles:
        return None, f"no stored candles for {record['symbol']} around {record['ts']}"
    bar = timeframe_to_timedelta(settings.timeframe)
    return build_chart(candles, decision_levels(record), ts, bar), ""
