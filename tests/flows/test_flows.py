"""The Prefect `ingest` flow: one task per source × symbol, only transient failures retried."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from features.definitions import FEATURE_VIEWS, SERVICE_VECTOR_VIEWS
from features.ingest.store import MarketStore
from flows.ingest import ingest_flow
from flows.pipeline import pipeline_flow
from sextant.errors import SourceRequestError
from tests.fakes.binance_server import FakeBinance, binance_error, run_fake_binance, server_error

T0 = pd.Timestamp("2024-01-01 00:00", tz="UTC")
SERVER_TIME = pd.Timestamp("2024-01-03 00:00", tz="UTC")
KLINES = "/api/v3/klines"

pytestmark = pytest.mark.usefixtures("prefect_api")


@pytest.fixture
def fast_retries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    home = tmp_path / "home"
    monkeypatch.setenv("SEXTANT_HOME", str(home))
    monkeypatch.setenv("SEXTANT_CCXT_MAX_TRIES", "2")
    monkeypatch.setenv("SEXTANT_CCXT_BACKOFF_S", "0.01")
    monkeypatch.setenv("SEXTANT_TASK_RETRY_DELAY_S", "0.05")
    return home


@pytest.fixture
def fake(shared_data: Path) -> Iterator[FakeBinance]:
    candles = {}
    for market, name in (("BTCUSDT", "BTC_USDT"), ("ETHUSDT", "ETH_USDT")):
        frame = pd.read_feather(shared_data / f"roshan7869_algotrading/binance/{name}-1h.feather")
        candles[market] = frame[(frame["date"] >= T0) & (frame["date"] < SERVER_TIME)].reset_index(
            drop=True
        )
    with run_fake_binance(FakeBinance(server_time=SERVER_TIME, candles=candles)) as running:
        yield running


def test_one_task_per_symbol_and_a_transient_failure_is_retried(
    fake: FakeBinance, fast_retries: Path
) -> None:
    # Arrange: the source's own retries (2 tries) are exhausted once, so the task itself must retry
    fake.fail(KLINES, server_error(503), on=1, times=2)

    # Act
    results = ingest_flow(
        source="ccxt", symbols=["BTC/USDT", "ETH/USDT"], api_url=fake.url, since=T0.to_pydatetime()
    )

    # Assert
    assert [(r["symbol"], r["rows_added"]) for r in results] == [("BTC/USDT", 48), ("ETH/USDT", 48)]
    with MarketStore(fast_retries / "market.duckdb", read_only=True) as store:
        assert len(store.candles("BTC/USDT", "1h")) == 48
        assert len(store.candles("ETH/USDT", "1h")) == 48


def test_a_refused_request_is_not_retried(fake: FakeBinance, fast_retries: Path) -> None:
    fake.fail(KLINES, binance_error(-1121, "Invalid symbol."), on=1, times=None)

    with pytest.raises(SourceRequestError, match="BTC/USDT"):
        ingest_flow(source="ccxt", symbols=["BTC/USDT"], api_url=fake.url, since=T0.to_pydatetime())

    assert len(fake.requests_to(KLINES)) == 1  # no task retry, no source retry


@pytest.mark.slow
def test_pipeline_runs_the_whole_chain_on_the_sample(fast_retries: Path) -> None:
    summary = pipeline_flow()

    status = {(row["dataset"], row["symbol"]): row for row in summary["status"]}
    assert status[("candles", "BTC/USDT")]["rows"] == 8_998
    assert status[("candles", "ETH/USDT")]["rows"] == 8_998
    assert status[("funding", "BTC/USDT:USDT")]["rows"] > 1_000
    assert status[("fear_greed", "*")]["rows"] > 300
    assert status[("news", "*")]["rows"] == 834
    assert sum(r["rows_added"] for r in summary["ingest"]) == sum(
        r["rows"] for r in summary["status"]
    )
    views = summary["features materialize"]
    assert {v["view"] for v in views} == {*FEATURE_VIEWS.values(), *SERVICE_VECTOR_VIEWS.values()}
    assert all(v["rows"] > 17_000 for v in views)

    def table(prefix: str) -> list[dict[str, Any]]:
        return next(rows for key, rows in summary.items() if key.startswith(prefix))

    spans = table("evaluation spans")
    assert {r["family"] for r in spans} == {"garch", "xgb", "lstm"}
    assert all(r["selection"] < r["reported"] for r in spans)
    train = table("train (out-of-fold")
    assert [(r["family"], r["span"]) for r in train if r["family"] == "xgb"] == [
        ("xgb", "selection"),
        ("xgb", "reported"),
    ]
    # every direction row has its AUC and its baseline's (the old table printed "-" for them)
    assert all(
        r["auc"] is not None and r["baseline_auc"] is not None
        for r in train
        if r["family"] != "garch"
    )
    assert all(
        r["qlike"] is not None and r["baseline_qlike"] is not None
        for r in train
        if r["family"] == "garch"
    )
    assert all(r["version"] == "1" for r in table("train (ONNX)"))
    promotions = table("promote")
    assert {d["family"] for d in promotions} == {"garch", "xgb", "lstm"}
    assert all("estimate=" in d["detail"] for d in promotions if d["reason"] != "LATENCY_BUDGET")
    explained = table("explain (latest decisions")
    assert [r["symbol"] for r in explained] == ["BTC/USDT", "ETH/USDT"]
    assert all(r["model"] == "offline" and r["grounded"] and r["citations"] for r in explained)
    (report,) = summary["backtest report"]
    html = Path(report["html"]).read_text(encoding="utf-8")
    assert report["dsr_trials"] > 0 and f"trials: {report['dsr_trials']}" in html
    assert "simple_baseline calibration on its reported span: brier" in html
    backtest = table("backtest (reported")
    promoted = {d["family"] for d in promotions if d["promoted"]}
    expected = ["buy_and_hold", "ta_only"]
    if promoted & {"xgb", "lstm"}:
        expected += ["ml_only", "fused"]
    assert [r["strategy"] for r in backtest] == [*expected, "simple_baseline"]
