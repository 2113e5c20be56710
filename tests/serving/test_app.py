"""The decision service over real HTTP: uvicorn on loopback, the served home's real engine.

Each test uses accounts of its own, so that its books and decisions are its own. Apps run with a
clock at the sample's last bar (fresh features) unless a test is about the real clock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

from serving.app import create_app
from serving.decisions_store import decision_id
from serving.engine import DecisionEngine
from sextant.contracts import CHAMPION, FAMILIES, REGISTERED_MODELS, ModelTag
from sextant.settings import Settings
from tests.serving.conftest import ServedHome
from tests.serving.processes import ROOT
from tests.serving.uvicorn_server import free_port, serve_in_thread

pytestmark = pytest.mark.slow

TOKEN = "test-admin-token-0123456789abcdef"
TIMEOUT = httpx.Timeout(60.0)  # the first decision of an app imports Feast and reads the stores
Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(served_home: ServedHome) -> Settings:
    """The served home with an admin token and a poll interval no test waits for."""
    return served_home.settings.model_copy(
        update={"admin_token": SecretStr(TOKEN), "reload_interval_s": 3600.0}
    )


@pytest.fixture(scope="module")
def fresh(served_home: ServedHome) -> Callable[[], datetime]:
    """A clock five minutes after the bar the online features describe: they are fresh."""
    return lambda: served_home.last_close + timedelta(minutes=5)


@pytest.fixture(scope="module")
def base_engine(served_home: ServedHome) -> Iterator[DecisionEngine]:
    built = DecisionEngine.from_settings(served_home.settings, account="api-base")
    yield built
    built.close()


@pytest.fixture(scope="module")
def client(settings: Settings, fresh: Callable[[], datetime]) -> Iterator[httpx.Client]:
    """The service as `sextant serve` builds it (its own engine, from the settings)."""
    with (
        serve_in_thread(create_app(settings, clock=fresh)) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


def engine_with(
    base: DecisionEngine, account: str, champions: dict[str, Any] | None = None
) -> DecisionEngine:
    """Another engine on the same stores (as test_engine.account_engine builds them)."""
    return DecisionEngine(
        base.settings,
        base.champions if champions is None else champions,
        base.feast,
        base.store,
        account=account,
        config=base.config,
        execution=base.execution,
    )


@pytest.fixture
def side_app() -> Iterator[Callable[..., httpx.Client]]:
    """Start extra apps on uvicorn for one test; all stopped at its end."""
    stack: list[Any] = []

    def start(app: Any) -> httpx.Client:
        server = serve_in_thread(app)
        url = server.__enter__()
        http = httpx.Client(base_url=url, timeout=TIMEOUT)
        stack.append((server, http))
        return http

    yield start
    for server, http in reversed(stack):
        http.close()
        server.__exit__(None, None, None)


def admin(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def scrape(http: httpx.Client) -> Scraped:
    response = http.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(scraped: Scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def failed_codes(record: dict[str, Any]) -> set[str]:
    return {c["reason_code"] for c in record["risk_checks"] if not c["passed"]}


# --- decisions ----------------------------------------------------------------------------------


def test_a_decision_over_http_is_recorded_once_and_read_back(
    client: httpx.Client, served_home: ServedHome
) -> None:
    account = "http-one"

    first = client.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": account})
    again = client.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": account})

    assert first.status_code == 200, first.text
    body = first.json()
    record = body["decision"]
    assert record["id"] == decision_id(account, "BTC/USDT", served_home.last_close)
    assert record["account"] == account and record["symbol"] == "BTC/USDT"
    assert datetime.fromisoformat(record["ts"]) == served_home.last_close
    assert body["stored"] is False and body["feature_age_bars"] == 0.0
    assert body["model_versions"] == {"garch": "1", "xgb": "1", "lstm": "1"}
    assert len(record["risk_checks"]) >= 5 and "STALE_FEATURES" not in failed_codes(record)
    assert 0.0 < record["models"]["p_xgb"] < 1.0
    # the bar is decided: the stored record is the answer, flagged as such
    assert again.status_code == 200 and again.json()["stored"] is True
    assert again.json()["decision"] == record
    by_id = client.get(f"/v1/decisions/{record['id']}")
    assert by_id.status_code == 200 and by_id.json() == record


def test_an_unknown_decision_id_is_a_404_naming_it(client: httpx.Client) -> None:
    response = client.get("/v1/decisions/20240101T000000Z-0123456789abcdef")

    assert response.status_code == 404
    assert "20240101T000000Z-0123456789abcdef" in response.json()["detail"]


def test_a_batch_is_decided_in_one_call_in_the_request_order(
    client: httpx.Client, served_home: ServedHome
) -> None:
    response = client.post(
        "/v1/decisions/batch", json={"symbols": ["ETH/USDT", "BTC/USDT"], "account": "http-batch"}
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["account"] == "http-batch"
    assert datetime.fromisoformat(body["ts"]) == served_home.last_close
    assert [d["decision"]["symbol"] for d in body["decisions"]] == ["ETH/USDT", "BTC/USDT"]
    assert all(d["stored"] is False for d in body["decisions"])
    listed = client.get("/v1/decisions", params={"account": "http-batch"}).json()["decisions"]
    assert sorted(r["id"] for r in listed) == sorted(d["decision"]["id"] for d in body["decisions"])


@pytest.mark.parametrize(
    ("path", "payload", "named"),
    [
        ("/v1/decisions", {"symbol": "DOGE/USDT", "account": "http-unknown"}, "DOGE/USDT"),
        (
            "/v1/decisions/batch",
            {"symbols": ["BTC/USDT", "DOGE/USDT"], "account": "http-unknown"},
            "DOGE/USDT",
        ),
    ],
)
def test_an_unknown_symbol_is_a_404_naming_it_and_nothing_is_recorded(
    client: httpx.Client, path: str, payload: dict[str, Any], named: str
) -> None:
    response = client.post(path, json=payload)

    assert response.status_code == 404 and named in response.json()["detail"]
    listed = client.get("/v1/decisions", params={"account": "http-unknown"})
    assert listed.json()["decisions"] == []
    assert client.get("/v1/signals/DOGE/USDT").status_code == 404


@pytest.mark.parametrize(
    ("path", "content"),
    [
        ("/v1/decisions", b'{"symbol": "BTC/USDT"'),  # not JSON
        ("/v1/decisions", b"{}"),  # no symbol
        ("/v1/decisions", b'{"symbol": "BTC/USDT", "acount": "x"}'),  # unknown field
        ("/v1/decisions", b'{"symbol": "BTC/USDT", "account": "../etc"}'),  # bad account name
        ("/v1/decisions", json.dumps({"symbol": "BTC/USDT", "account": "a" * 65}).encode()),
        ("/v1/decisions", b'{"symbol": ["BTC/USDT"]}'),
        ("/v1/decisions/batch", b'{"symbols": []}'),
        ("/v1/decisions/batch", b'{"symbols": ["BTC/USDT", "BTC/USDT"]}'),  # not distinct
        ("/v1/admin/kill-switch", b'{"engaged": "maybe"}'),
    ],
)
def test_a_malformed_body_is_a_422(client: httpx.Client, path: str, content: bytes) -> None:
    response = client.post(
        path, content=content, headers={"Content-Type": "application/json", **admin()}
    )

    assert response.status_code == 422, response.text
    assert client.get("/v1/decisions", params={"account": "etc"}).json()["decisions"] == []


def test_a_body_over_the_limit_is_a_413_with_or_without_content_length(
    client: httpx.Client, settings: Settings
) -> None:
    padding = "x" * settings.max_body_bytes
    oversized = json.dumps({"symbol": "BTC/USDT", "account": "http-big", "pad": padding}).encode()

    def chunks() -> Iterator[bytes]:  # streamed: chunked transfer encoding, no Content-Length
        for start in range(0, len(oversized), 4096):
            yield oversized[start : start + 4096]

    declared = client.post("/v1/decisions", content=oversized)
    chunked = client.post(
        "/v1/decisions", content=chunks(), headers={"Content-Type": "application/json"}
    )

    assert declared.status_code == 413 and str(settings.max_body_bytes) in declared.text
    assert chunked.status_code == 413, chunked.text
    assert client.get("/healthz").status_code == 200  # the service is fine afterwards
    assert client.get("/v1/decisions", params={"account": "http-big"}).json()["decisions"] == []


# --- the decision endpoints' lean path answers as FastAPI's routes do ---------------------------

# `serving.app._LeanDecisions` takes `application/json` bodies; the routes also parse `+json`
# media types as JSON, so the same request declared `+json` is answered by FastAPI's route.
LEAN = {"Content-Type": "application/json"}
ROUTE = {"Content-Type": "application/vnd.sextant+json"}


def post_json(
    client: httpx.Client, path: str, payload: dict[str, Any], headers: dict[str, str]
) -> httpx.Response:
    return client.post(path, content=json.dumps(payload).encode(), headers=headers)


def without_account(answer: dict[str, Any]) -> dict[str, Any]:
    """A one-symbol answer less what names its account (the record's id and account)."""
    record = {k: v for k, v in answer["decision"].items() if k not in ("id", "account")}
    return {**answer, "decision": record}


def test_the_lean_path_and_the_route_decide_alike(client: httpx.Client) -> None:
    answers = {}
    for path_name, headers in (("lean", LEAN), ("route", ROUTE)):
        account = f"http-alike-{path_name}"
        one = post_json(
            client, "/v1/decisions", {"symbol": "BTC/USDT", "account": account}, headers
        )
        batch = post_json(
            client, "/v1/decisions/batch", {"symbols": ["ETH/USDT"], "account": account}, headers
        )
        again = post_json(
            client, "/v1/decisions", {"symbol": "BTC/USDT", "account": account}, headers
        )
        for response in (one, batch, again):
            assert response.status_code == 200, response.text
            assert response.headers["content-type"] == "application/json"
        assert again.json()["stored"] is True and again.json()["decision"] == one.json()["decision"]
        answers[path_name] = (one.json(), batch.json())

    (lean_one, lean_batch), (route_one, route_batch) = answers["lean"], answers["route"]
    assert lean_one["stored"] is False and route_one["stored"] is False
    assert without_account(lean_one) == without_account(route_one)
    assert [without_account(d) for d in lean_batch["decisions"]] == [
        without_account(d) for d in route_batch["decisions"]
    ]
    assert lean_batch["account"] == "http-alike-lean"
    assert {k: v for k, v in lean_batch.items() if k not in ("account", "decisions")} == {
        k: v for k, v in route_batch.items() if k not in ("account", "decisions")
    }


@pytest.mark.parametrize(
    ("path", "payload"),
    [
        ("/v1/decisions", {"symbol": "DOGE/USDT", "account": "http-alike-unknown"}),
        ("/v1/decisions/batch", {"symbols": ["DOGE/USDT"], "account": "http-alike-unknown"}),
    ],
)
def test_the_lean_path_and_the_route_refuse_an_unknown_symbol_alike(
    client: httpx.Client, path: str, payload: dict[str, Any]
) -> None:
    lean = post_json(client, path, payload, LEAN)
    route = post_json(client, path, payload, ROUTE)

    assert lean.status_code == route.status_code == 404
    assert lean.json() == route.json() and "DOGE/USDT" in lean.json()["detail"]
    assert lean.headers["content-type"] == route.headers["content-type"]


@contextlib.contextmanager
def write_lock_held(settings: Settings) -> Iterator[None]:
    """Another process's write transaction on the decisions store, held for the block."""
    import sqlite3

    holder = sqlite3.connect(settings.paths.decisions_db, isolation_level=None, timeout=1)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def test_the_lean_path_and_the_route_answer_a_busy_store_alike(
    client: httpx.Client, settings: Settings
) -> None:
    with write_lock_held(settings):
        busy = {
            name: post_json(
                client, "/v1/decisions", {"symbol": "ETH/USDT", "account": f"http-busy-{name}"}, h
            )
            for name, h in (("lean", LEAN), ("route", ROUTE))
        }

    assert busy["lean"].status_code == busy["route"].status_code == 503
    assert busy["lean"].headers["Retry-After"] == busy["route"].headers["Retry-After"]
    lean_detail, route_detail = busy["lean"].json()["detail"], busy["route"].json()["detail"]
    assert "busy" in lean_detail and lean_detail == route_detail


def test_a_json_body_without_a_content_type_is_still_refused(client: httpx.Client) -> None:
    # FastAPI's strict content type: the lean path does not widen what the service accepts
    # (httpx sends bytes without a Content-Type)
    response = client.post(
        "/v1/decisions",
        content=json.dumps({"symbol": "BTC/USDT", "account": "http-no-type"}).encode(),
    )

    assert response.status_code == 422, response.text
    listed = client.get("/v1/decisions", params={"account": "http-no-type"}).json()
    assert listed["decisions"] == []


def test_both_paths_are_timed_under_the_route_template(client: httpx.Client) -> None:
    timed = {"route": "/v1/decisions", "method": "POST", "status": "200"}
    before = value(scrape(client), "sextant_http_request_duration_seconds_count", **timed)

    for name, headers in (("lean", LEAN), ("route", ROUTE)):
        answer = post_json(
            client,
            "/v1/decisions",
            {"symbol": "BTC/USDT", "account": f"http-timed-{name}"},
            headers,
        )
        assert answer.status_code == 200, answer.text

    after = value(scrape(client), "sextant_http_request_duration_seconds_count", **timed)
    assert after - before == 2


def test_a_busy_decisions_store_is_a_503_with_retry_after(
    client: httpx.Client, settings: Settings
) -> None:
    with write_lock_held(settings):
        busy = client.post("/v1/decisions", json={"symbol": "ETH/USDT", "account": "http-busy"})
    after = client.post("/v1/decisions", json={"symbol": "ETH/USDT", "account": "http-busy"})

    assert busy.status_code == 503, busy.text
    assert busy.headers["Retry-After"].isdigit() and "busy" in busy.json()["detail"]
    assert after.status_code == 200 and after.json()["stored"] is False


def test_a_clock_before_the_online_features_is_a_409_with_the_engine_message(
    settings: Settings,
    base_engine: DecisionEngine,
    served_home: ServedHome,
    side_app: Callable[..., httpx.Client],
) -> None:
    early = served_home.last_close - timedelta(hours=3)
    http = side_app(create_app(settings, engine=base_engine, clock=lambda: early))

    response = http.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": "http-early"})

    assert response.status_code == 409
    assert "holds only the latest vectors" in response.json()["detail"]


# --- reads --------------------------------------------------------------------------------------


def test_a_signal_shows_every_component_and_records_nothing(
    client: httpx.Client, base_engine: DecisionEngine
) -> None:
    response = client.get("/v1/signals/ETH/USDT", params={"account": "http-signal"})

    assert response.status_code == 200, response.text
    body = response.json()
    signal_ = body["signal"]
    assert body["account"] == "http-signal" and body["recorded"] is False
    assert signal_["symbol"] == "ETH/USDT" and set(signal_["ta_votes"])
    assert {"p_xgb", "p_lstm", "garch_variance"} <= set(signal_["models"])
    assert signal_["fused_score"] is not None and signal_["sizing"]["fraction"] is not None
    assert {c["name"].upper() for c in signal_["risk_checks"]} >= {"STALE_FEATURES", "KILL_SWITCH"}
    assert base_engine.store.count(account="http-signal") == 0
    assert base_engine.store.account_state("http-signal") is None


def test_models_list_each_champion_with_its_registered_metrics(
    client: httpx.Client, served_home: ServedHome
) -> None:
    from serving.champions import registry_client

    response = client.get("/v1/models")

    assert response.status_code == 200, response.text
    families = {f["family"]: f for f in response.json()["families"]}
    assert set(families) == set(FAMILIES)
    registry = registry_client(served_home.settings)
    for family, served in families.items():
        version = registry.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION)
        assert served["present"] is True and served["alias"] == CHAMPION
        assert served["registered_model"] == REGISTERED_MODELS[family]
        assert served["version"] == str(version.version)
        assert served["feature_service"] == version.tags[ModelTag.FEATURE_SERVICE]
        assert served["features"]
        for tag, key in (
            (ModelTag.REPORTED_METRICS, "reported_metrics"),
            (ModelTag.SELECTION_METRICS, "selection_metrics"),
        ):
            recorded = json.loads(version.tags[tag])
            assert served[key] is not None and set(served[key]) == set(recorded)


def test_the_portfolio_shows_the_book_the_decisions_opened(
    client: httpx.Client, served_home: ServedHome
) -> None:
    before = client.get("/v1/portfolio", params={"account": "http-book"}).json()
    batch = client.post(
        "/v1/decisions/batch", json={"symbols": ["BTC/USDT", "ETH/USDT"], "account": "http-book"}
    ).json()

    after = client.get("/v1/portfolio", params={"account": "http-book"})

    assert before["opened"] is False and before["positions"] == [] and before["equity"] > 0
    assert after.status_code == 200, after.text
    book = after.json()
    assert book["opened"] is True and book["trading_state"] == "ACTIVE"
    assert datetime.fromisoformat(book["last_bar_open"]) == served_home.last_close - timedelta(
        hours=1
    )
    orders = {
        d["decision"]["symbol"]
        for d in batch["decisions"]
        if d["decision"]["target_fraction"] != d["decision"]["current_fraction"]
    }
    pending = {p["symbol"] for p in book["positions"] if p["pending_order_units"] is not None}
    assert {p["symbol"] for p in book["positions"]} == {"BTC/USDT", "ETH/USDT"}
    assert pending == orders  # the approved targets wait for the next open
    mark = book["latest_mark"]
    assert mark is not None and mark["equity"] == book["equity"] == before["equity"]
    assert book["cash"] == mark["cash"] and book["gate"]["kill_switch"] is False
    assert book["gate"]["state"] == "ACTIVE"


def test_pages_of_decisions_cover_every_record_once_newest_first(
    client: httpx.Client, base_engine: DecisionEngine, served_home: ServedHome
) -> None:
    account = "http-pages"
    made = base_engine.evaluate(now=served_home.last_close)
    third = dataclasses.replace(made[0], symbol="SOL/USDT")
    for bars_back in range(5):  # 5 bars x 3 symbols sharing each ts
        ts = served_home.last_close - timedelta(hours=bars_back)
        base_engine.store.record(
            [dataclasses.replace(d, ts=ts) for d in (*made, third)], account=account
        )
    expected = [r["id"] for r in base_engine.store.latest(100, account=account)]

    seen: list[str] = []
    cursor = None
    for _ in range(10):  # bounded: 15 records at 4 per page take 4 pages
        params: dict[str, Any] = {"account": account, "limit": 4}
        if cursor:
            params["cursor"] = cursor
        page = client.get("/v1/decisions", params=params)
        assert page.status_code == 200, page.text
        seen += [r["id"] for r in page.json()["decisions"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break

    assert len(expected) == 15 and seen == expected  # newest bar first, no gap, no repeat
    # filters: one symbol, an action, a start
    one = client.get("/v1/decisions", params={"account": account, "symbol": "SOL/USDT"}).json()
    assert [r["symbol"] for r in one["decisions"]] == ["SOL/USDT"] * 5
    action = made[0].action.value
    by_action = client.get("/v1/decisions", params={"account": account, "action": action}).json()
    assert by_action["decisions"] and {r["action"] for r in by_action["decisions"]} == {action}
    since = (served_home.last_close - timedelta(hours=1)).isoformat()
    recent = client.get("/v1/decisions", params={"account": account, "since": since}).json()
    assert len(recent["decisions"]) == 6 and recent["next_cursor"] is None


@pytest.mark.parametrize(
    "params",
    [
        {"cursor": "not-a-cursor"},
        {"limit": 501},
        {"limit": 0},
        {"since": "2024-01-01T00:00:00"},  # naive
        {"action": "PANIC"},
        {"account": "no spaces"},
    ],
)
def test_bad_listing_parameters_are_a_422(client: httpx.Client, params: dict[str, Any]) -> None:
    response = client.get("/v1/decisions", params=params)

    assert response.status_code == 422, response.text


# --- admin --------------------------------------------------------------------------------------


def test_admin_needs_the_bearer_token_compared_in_constant_time(
    client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serving.auth

    compared: list[tuple[bytes, bytes]] = []
    real = serving.auth.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(serving.auth, "compare_digest", spy)
    body = {"engaged": False, "account": "http-auth"}

    missing = client.post("/v1/admin/kill-switch", json=body)
    wrong = client.post("/v1/admin/kill-switch", json=body, headers=admin("x" * 32))
    basic = client.post(
        "/v1/admin/kill-switch", json=body, headers={"Authorization": f"Basic {TOKEN}"}
    )
    right = client.post("/v1/admin/kill-switch", json=body, headers=admin())

    for refused in (missing, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Bearer")
        assert TOKEN not in refused.text
    assert right.status_code == 200, right.text
    assert right.json() == {"account": "http-auth", "gate": right.json()["gate"]}
    # the tokens were compared as bytes by hmac.compare_digest (wrong, then right)
    assert compared == [(b"x" * 32, TOKEN.encode()), (TOKEN.encode(), TOKEN.encode())]


def test_admin_is_disabled_without_a_token(
    served_home: ServedHome,
    base_engine: DecisionEngine,
    fresh: Callable[[], datetime],
    side_app: Callable[..., httpx.Client],
) -> None:
    assert served_home.settings.admin_token is None
    http = side_app(create_app(served_home.settings, engine=base_engine, clock=fresh))

    for path, body in (
        ("/v1/admin/reload", {}),
        ("/v1/admin/kill-switch", {"engaged": True}),
        ("/v1/admin/reset", {}),
    ):
        response = http.post(path, json=body, headers=admin())
        assert response.status_code == 403
        assert "SEXTANT_ADMIN_TOKEN" in response.json()["detail"]
    assert base_engine.account_state()[1].status().kill_switch is False


def test_the_kill_switch_flattens_the_next_decision_until_released(client: httpx.Client) -> None:
    account = "http-kill"

    engaged = client.post(
        "/v1/admin/kill-switch", json={"engaged": True, "account": account}, headers=admin()
    )
    decided = client.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": account})
    shown = client.get("/v1/portfolio", params={"account": account}).json()
    released = client.post(
        "/v1/admin/kill-switch", json={"engaged": False, "account": account}, headers=admin()
    )
    signal_ = client.get("/v1/signals/BTC/USDT", params={"account": account}).json()["signal"]
    reset = client.post("/v1/admin/reset", json={"account": account}, headers=admin())

    assert engaged.status_code == 200 and engaged.json()["gate"]["kill_switch"] is True
    record = decided.json()["decision"]
    assert "KILL_SWITCH" in failed_codes(record)
    assert record["target_fraction"] == 0.0 and record["order_units"] == 0.0
    assert shown["gate"]["kill_switch"] is True
    assert all(p["pending_order_units"] is None for p in shown["positions"])
    assert released.status_code == 200 and released.json()["gate"]["kill_switch"] is False
    assert (
        client.get("/v1/portfolio", params={"account": account}).json()["gate"]["kill_switch"]
        is False
    )
    assert "KILL_SWITCH" not in failed_codes(signal_)
    assert reset.status_code == 200 and reset.json()["gate"]["state"] == "ACTIVE"
    scraped = scrape(client)
    assert value(scraped, "sextant_trading_state", account=account, state="ACTIVE") == 1.0


def test_reload_keeps_serving_and_a_failed_one_names_its_cause(
    client: httpx.Client, served_home: ServedHome
) -> None:
    from serving.champions import registry_client

    before = value(scrape(client), "sextant_model_reload_failures_total", trigger="admin")
    unchanged = client.post("/v1/admin/reload", json={}, headers=admin())
    forced = client.post("/v1/admin/reload", json={"force": True}, headers=admin())
    registry = registry_client(served_home.settings)
    name = REGISTERED_MODELS["xgb"]
    version = registry.get_model_version_by_alias(name, CHAMPION)
    recorded = version.tags[ModelTag.FEATURES]
    tampered = [f for f in json.loads(recorded) if f != "rsi_14"] + ["rsi_15"]
    registry.set_model_version_tag(name, version.version, ModelTag.FEATURES, json.dumps(tampered))
    try:
        refused = client.post("/v1/admin/reload", json={"force": True}, headers=admin())
    finally:
        registry.set_model_version_tag(name, version.version, ModelTag.FEATURES, recorded)
    decided = client.post("/v1/decisions", json={"symbol": "ETH/USDT", "account": "http-reload"})

    versions = {"garch": "1", "xgb": "1", "lstm": "1"}
    assert unchanged.status_code == 200 and unchanged.json()["changed"] is False
    assert unchanged.json()["versions"] == versions
    assert forced.status_code == 200 and forced.json()["versions"] == versions
    assert refused.status_code == 409
    detail = refused.json()["detail"]
    assert "reload failed" in detail and "rsi_15" in detail and f"{name} version" in detail
    assert decided.status_code == 200 and decided.json()["model_versions"] == versions
    scraped = scrape(client)
    assert value(scraped, "sextant_model_reload_failures_total", trigger="admin") == before + 1
    assert value(scraped, "sextant_model_reloads_total", trigger="admin") >= 1.0


def test_a_background_reload_brings_champions_in_and_counts_failures(
    settings: Settings,
    base_engine: DecisionEngine,
    served_home: ServedHome,
    fresh: Callable[[], datetime],
    side_app: Callable[..., httpx.Client],
) -> None:
    from serving.champions import registry_client

    polling = settings.model_copy(update={"reload_interval_s": 0.3})
    empty = engine_with(base_engine, "http-poll", champions={})
    registry = registry_client(served_home.settings)
    name = REGISTERED_MODELS["lstm"]
    version = registry.get_model_version_by_alias(name, CHAMPION)
    recorded = version.tags[ModelTag.FEATURES]
    registry.set_model_version_tag(name, version.version, ModelTag.FEATURES, "[]")
    try:
        http = side_app(create_app(polling, engine=empty, clock=fresh))
        failures = wait_for(
            lambda: value(scrape(http), "sextant_model_reload_failures_total", trigger="interval"),
            timeout_s=30,
        )
        still = http.get("/v1/models").json()["families"]
    finally:
        registry.set_model_version_tag(name, version.version, ModelTag.FEATURES, recorded)
    wait_for(lambda: empty.champions.keys() == set(FAMILIES), timeout_s=60)
    served = http.get("/v1/models").json()["families"]

    assert failures >= 1 and not any(f["present"] for f in still)  # the old (none) kept serving
    assert all(f["present"] for f in served)
    assert value(scrape(http), "sextant_model_reloads_total", trigger="interval") >= 1.0
    assert http.get("/readyz").status_code == 200


def wait_for(probe: Callable[[], Any], *, timeout_s: float) -> Any:
    """Poll ``probe`` until it returns something truthy (bounded: at most ``timeout_s``)."""
    deadline = time.monotonic() + timeout_s
    while True:
        got = probe()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing within {timeout_s} s (last: {got!r})")
        time.sleep(0.2)


# --- health, readiness, metrics, docs -----------------------------------------------------------


def test_health_and_readiness_with_fresh_features(client: httpx.Client) -> None:
    health = client.get("/healthz")
    ready = client.get("/readyz")

    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert ready.status_code == 200, ready.text
    body = ready.json()
    assert body["ready"] is True and body["reasons"] == []
    assert body["feature_age_bars"] == {"BTC/USDT": 0.0, "ETH/USDT": 0.0}


def test_without_champions_not_ready_and_decisions_flat_model_unavailable(
    settings: Settings,
    base_engine: DecisionEngine,
    fresh: Callable[[], datetime],
    side_app: Callable[..., httpx.Client],
) -> None:
    http = side_app(
        create_app(settings, engine=engine_with(base_engine, "http-none", {}), clock=fresh)
    )

    ready = http.get("/readyz")
    decided = http.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": "http-none"})
    models = http.get("/v1/models").json()["families"]

    assert ready.status_code == 503 and ready.json()["ready"] is False
    assert any("no champion" in r for r in ready.json()["reasons"])
    assert decided.status_code == 200, decided.text
    record = decided.json()["decision"]
    assert "MODEL_UNAVAILABLE" in failed_codes(record) and record["target_fraction"] == 0.0
    assert record["models"]["p_xgb"] is None  # NaN is null in JSON
    assert decided.json()["model_versions"] == {}
    assert [(f["family"], f["present"]) for f in models] == [(f, False) for f in FAMILIES]


def test_stale_features_by_the_real_clock(
    settings: Settings, base_engine: DecisionEngine, side_app: Callable[..., httpx.Client]
) -> None:
    http = side_app(create_app(settings, engine=engine_with(base_engine, "http-stale")))

    ready = http.get("/readyz")
    decided = http.post("/v1/decisions", json={"symbol": "ETH/USDT", "account": "http-stale"})

    assert ready.status_code == 503
    (reason,) = ready.json()["reasons"]
    assert reason.startswith("stale features: BTC/USDT") and "bars old" in reason
    assert ready.json()["feature_age_bars"]["ETH/USDT"] > settings_limit(base_engine)
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert "STALE_FEATURES" in failed_codes(body["decision"])
    assert body["feature_age_bars"] > settings_limit(base_engine)
    assert body["decision"]["target_fraction"] == 0.0


def settings_limit(engine: DecisionEngine) -> int:
    return engine.config.risk.max_feature_age_bars


def test_metrics_count_the_decisions_made_after_a_feast_read(client: httpx.Client) -> None:
    account = "http-metrics"
    before = scrape(client)

    made = client.post(
        "/v1/decisions/batch", json={"symbols": ["BTC/USDT", "ETH/USDT"], "account": account}
    ).json()
    client.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": account})  # stored
    after = scrape(client)

    assert "PROMETHEUS_MULTIPROC_DIR" in os.environ  # Feast was imported and read
    records = [d["decision"] for d in made["decisions"]]
    for action in {r["action"] for r in records}:
        counted = sum(r["action"] == action for r in records)  # the stored answer not counted
        assert (
            value(after, "sextant_decisions_total", action=action)
            - value(before, "sextant_decisions_total", action=action)
            == counted
        )
    for code in {c for r in records for c in failed_codes(r)}:
        counted = sum(code in failed_codes(r) for r in records)
        assert (
            value(after, "sextant_risk_rejections_total", reason_code=code)
            - value(before, "sextant_risk_rejections_total", reason_code=code)
            == counted
        )
    assert value(after, "sextant_feature_age_bars", symbol="ETH/USDT") == 0.0
    for family in FAMILIES:
        model = REGISTERED_MODELS[family]
        assert value(after, "sextant_model_info", family=family, model=model, version="1") == 1.0
    assert value(after, "sextant_trading_state", account=account, state="ACTIVE") == 1.0
    timed = {"route": "/v1/decisions/batch", "method": "POST", "status": "200"}
    assert value(after, "sextant_http_request_duration_seconds_count", **timed) >= 1.0
    # sub-millisecond buckets
    fine = frozenset({**timed, "le": "0.0005"}.items())
    assert ("sextant_http_request_duration_seconds_bucket", fine) in after


def test_the_openapi_docs_describe_every_endpoint(client: httpx.Client) -> None:
    docs = client.get("/docs")
    schema = client.get("/openapi.json").json()

    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert {
        "/v1/decisions",
        "/v1/decisions/batch",
        "/v1/decisions/{decision_id}",
        "/v1/signals/{symbol}",
        "/v1/models",
        "/v1/portfolio",
        "/v1/admin/reload",
        "/v1/admin/kill-switch",
        "/v1/admin/reset",
        "/healthz",
        "/readyz",
    } <= set(schema["paths"])


# --- the command ----------------------------------------------------------------------------------


def test_sextant_serve_decides_over_http(served_home: ServedHome, tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "serve.log"
    env = {
        **os.environ,
        "SEXTANT_HOME": str(served_home.settings.paths.home),
        "SEXTANT_ADMIN_TOKEN": TOKEN,
        "PYTHONPATH": str(ROOT),
    }
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "sextant.cli", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=TIMEOUT) as http:
            wait_for(lambda: _up(http, proc, log_path), timeout_s=120)
            decided = http.post("/v1/decisions", json={"symbol": "BTC/USDT", "account": "cli-http"})
            ready = http.get("/readyz")
            metrics = http.get("/metrics")
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn shuts down gracefully (lifespan closes)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()
    stderr = log_path.read_text()

    assert decided.status_code == 200, decided.text + stderr
    record = decided.json()["decision"]
    assert record["account"] == "cli-http" and record["symbol"] == "BTC/USDT"
    assert "STALE_FEATURES" in failed_codes(record)  # the sample ended long before the real clock
    assert ready.status_code == 503
    assert "sextant_decisions_total" in metrics.text
    assert proc.returncode == 0, stderr
    assert "Application shutdown complete" in stderr


def _up(http: httpx.Client, proc: subprocess.Popen[bytes], log_path: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"sextant serve exited ({proc.returncode}):\n{log_path.read_text()}")
    try:
        return http.get("/healthz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_anomalies_the_monitor_stored_are_listed_and_exported(
    client: httpx.Client, served_home: ServedHome
) -> None:
    from serving.decisions_store import DecisionsStore
    from serving.metrics import DRIFT_FIGURES_KEY

    bar = served_home.last_close - timedelta(hours=3)
    found = {
        "id": f"{bar:%Y%m%dT%H%M%SZ}-volume_spike-api",
        "kind": "volume_spike",
        "category": "market",
        "symbol": "ETH/USDT",
        "bar_ts": bar.isoformat(),
        "severity": "critical",
        "detected_at": served_home.last_close.isoformat(),
        "statistic": "robust_z_log_volume",
        "value": 14.2,
        "threshold": 6.0,
        "detail": "volume 14.2 robust sd above its trailing median",
        "evidence": {"window": [1.0, 2.0, float("nan")]},
    }
    with DecisionsStore.open(served_home.settings.paths.decisions_db) as store:
        store.record_anomalies([found], state={DRIFT_FIGURES_KEY: {"xgb": {"psi_max": 0.31}}})

    listed = client.get("/v1/anomalies", params={"kind": "volume_spike", "symbol": "ETH/USDT"})
    bad = client.get("/v1/anomalies", params={"category": "weather"})

    assert listed.status_code == 200
    (record,) = [a for a in listed.json()["anomalies"] if a["id"] == found["id"]]
    assert record["value"] == 14.2 and record["evidence"]["window"] == [1.0, 2.0, None]
    assert datetime.fromisoformat(record["bar_ts"]) == bar
    assert bad.status_code == 422
    scraped = scrape(client)
    assert scraped[("sextant_anomalies_total", frozenset({("kind", "volume_spike")}))] >= 1.0
    figure = ("sextant_drift_figure", frozenset({("family", "xgb"), ("statistic", "psi_max")}))
    assert scraped[figure] == 0.31
