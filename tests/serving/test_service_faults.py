"""The service under change: champions reloaded and features materialized while a second process
sends requests, and a restart. Real uvicorn on loopback, bounded rates and durations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from serving.app import create_app
from serving.champions import registry_client
from serving.decisions_store import decision_id
from sextant.contracts import CHAMPION, REGISTERED_MODELS
from sextant.settings import Settings
from tests.serving.conftest import ServedHome
from tests.serving.processes import ROOT, Child
from tests.serving.registry_copies import copy_champion
from tests.serving.uvicorn_server import serve_in_thread

pytestmark = pytest.mark.slow

TOKEN = "fault-test-admin-token-0123456789"
TIMEOUT = httpx.Timeout(60.0)
BTC, ETH = "BTC/USDT", "ETH/USDT"


@pytest.fixture(scope="module")
def settings(served_home: ServedHome) -> Settings:
    return served_home.settings.model_copy(
        update={"admin_token": SecretStr(TOKEN), "reload_interval_s": 3600.0}
    )


@pytest.fixture(scope="module")
def fresh(served_home: ServedHome) -> Callable[[], datetime]:
    return lambda: served_home.last_close + timedelta(minutes=5)


@contextmanager
def service(settings: Settings, clock: Callable[[], datetime]) -> Iterator[httpx.Client]:
    """The app as `sextant serve` builds it (its own engine from the settings), on uvicorn."""
    with (
        serve_in_thread(create_app(settings, clock=clock)) as url,
        httpx.Client(base_url=url, timeout=TIMEOUT) as http,
    ):
        assert http.get("/healthz").status_code == 200
        yield http


@contextmanager
def load(
    url: str, tmp_path: Path, targets: list[str], *, rate: float, max_s: float
) -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """A load client process at ``rate`` requests/s; yields a function that stops it and
    returns every request's result in send order."""
    out, stop = tmp_path / "load.jsonl", tmp_path / "load.stop"
    child = Child.start(
        "tests.serving.load_client", url, out, rate, max_s, stop, *targets, home=tmp_path
    )
    child.wait_for(lambda lines: "started" in lines, timeout_s=60)
    results: list[dict[str, Any]] = []

    def finish() -> list[dict[str, Any]]:
        stop.touch()
        child.wait_for(lambda lines: "done" in lines, timeout_s=max_s + 30)
        assert child.finish(timeout_s=30) == 0, child.stderr()
        results.extend(json.loads(line) for line in out.read_text().splitlines())
        return results

    try:
        yield finish
    finally:
        if child.proc.poll() is None:
            child.kill9()


def failures(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in results if r["status"] != 200]


def versions_of(row: dict[str, Any], family: str) -> str:
    body = row["body"]
    served = (
        body["model_versions"] if "model_versions" in body else body["signal"]["model_versions"]
    )
    return str(served[family])


def test_reload_under_load_switches_once_and_a_corrupt_model_keeps_the_old_one(
    settings: Settings, fresh: Callable[[], datetime], served_home: ServedHome, tmp_path: Path
) -> None:
    client = registry_client(settings)
    xgb, lstm = REGISTERED_MODELS["xgb"], REGISTERED_MODELS["lstm"]
    old = {
        f: str(client.get_model_version_by_alias(REGISTERED_MODELS[f], CHAMPION).version)
        for f in ("xgb", "lstm")
    }
    new_xgb = copy_champion(served_home, "xgb", tmp_path, tamper=False)
    bad_lstm = copy_champion(served_home, "lstm", tmp_path, tamper=True)
    targets = [
        'POST /v1/decisions {"symbol": "BTC/USDT", "account": "reload-load"}',
        f"GET /v1/signals/{ETH}",
    ]
    try:
        with (
            service(settings, fresh) as http,
            load(str(http.base_url), tmp_path, targets, rate=100, max_s=30) as finish,
        ):
            time.sleep(1.5)  # the old models serve a while under load
            client.set_registered_model_alias(xgb, CHAMPION, new_xgb)
            moved = http.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            time.sleep(1.5)
            client.set_registered_model_alias(lstm, CHAMPION, bad_lstm)
            refused = http.post("/v1/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
            time.sleep(1.0)
            after = http.get("/v1/models").json()
            results = finish()
    finally:
        client.set_registered_model_alias(xgb, CHAMPION, old["xgb"])
        client.set_registered_model_alias(lstm, CHAMPION, old["lstm"])

    assert moved.status_code == 200 and moved.json()["versions"]["xgb"] == new_xgb
    assert refused.status_code == 503 and "probe output" in refused.json()["detail"]
    assert len(results) >= 300 and failures(results) == []
    served = [versions_of(r, "xgb") for r in results]
    switch = served.index(new_xgb)
    assert set(served[:switch]) == {old["xgb"]} and set(served[switch:]) == {new_xgb}
    assert 0 < switch < len(served)  # old ones served before the reload, new ones after
    assert {versions_of(r, "lstm") for r in results} == {old["lstm"]}  # the corrupt one never
    lstm_served = {m["family"]: m for m in after["families"]}["lstm"]
    assert str(lstm_served["version"]) == old["lstm"]


def test_materialize_in_another_process_while_requests_flow(
    settings: Settings, fresh: Callable[[], datetime], served_home: ServedHome, tmp_path: Path
) -> None:
    from features.feast_store import FeastStore
    from serving.online_replay import OnlineReplay

    # put the decision services' online vectors back 6 bars: the materialize below loads them
    rewound = served_home.last_close - timedelta(hours=6)
    replay = OnlineReplay(FeastStore(settings), settings.symbols, rewound, rewound)
    replay.load(rewound)
    targets = [
        'POST /v1/decisions {"symbol": "BTC/USDT", "account": "materialize"}',
        f"GET /v1/signals/{ETH}",
        'POST /v1/decisions/batch {"symbols": ["BTC/USDT", "ETH/USDT"], "account": "m-batch"}',
    ]
    env = {**os.environ, "SEXTANT_HOME": str(settings.paths.home), "PYTHONPATH": str(ROOT)}
    try:
        with (
            service(settings, fresh) as http,
            load(str(http.base_url), tmp_path, targets, rate=50, max_s=120) as finish,
        ):
            done = subprocess.run(
                [sys.executable, "-m", "sextant.cli", "features", "materialize", "--json"],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            last = http.post("/v1/decisions", json={"symbol": BTC, "account": "materialize"})
            results = finish()
    finally:  # whatever happened, leave the served home's online store at its latest bar
        FeastStore(settings).materialize()

    assert done.returncode == 0, done.stderr[-3000:]
    assert len(results) >= 50 and failures(results) == []
    decided = [
        datetime.fromisoformat(r["body"]["decision"]["ts"]) for r in results if r["target"] == 0
    ]
    # before: the rewound bar, stale by the clock (flat); after: the bar materialized, fresh
    assert decided[0] == rewound and decided[-1] == served_home.last_close
    assert results[0]["body"]["feature_age_bars"] == 6.0
    assert last.status_code == 200 and last.json()["feature_age_bars"] == 0.0
    assert datetime.fromisoformat(last.json()["decision"]["ts"]) == served_home.last_close
    loaded = {v["view"]: v["rows"] for v in json.loads(done.stdout)["views"]}
    assert loaded["decision_v1_vector"] >= 6 * len(settings.symbols)  # a real materialization


def test_a_restarted_service_keeps_decisions_books_and_the_halted_gate(
    settings: Settings, fresh: Callable[[], datetime]
) -> None:
    account = "restart"
    with service(settings, fresh) as http:
        first = http.post("/v1/decisions", json={"symbol": BTC, "account": account}).json()
        book = http.get("/v1/portfolio", params={"account": account}).json()
        engaged = http.post(
            "/v1/admin/kill-switch",
            json={"engaged": True, "account": account},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
    assert engaged.status_code == 200

    with service(settings, fresh) as http:
        again = http.post("/v1/decisions", json={"symbol": BTC, "account": account}).json()
        stored = http.get(f"/v1/decisions/{first['decision']['id']}")
        after = http.get("/v1/portfolio", params={"account": account}).json()
        halted = http.post("/v1/decisions", json={"symbol": ETH, "account": account}).json()
        released = http.post(
            "/v1/admin/kill-switch",
            json={"engaged": False, "account": account},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )

    assert again["stored"] is True and again["decision"] == first["decision"]
    assert stored.status_code == 200 and stored.json() == first["decision"]
    assert after["positions"] == book["positions"] and after["equity"] == book["equity"]
    assert after["last_bar_open"] == book["last_bar_open"]
    checks = {c["reason_code"]: c["passed"] for c in halted["decision"]["risk_checks"]}
    assert checks["KILL_SWITCH"] is False and halted["decision"]["target_fraction"] == 0.0
    assert released.status_code == 200 and after["gate"]["kill_switch"] is True
    assert first["decision"]["id"] == decision_id(
        account, BTC, datetime.fromisoformat(first["decision"]["ts"])
    )
