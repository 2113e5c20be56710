"""The Prefect `trade` flow and the read-only `sextant paper` commands on a small real home.

The home has the sample ingested and its features materialized but no trained models (training
costs about a minute; the engine's and the parity tests decide with champions): every decision
is a flat MODEL_UNAVAILABLE one, which is what the flow must record, book and summarise.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.trade import trade_flow
from serving.decisions_store import DecisionsStore, decision_id
from sextant.cli.main import app
from sextant.errors import UnknownSymbolError
from sextant.settings import Settings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_api")]


@dataclass(frozen=True)
class TradeHome:
    settings: Settings
    last_close: datetime


@pytest.fixture(scope="module")
def trade_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TradeHome]:
    from features.build import build_features
    from features.feast_store import FeastStore, materialize
    from features.ingest.service import ingest_source
    from features.ingest.sources.sample import SampleSource
    from features.ingest.store import MarketStore
    from sextant.settings import load_settings

    settings = load_settings(home=tmp_path_factory.mktemp("trade-home"))
    with MarketStore(settings.paths.market_db) as store:
        ingest_source(SampleSource(), store)
    build_features(settings)
    materialize(settings)
    as_of = FeastStore(settings).online_vectors("decision_v1", settings.symbols).as_of
    assert as_of[0] is not None
    yield TradeHome(settings, as_of[0].to_pydatetime())


def cli(home: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"SEXTANT_HOME": str(home)})
    return result.exit_code, result.stdout, result.stderr


def test_trade_decides_each_symbol_once_per_bar_and_books_it(trade_home: TradeHome) -> None:
    home = str(trade_home.settings.paths.home)
    now = trade_home.last_close + timedelta(minutes=5)
    symbols = trade_home.settings.symbols

    first = trade_flow(home=home, account="flow", now=now)
    again = trade_flow(home=home, account="flow", now=now + timedelta(minutes=20))

    assert first["bar"] == trade_home.last_close.isoformat()
    assert first["decided"] == len(symbols) and first["already_recorded"] == 0
    assert first["actions"] == {"HOLD": len(symbols)}  # no champion: nothing to act on
    assert first["trading_state"] == "ACTIVE" and first["model_versions"] == {}
    assert first["equity"] == pytest.approx(100_000.0)
    assert first["wal_pages_left"] == 0  # the flow checkpointed the store
    # one decision per account, symbol and bar: the second run answers from the store
    assert again["decided"] == 0 and again["already_recorded"] == len(symbols)
    assert (
        again["decision_ids"]
        == first["decision_ids"]
        == [decision_id("flow", s, trade_home.last_close) for s in symbols]
    )
    with DecisionsStore.open(trade_home.settings.paths.decisions_db, readonly=True) as store:
        for ident in first["decision_ids"]:
            record = store.get(ident)
            assert record is not None
            failed = {c["reason_code"] for c in record["risk_checks"] if not c["passed"]}
            assert "MODEL_UNAVAILABLE" in failed and record["target_fraction"] == 0.0
        (mark,) = store.marks("flow")  # the book was opened at the decided bar
        assert mark.bar_open == trade_home.last_close - timedelta(hours=1)


def test_an_unknown_symbol_fails_the_flow_at_once(trade_home: TradeHome) -> None:
    with pytest.raises(UnknownSymbolError, match="DOGE/USDT"):
        trade_flow(home=str(trade_home.settings.paths.home), account="x", symbols=["DOGE/USDT"])


def test_paper_status_and_history_read_the_recorded_account(trade_home: TradeHome) -> None:
    home = trade_home.settings.paths.home
    trade_flow(home=str(home), account="cli", now=trade_home.last_close + timedelta(minutes=5))

    code, out, _ = cli(home, "paper", "status", "--account", "cli", "--json")
    status = json.loads(out)
    code_h, out_h, _ = cli(home, "paper", "history", "--account", "cli", "--json")
    history = json.loads(out_h)
    code_t, out_t, _ = cli(home, "paper", "status", "--account", "cli")

    assert code == code_h == code_t == 0
    assert status["recorded"] is True and status["account"] == "cli"
    assert status["last_bar_close"] == trade_home.last_close.isoformat()
    assert status["equity"] == status["cash"] == pytest.approx(100_000.0)
    assert status["trading_state"] == "ACTIVE" and status["gate"]["kill_switch"] is False
    assert status["decisions"] == len(trade_home.settings.symbols)
    positions = {p["symbol"]: p for p in status["positions"]}
    assert set(positions) == set(trade_home.settings.symbols)
    for p in positions.values():
        assert p["units"] == 0.0 and p["notional"] == 0.0 and p["last_close"] > 0
        assert p["pending_units"] is None
    (mark,) = history["marks"]
    assert mark["bar_open"] == (trade_home.last_close - timedelta(hours=1)).isoformat()
    assert mark["equity"] == pytest.approx(100_000.0) and history["open_trades"] == []
    assert "paper account cli" in out_t and "ACTIVE" in out_t


def test_paper_commands_on_a_home_without_records_say_so(tmp_path: Path) -> None:
    code, out, err = cli(tmp_path, "paper", "status", "--json")
    code_h, _, err_h = cli(tmp_path, "paper", "history")

    assert code == code_h == 0
    assert json.loads(out)["recorded"] is False
    assert "no paper trading recorded" in err and "no paper trading recorded" in err_h
    assert not (tmp_path / "decisions.sqlite").exists()  # reading created nothing
