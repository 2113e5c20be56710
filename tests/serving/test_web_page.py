"""The trade-review page over real HTTP (uvicorn on loopback, the served home's real engine and
stores), and in headless Chromium (Debian's `chromium`, driven by Playwright; no browser download).

The explainer is `tests.serving.review_explainer.StoreExplainer` (answers built from the stored
records), handed to the app as `sextant serve` hands it the real one. The page's account is this
module's own (``web-review``), so that its book, decisions and kill switch are its own.
"""

from __future__ import annotations

import html
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from serving.app import create_app
from serving.decisions_store import DecisionsStore
from serving.engine import DecisionEngine
from serving.web.chart import decision_levels
from serving.web.routes import _number as number
from sextant.settings import Settings
from tests.serving.conftest import ServedHome
from tests.serving.processes import ROOT
from tests.serving.review_explainer import MODEL, StoreExplainer
from tests.serving.uvicorn_server import serve_in_thread

pytestmark = pytest.mark.slow

TOKEN = "web-admin-token-0123456789abcdef"
ACCOUNT = "web-review"
TIMEOUT = httpx.Timeout(60.0)
HOSTILE = '<script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">'
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_MISSING = (
    "Debian chromium is not installed, so the review page's browser test cannot run: install it "
    "with `sudo apt-get install -y --no-install-recommends chromium` (`make test` does this when "
    "it runs as root or with passwordless sudo); Playwright drives it, never `playwright install`"
)


# --- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def settings(served_home: ServedHome) -> Settings:
    return served_home.settings.model_copy(
        update={"admin_token": SecretStr(TOKEN), "reload_interval_s": 3600.0}
    )


@pytest.fixture(scope="module")
def fresh(served_home: ServedHome) -> Callable[[], datetime]:
    """A clock five minutes after the bar the online features describe."""
    return lambda: served_home.last_close + timedelta(minutes=5)


@pytest.fixture(scope="module")
def engine(settings: Settings, fresh: Callable[[], datetime]) -> Iterator[DecisionEngine]:
    """This module's engine and account, with one bar decided for every symbol."""
    built = DecisionEngine.from_settings(settings, account=ACCOUNT)
    built.decide(settings.symbols, now=fresh())
    yield built
    built.close()


@pytest.fixture(scope="module")
def decisions(engine: DecisionEngine) -> list[dict[str, Any]]:
    """This account's stored decisions, newest bar first (then by symbol)."""
    found = engine.store.latest(50, account=ACCOUNT)
    assert len(found) >= 2
    return found


@pytest.fixture(scope="module")
def probe_anomaly(served_home: ServedHome) -> dict[str, Any]:
    """An anomaly whose detail and evidence are hostile outside text (a headline, say)."""
    bar = served_home.last_close - timedelta(hours=40)  # away from other tests' probes
    found = {
        "id": f"{bar:%Y%m%dT%H%M%SZ}-web_review_probe-0123456789ab",
        "kind": "web_review_probe",
        "category": "market",
        "symbol": "ETH/USDT",
        "bar_ts": bar.isoformat(),
        "severity": "warning",
        "detected_at": served_home.last_close.isoformat(),
        "statistic": "robust_z_log_volume",
        "value": 9.5,
        "threshold": 6.0,
        "detail": f"headline: {HOSTILE}",
        "evidence": {"headline": HOSTILE, "window": [1.0, 2.5]},
    }
    with DecisionsStore.open(served_home.settings.paths.decisions_db) as store:
        store.record_anomalies([found])
    return found


@pytest.fixture(scope="module")
def explainer(settings: Settings) -> StoreExplainer:
    return StoreExplainer(settings)


@pytest.fixture(scope="module")
def base_url(
    settings: Settings,
    engine: DecisionEngine,
    fresh: Callable[[], datetime],
    explainer: StoreExplainer,
    probe_anomaly: dict[str, Any],
) -> Iterator[str]:
    """The service with the review page and an explainer, on uvicorn."""
    with serve_in_thread(
        create_app(settings, engine=engine, clock=fresh, explainer=explainer)
    ) as u:
        yield u


@pytest.fixture(scope="module")
def client(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=TIMEOUT) as http:
        yield http


@pytest.fixture(scope="module")
def bare(
    settings: Settings, engine: DecisionEngine, fresh: Callable[[], datetime]
) -> Iterator[httpx.Client]:
    """The same service built without an explainer."""
    with (
        serve_in_thread(create_app(settings, engine=engine, clock=fresh)) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
    ):
        yield http


def links(page: str) -> list[str]:
    """The decision ids the list page links to, in order."""
    return re.findall(r'href="/review/decisions/([^"]+)"', page)


# --- pages over HTTP ----------------------------------------------------------------------------


def test_the_list_shows_the_accounts_decisions_and_the_status_bar(
    client: httpx.Client, decisions: list[dict[str, Any]]
) -> None:
    home = client.get("/", follow_redirects=False)
    listed = client.get("/review")
    portfolio = client.get("/v1/portfolio").json()
    models = client.get("/v1/models").json()

    assert home.status_code == 307 and home.headers["location"] == "/review"
    assert listed.status_code == 200 and listed.headers["content-type"].startswith("text/html")
    page = listed.text
    assert links(page) == [d["id"] for d in decisions]
    assert f"account <b>{ACCOUNT}</b>" in page
    assert re.search(rf'id="trading-state"[^>]*>\s*{portfolio["trading_state"]}\s*<', page)
    assert f"equity <b>{number(portfolio['equity'])}</b>" in page
    for family in models["families"]:
        assert family["present"] and f"v{family['version']}" in page
    assert 'id="kill-switch" hidden' in page  # the control waits for a token
    assert TOKEN not in page


def test_filters_and_paging_follow_the_list_endpoint(
    client: httpx.Client, decisions: list[dict[str, Any]]
) -> None:
    first = client.get("/review", params={"limit": 1})
    next_href = re.search(r'id="next-page" href="([^"]+)"', first.text)
    assert next_href is not None
    second = client.get(html.unescape(next_href.group(1)))
    btc = client.get("/review", params={"symbol": "BTC/USDT", "action": "", "since": ""})
    action = decisions[0]["action"]
    other = next(a for a in ("BUY", "SELL", "HOLD", "CLOSE", "REDUCE") if a != action)
    by_action = client.get("/review", params={"action": action.lower()})
    none_of = client.get("/review", params={"action": other, "symbol": decisions[0]["symbol"]})
    future = client.get("/review", params={"since": "2999-01-01"})
    api = client.get("/v1/decisions", params={"account": ACCOUNT, "limit": 1}).json()

    assert first.status_code == 200 and links(first.text) == [decisions[0]["id"]]
    assert links(first.text)[0] == api["decisions"][0]["id"]
    assert second.status_code == 200 and links(second.text) == [decisions[1]["id"]]
    assert links(btc.text) == [d["id"] for d in decisions if d["symbol"] == "BTC/USDT"]
    assert decisions[0]["id"] in links(by_action.text)
    expected = [
        d["id"] for d in decisions if d["action"] == other and d["symbol"] == decisions[0]["symbol"]
    ]
    assert links(none_of.text) == expected
    assert future.status_code == 200 and links(future.text) == []
    assert 'id="no-decisions"' in future.text


def test_bad_filters_answer_422_with_the_reason_escaped(client: httpx.Client) -> None:
    bad_since = client.get("/review", params={"since": HOSTILE[:40]})
    bad_action = client.get("/review", params={"action": "YOLO"})
    bad_cursor = client.get("/review", params={"cursor": "not-a-cursor"})

    assert bad_since.status_code == 422
    assert "is not a date" in bad_since.text
    assert "<script>window" not in bad_since.text and "&lt;script&gt;" in bad_since.text
    assert bad_action.status_code == 422 and "&#39;YOLO&#39; is not one of" in bad_action.text
    assert (
        bad_cursor.status_code == 422 and "is not a cursor this service issued" in bad_cursor.text
    )


def test_a_decision_page_shows_its_evidence_and_chart(
    client: httpx.Client, decisions: list[dict[str, Any]]
) -> None:
    record = decisions[0]

    shown = client.get(f"/review/decisions/{record['id']}")

    assert shown.status_code == 200
    page = shown.text
    assert f'<code id="decision-id">{record["id"]}</code>' in page
    assert f">{record['action']}</span> {record['symbol']}" in page
    for check in record["risk_checks"]:
        assert f"<td>{check['name']}</td>" in page
        if not check["passed"]:
            assert f"<td>{check['reason_code']}</td>" in page
    for name in record["ta_votes"]:
        assert f"<th>{name}</th>" in page
    assert f"<td>{record['fuser_mode']}</td>" in page
    candles = re.search(r'id="price-chart"[^>]*data-candles="(\d+)"', page, re.S)
    assert candles is not None and int(candles.group(1)) > 0
    assert page.count('class="candle ') == int(candles.group(1))
    assert 'id="decision-marker"' in page
    for name, price in decision_levels(record).items():
        assert f'data-level="{name}" data-price="{price}"' in page
    if record["stop_loss"] is None:
        assert "did not enter a position" in page
    assert 'data-load="1"' in page  # the explanation is fetched by the page


def test_unknown_decision_is_404_naming_it(client: httpx.Client) -> None:
    missing = client.get("/review/decisions/20240101T000000Z-00000000deadbeef")

    assert missing.status_code == 404
    assert "no decision with id &#39;20240101T000000Z-00000000deadbeef&#39;" in missing.text


def test_anomalies_page_filters_and_escapes_outside_text(
    client: httpx.Client, probe_anomaly: dict[str, Any]
) -> None:
    listed = client.get("/review/anomalies", params={"kind": "web_review_probe", "symbol": ""})
    other = client.get(
        "/review/anomalies", params={"kind": "web_review_probe", "symbol": "BTC/USDT"}
    )
    fragment = client.get(
        "/review/explain", params={"subject": "anomaly", "id": probe_anomaly["id"]}
    )

    assert listed.status_code == 200
    assert f'id="anomaly-{probe_anomaly["id"]}"' in listed.text
    assert "9.5 (threshold 6)" in listed.text
    assert f'data-subject="anomaly" data-id="{probe_anomaly["id"]}"' in listed.text
    for page in (listed.text, fragment.text):
        assert "<script>window" not in page and "<img src=x" not in page
        assert "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert other.status_code == 200 and probe_anomaly["id"] not in other.text
    assert fragment.status_code == 200 and f"model: {MODEL}" in fragment.text


def test_static_files_are_served(client: httpx.Client) -> None:
    script = client.get("/review/static/review.js")
    style = client.get("/review/static/review.css")

    assert script.status_code == 200 and "sessionStorage" in script.text
    assert style.status_code == 200 and ".status-bar" in style.text


# --- /v1/explain and /v1/chat -------------------------------------------------------------------


def test_explain_answers_from_the_explainer(
    client: httpx.Client,
    decisions: list[dict[str, Any]],
    probe_anomaly: dict[str, Any],
    explainer: StoreExplainer,
) -> None:
    d = decisions[0]

    decision = client.post(
        "/v1/explain", json={"subject": "decision", "id": d["id"], "question": "why?"}
    )
    anomaly = client.post("/v1/explain", json={"subject": "anomaly", "id": probe_anomaly["id"]})
    market = client.post("/v1/explain", json={"subject": "market", "id": "ETH/USDT"})

    assert decision.status_code == 200
    body = decision.json()
    assert body["answer"]["summary"].startswith(f"{d['action']} {d['symbol']} at {d['price']}")
    assert (body["model"], body["grounded"], body["subject_id"]) == (MODEL, True, d["id"])
    assert ("decision", d["id"], "why?") in explainer.calls
    assert (
        anomaly.status_code == 200
        and "robust_z_log_volume 9.5" in anomaly.json()["answer"]["summary"]
    )
    assert market.status_code == 200 and market.json()["subject_id"] == "ETH/USDT"


def test_explain_refuses_unknown_subjects_with_404(client: httpx.Client) -> None:
    decision = client.post(
        "/v1/explain", json={"subject": "decision", "id": "20240101T000000Z-00000000deadbeef"}
    )
    anomaly = client.post("/v1/explain", json={"subject": "anomaly", "id": "no-such-anomaly"})
    market = client.post("/v1/explain", json={"subject": "market", "id": "DOGE/USDT"})
    fragment = client.get("/review/explain", params={"subject": "market", "id": "DOGE/USDT"})

    assert decision.status_code == 404
    assert "20240101T000000Z-00000000deadbeef" in decision.json()["detail"]
    assert anomaly.status_code == 404 and "'no-such-anomaly'" in anomaly.json()["detail"]
    assert market.status_code == 404 and "'DOGE/USDT'" in market.json()["detail"]
    assert fragment.status_code == 404 and "DOGE/USDT" in fragment.text


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/explain", {"subject": "weather", "id": "x"}),
        ("/v1/explain", {"subject": "decision"}),
        ("/v1/explain", {"subject": "decision", "id": ""}),
        ("/v1/explain", {"subject": "decision", "id": "x", "extra": 1}),
        ("/v1/explain", {"subject": "decision", "id": "x" * 200}),
        ("/v1/chat", {"session_id": "has spaces", "message": "hi"}),
        ("/v1/chat", {"session_id": "s1", "message": ""}),
        ("/v1/chat", {"message": "hi"}),
    ],
)
def test_malformed_explain_and_chat_requests_are_422(
    client: httpx.Client, path: str, body: dict[str, Any]
) -> None:
    assert client.post(path, json=body).status_code == 422


def test_chat_keeps_a_session(client: httpx.Client, decisions: list[dict[str, Any]]) -> None:
    d = decisions[1]

    first = client.post(
        "/v1/chat", json={"session_id": "web-s1", "message": f"Decision {d['id']}: why?"}
    )
    second = client.post("/v1/chat", json={"session_id": "web-s1", "message": "and the size?"})
    other = client.post("/v1/chat", json={"session_id": "web-s2", "message": "why?"})

    assert first.status_code == second.status_code == other.status_code == 200
    assert first.json()["subject"] == "chat" and first.json()["subject_id"] == "web-s1"
    assert second.json()["answer"]["summary"] == (
        f"turn 2: decision {d['id']} was {d['action']} {d['symbol']} at {d['price']}"
    )
    assert other.json()["answer"]["summary"].startswith("name a decision id")


def test_without_an_explainer_explanations_answer_503(
    bare: httpx.Client, decisions: list[dict[str, Any]]
) -> None:
    d = decisions[0]

    explain = bare.post("/v1/explain", json={"subject": "decision", "id": d["id"]})
    chat = bare.post("/v1/chat", json={"session_id": "s", "message": "why?"})
    fragment = bare.get("/review/explain", params={"subject": "decision", "id": d["id"]})
    page = bare.get(f"/review/decisions/{d['id']}")

    for response in (explain, chat):
        assert response.status_code == 503
        assert "runs without an explainer" in response.json()["detail"]
    assert fragment.status_code == 503 and "runs without an explainer" in fragment.text
    assert page.status_code == 200 and 'data-load="0"' in page.text
    assert "Chat is not available" in page.text
    assert 'id="price-chart"' in page.text  # the rest of the page does not need one


def test_the_openapi_docs_list_explain_and_chat_but_not_the_pages(client: httpx.Client) -> None:
    paths = client.get("/openapi.json").json()["paths"]

    assert {"/v1/explain", "/v1/chat"} <= set(paths)
    assert not [p for p in paths if p == "/" or p.startswith("/review")]
    assert set(paths["/v1/explain"]["post"]["responses"]) >= {"200", "404", "422", "503"}


def test_the_real_offline_explainer_answers_through_the_app(
    settings: Settings,
    engine: DecisionEngine,
    fresh: Callable[[], datetime],
    decisions: list[dict[str, Any]],
) -> None:
    from agents.explain.service import ExplainService

    d = decisions[0]
    with (
        ExplainService(settings, llm=None, trace=False, account=ACCOUNT) as service,
        serve_in_thread(create_app(settings, engine=engine, clock=fresh, explainer=service)) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
    ):
        explained = http.post("/v1/explain", json={"subject": "decision", "id": d["id"]})
        market = http.post("/v1/explain", json={"subject": "market", "id": "BTC"})
        unknown = http.post("/v1/explain", json={"subject": "anomaly", "id": "no-such-anomaly"})
        unknown_symbol = http.post("/v1/explain", json={"subject": "market", "id": "DOGE"})
        chat = http.post(
            "/v1/chat", json={"session_id": "web-real", "message": f"Decision {d['id']}: why?"}
        )
        fragment = http.get("/review/explain", params={"subject": "decision", "id": d["id"]})

    assert explained.status_code == 200, explained.text
    body = explained.json()
    assert (body["subject"], body["subject_id"], body["model"]) == ("decision", d["id"], "offline")
    assert d["symbol"] in body["answer"]["summary"] and isinstance(body["grounded"], bool)
    assert market.status_code == 200 and market.json()["subject_id"] == "BTC/USDT"
    assert unknown.status_code == 404 and "no-such-anomaly" in unknown.json()["detail"]
    assert unknown_symbol.status_code == 404 and "DOGE" in unknown_symbol.json()["detail"]
    assert chat.status_code == 200 and chat.json()["subject"] == "chat"
    assert fragment.status_code == 200 and "model: offline" in fragment.text


# --- in a browser -------------------------------------------------------------------------------


def test_the_review_page_in_headless_chromium(
    base_url: str,
    client: httpx.Client,
    decisions: list[dict[str, Any]],
    probe_anomaly: dict[str, Any],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect, sync_playwright

    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail(CHROMIUM_MISSING)
    d = decisions[0]
    errors: list[str] = []
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 1000})
            page = context.new_page()
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.set_default_timeout(30_000)

            # the list loads, and a decision opens with its chart and explanation
            page.goto(f"{base_url}/review")
            expect(page.locator("tr.decision")).to_have_count(len(decisions))
            page.locator(f'a[href="/review/decisions/{d["id"]}"]').click()
            expect(page.locator("#decision-id")).to_have_text(d["id"])
            expect(page.locator("#price-chart g.candle").first).to_be_visible()
            expect(page.locator("#price-chart line.level-entry")).to_have_count(1)
            summary = page.locator("#explanation .explanation .summary")
            expect(summary).to_contain_text(f"{d['action']} {d['symbol']} at {d['price']}")
            expect(page.locator("#explanation .badge.grounded")).to_have_text("grounded")
            expect(page.locator("#explanation .badge.model")).to_have_text(f"model: {MODEL}")

            # a chat question gets an answer
            page.locator("#chat-message").fill("why?")
            page.locator("#chat-form button").click()
            answer = page.locator("#chat-log .chat-answer .summary")
            expect(answer).to_have_text(
                f"turn 1: decision {d['id']} was {d['action']} {d['symbol']} at {d['price']}"
            )
            page.locator("#chat-message").fill("and then?")
            page.locator("#chat-form button").click()
            expect(answer.nth(1)).to_contain_text("turn 2:")
            page.screenshot(path=str(shots / "review-decision.png"), full_page=True)

            # the anomalies page loads; an explanation shows hostile text as text
            page.goto(f"{base_url}/review/anomalies?kind=web_review_probe")
            article = page.locator(f'article[id="anomaly-{probe_anomaly["id"]}"]')
            expect(article).to_be_visible()
            article.locator(".explain-button").click()
            expect(article.locator(".anomaly-explanation .summary")).to_contain_text(HOSTILE)
            assert page.evaluate("window.pwned") is None
            page.screenshot(path=str(shots / "review-anomalies.png"), full_page=True)

            # the kill switch appears only with the admin token, and engages the gate
            page.goto(f"{base_url}/review")
            engage = page.locator("#kill-engage")
            expect(engage).to_be_hidden()
            page.locator("#admin summary").click()
            expect(engage).to_be_hidden()
            page.locator("#admin-token").fill("wrong-token-" + "x" * 20)
            page.locator("#admin-token-form button").click()
            expect(engage).to_be_visible()
            engage.click()
            expect(page.locator("#kill-result")).to_contain_text("refused (HTTP 401)")
            assert client.get("/v1/portfolio").json()["gate"]["kill_switch"] is False

            page.locator("#admin-token").fill(TOKEN)
            page.locator("#admin-token-form button").click()
            engage.click()
            expect(page.locator("#kill-result")).to_contain_text(f"engaged for {ACCOUNT}")
            stored = page.evaluate("sessionStorage.getItem('sextant-admin-token')")
            assert stored == TOKEN and context.cookies() == []
            page.reload()
            expect(page.locator("#trading-state")).to_contain_text("kill switch engaged")
            page.screenshot(path=str(shots / "review-kill-switch.png"), full_page=True)
        finally:
            browser.close()

    portfolio = client.get("/v1/portfolio").json()
    assert portfolio["account"] == ACCOUNT and portfolio["gate"]["kill_switch"] is True
    after = client.get(f"/v1/signals/{d['symbol']}").json()["signal"]
    assert "KILL_SWITCH" in {c["reason_code"] for c in after["risk_checks"] if not c["passed"]}
    released = client.post(
        "/v1/admin/kill-switch",
        json={"engaged": False},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert released.status_code == 200
    assert errors == []
    ARTIFACTS.mkdir(exist_ok=True)
    for shot in shots.iterdir():
        assert shot.stat().st_size > 10_000
        shutil.copy2(shot, ARTIFACTS / shot.name)
