"""The decision engine on a small real home: Feast online read, ONNX champions, gate, store."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from features.feast_store import online_store_block
from serving.decisions_store import decision_id
from serving.engine import DecisionEngine
from sextant.contracts import CHAMPION, REGISTERED_MODELS, ModelTag
from sextant.decision import CHECK_CODES, Decision, DecisionConfig, RiskConfig, SizingConfig
from sextant.errors import ConfigError
from tests.serving.conftest import ServedHome
from tests.serving.processes import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def engine(served_home: ServedHome) -> Iterator[DecisionEngine]:
    """The engine as the service builds it (champions loaded and checked once)."""
    built = DecisionEngine.from_settings(served_home.settings, account="engine")
    yield built
    built.close()


def account_engine(
    engine: DecisionEngine, account: str, *, risk: RiskConfig | None = None, **champions: object
) -> DecisionEngine:
    """The same champions, stores and settings under another account (each test its own books)."""
    config = engine.config
    if risk is not None:
        config = DecisionConfig(sizing=SizingConfig(timeframe=engine.settings.timeframe), risk=risk)
    return DecisionEngine(
        engine.settings,
        {**engine.champions, **champions},  # type: ignore[dict-item]
        engine.feast,
        engine.store,
        account=account,
        config=config,
        execution=engine.execution,
    )


def failed(decision: Decision) -> set[str]:
    return {c.reason_code for c in decision.risk.checks if not c.passed and c.reason_code}


def test_a_decision_per_sample_symbol_with_every_check_and_recorded(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    symbols = served_home.settings.symbols
    now = served_home.last_close + timedelta(minutes=10)

    batch = engine.decide(now=now)
    decisions = batch.made

    assert [d.symbol for d in decisions] == list(symbols) and batch.ts == served_home.last_close
    assert [r["id"] for r in batch.records] == [
        decision_id("engine", s, served_home.last_close) for s in symbols
    ]
    for d in decisions:
        assert d.ts == served_home.last_close  # the latest bar close at `now`
        assert [c.name.upper() for c in d.risk.checks] == list(CHECK_CODES)
        assert d.feature_age_bars == 0.0 and not failed(d) - {"LOW_CONFIDENCE", "VAR_LIMIT"}
        assert 0.0 < d.models.p_xgb < 1.0 and 0.0 < d.models.p_lstm < 1.0
        assert 0.0 < d.models.garch_variance < 1e-2 and d.models.var_quantile > 1.0
        assert d.price > 0 and d.model_versions == {"garch": "1", "xgb": "1", "lstm": "1"}
        assert not any(math.isnan(v) for v in d.features.values())
        stored = engine.store.get(decision_id("engine", d.symbol, d.ts))
        assert stored is not None and stored["action"] == d.action.value
    state = engine.store.account_state("engine")
    assert state is not None and state.gate_state is not None
    assert engine.store.count(account="engine") == len(symbols)
    # the paper book acted on them: it was opened at the decided bar and holds their orders
    assert state.portfolio is not None
    book, _ = engine.account_state()
    assert book is not None and book.last_bar_open == served_home.last_close - timedelta(hours=1)
    approved = {d.symbol for d in decisions if d.target_fraction != d.current_fraction}
    assert set(book.pending_orders()) == approved
    (mark,) = engine.store.marks("engine")
    assert mark.bar_open == book.last_bar_open and mark.equity == book.equity


def test_a_bar_is_decided_once_per_account_and_symbol(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    once = account_engine(engine, "once")
    first = once.decide(["ETH/USDT"], now=served_home.last_close)
    version = once.store.state_version("once")

    again = once.decide(
        ["BTC/USDT", "ETH/USDT"], now=served_home.last_close + timedelta(minutes=59)
    )

    assert [d.symbol for d in again.made] == ["BTC/USDT"]  # ETH was decided: its record stands
    assert again.records[1] == first.records[0]
    assert once.store.state_version("once") != version  # BTC's decision was written
    third = once.decide(now=served_home.last_close + timedelta(minutes=30))
    assert third.made == () and third.records == again.records


def test_a_held_book_decides_without_a_read_and_another_writers_record_stands(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    from serving.decisions_store import DecisionsStore

    held = account_engine(engine, "held")
    now = served_home.last_close
    first, second = held.settings.symbols[:2]
    held.decide([first], now=now)  # the account's book is read, then held
    # another writer records the second symbol's decision without touching the account's state
    (theirs,) = account_engine(engine, "other").evaluate([second], now=now)
    theirs = dataclasses.replace(theirs, feature_age_bars=theirs.feature_age_bars + 0.5)
    version = held.store.state_version("held")
    with DecisionsStore.open(served_home.settings.paths.decisions_db) as other:
        other.record([theirs], account="held")
    statements: list[str] = []
    held.store._con.set_trace_callback(statements.append)
    try:
        again = held.decide([first], now=now)
        answered = held.decide([second], now=now)
    finally:
        held.store._con.set_trace_callback(None)
    writes = [s for s in statements if s.lstrip().upper().startswith(("INSERT", "BEGIN"))]
    # the first symbol's record is the held book's: answered without a statement; the held book
    # decided the second without reading the store first, its write met the stored record, and
    # that record is the answer (nothing of the held book's decision was written)
    assert again.made == () and statements.index(writes[0]) == 0
    assert any(s.lstrip().startswith("INSERT INTO decisions") for s in writes)
    assert answered.made == ()
    assert answered.records[0]["feature_age_bars"] == theirs.feature_age_bars
    assert held.store.state_version("held") == version


def test_an_accounts_first_decision_in_a_process_writes_only_the_books_it_changed(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    from serving.decisions_store import DecisionsStore

    # Arrange: the account as another process left it, then an engine on a store of its own
    # (a new process: nothing of that write remembered), which reads the book to decide
    first, second = engine.settings.symbols[:2]
    now = served_home.last_close
    account_engine(engine, "first-read").decide([first], now=now)
    db = served_home.settings.paths.decisions_db

    def books() -> dict[str, str]:
        with contextlib.closing(sqlite3.connect(db)) as raw:
            query = "SELECT symbol, book FROM account_books WHERE account = 'first-read'"
            return dict(raw.execute(query).fetchall())

    before = books()
    statements: list[str] = []
    with DecisionsStore.open(db) as store:
        fresh = DecisionEngine(
            engine.settings, engine.champions, engine.feast, store, account="first-read",
            config=engine.config, execution=engine.execution,
        )  # fmt: skip
        store._con.set_trace_callback(statements.append)
        made = fresh.decide([second], now=now).made
        store._con.set_trace_callback(None)
    # Assert: the rows written are the books that changed, no more (none deleted and rewritten)
    after = books()
    written = [s for s in statements if "account_books" in s and not s.startswith("SELECT")]
    changed = {symbol for symbol, book in after.items() if before.get(symbol) != book}
    assert [d.symbol for d in made] == [second] and after.keys() == before.keys()
    assert all(s.startswith("INSERT") for s in written) and len(written) == len(changed)
    assert changed <= {second}
    assert {s for s in changed if any(f"'{s}'" in w for w in written)} == changed


def test_the_online_store_cannot_answer_for_a_past_bar(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    with pytest.raises(ConfigError, match=r"holds only the\s+latest vectors"):
        engine.decide(now=served_home.last_close - timedelta(hours=3))


def test_the_online_store_is_read_again_only_after_a_commit_to_it(
    engine: DecisionEngine, served_home: ServedHome, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = account_engine(engine, "reads")  # its own prepared reads
    reads: list[tuple[str, ...]] = []
    online_read = reader.feast.online_read

    def counted(symbols: tuple[str, ...]) -> object:
        reads.append(symbols)
        return online_read(symbols)

    monkeypatch.setattr(reader.feast, "online_read", counted)
    first = reader.evaluate(now=served_home.last_close)
    again = reader.evaluate(now=served_home.last_close)
    assert len(reads) == 1  # nothing committed to the online store in between
    assert [d.as_record() for d in again] == [d.as_record() for d in first]

    # another connection commits to the online store's file (as a materialization does)
    online = Path(str(online_store_block(served_home.settings)["path"]))
    with contextlib.closing(sqlite3.connect(online)) as con, con:
        con.execute("CREATE TABLE IF NOT EXISTS sextant_touch (x INTEGER)")
    after = reader.evaluate(now=served_home.last_close)
    assert len(reads) == 2
    assert [d.as_record() for d in after] == [d.as_record() for d in first]


def test_an_unknown_symbol_is_refused_by_name(engine: DecisionEngine) -> None:
    from sextant.errors import UnknownSymbolError

    with pytest.raises(UnknownSymbolError, match="DOGE/USDT") as refused:
        engine.decide(["BTC/USDT", "DOGE/USDT"])
    assert refused.value.symbol == "DOGE/USDT"


def test_stale_features_give_a_flat_decision(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    stale = account_engine(engine, "stale")
    now = served_home.last_close + timedelta(hours=5, minutes=1)

    batch = stale.decide(now=now)

    assert batch.ts == served_home.last_close  # the data's bar: nothing newer to decide
    for d in batch.made:
        assert d.feature_age_bars == 5.0
        assert "STALE_FEATURES" in failed(d)
        assert d.target_fraction == 0.0 and d.action.value in {"HOLD", "CLOSE"}


def test_missing_direction_champions_give_model_unavailable(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    client = engine_client(served_home)
    versions = {
        family: client.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION).version
        for family in ("xgb", "lstm")
    }
    for family in versions:
        client.delete_registered_model_alias(REGISTERED_MODELS[family], CHAMPION)
    try:
        partial = DecisionEngine.from_settings(served_home.settings, account="no-champion")
    finally:
        for family, version in versions.items():
            client.set_registered_model_alias(REGISTERED_MODELS[family], CHAMPION, version)
    assert set(partial.champions) == {"garch"}

    decisions = partial.decide(now=served_home.last_close).made

    for d in decisions:
        assert math.isnan(d.models.p_xgb) and math.isnan(d.models.p_lstm)
        assert "MODEL_UNAVAILABLE" in failed(d) and d.target_fraction == 0.0
        assert d.model_versions == {"garch": "1"}
    partial.close()


def test_a_broken_session_is_a_model_error_the_breaker_counts(
    engine: DecisionEngine, served_home: ServedHome
) -> None:
    # a real onnxruntime session of another graph: running it with the XGBoost feeds fails
    broken = dataclasses.replace(engine.champions["xgb"], session=engine.champions["garch"].session)
    faulty = account_engine(engine, "broken", risk=RiskConfig(max_consecutive_errors=2), xgb=broken)

    decisions = faulty.decide(now=served_home.last_close).made

    assert all(math.isnan(d.models.p_xgb) for d in decisions)
    assert all(not math.isnan(d.models.p_lstm) for d in decisions)  # the others still run
    breaker = [d.risk.check("CIRCUIT_BREAKER") for d in decisions]
    assert [c.observed for c in breaker] == [1.0, 2.0]  # one error per decision, in a row
    assert "CIRCUIT_BREAKER" in failed(decisions[-1]) and decisions[-1].target_fraction == 0.0


def test_a_champion_whose_features_differ_is_refused_at_start_up(
    served_home: ServedHome,
) -> None:
    client = engine_client(served_home)
    name = REGISTERED_MODELS["xgb"]
    version = client.get_model_version_by_alias(name, CHAMPION)
    recorded = version.tags[ModelTag.FEATURES]
    tampered = [f for f in json.loads(recorded) if f != "rsi_14"] + ["rsi_15"]
    client.set_model_version_tag(name, version.version, ModelTag.FEATURES, json.dumps(tampered))
    try:
        with pytest.raises(ConfigError) as refused:
            DecisionEngine.from_settings(served_home.settings, account="tampered")
    finally:
        client.set_model_version_tag(name, version.version, ModelTag.FEATURES, recorded)
    message = str(refused.value)
    assert f"{name} version {version.version}" in message
    assert "rsi_14" in message and "rsi_15" in message


def test_no_torch_or_xgboost_after_a_decision(served_home: ServedHome) -> None:
    script = textwrap.dedent(
        f"""
        import json, sys
        from datetime import datetime
        from serving.engine import DecisionEngine
        from sextant.settings import load_settings
        engine = DecisionEngine.from_settings(load_settings(), account="imports")
        batch = engine.decide(now=datetime.fromisoformat({served_home.last_close.isoformat()!r}))
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "xgboost"))
        print(json.dumps({{"decided": len(batch.made), "heavy": heavy}}))
        """
    )
    env = {**os.environ, "SEXTANT_HOME": str(served_home.settings.paths.home)}

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"decided": len(served_home.settings.symbols), "heavy": []}


def engine_client(served_home: ServedHome):  # type: ignore[no-untyped-def]
    from serving.champions import registry_client

    return registry_client(served_home.settings)


def test_decide_now_must_be_aware(engine: DecisionEngine) -> None:
    with pytest.raises(ConfigError, match="timezone-aware"):
        engine.decide(now=datetime(2024, 1, 1))


def test_cli_decide_prints_the_full_record_and_a_replay_shows_the_stored_one(
    served_home: ServedHome,
) -> None:
    from tests.sextant.cli.test_ingest_cli import sextant

    home = served_home.settings.paths.home
    args = ("decide", "--symbol", "ETH/USDT", "--account", "cli", "--json")
    at = ("--at", (served_home.last_close + timedelta(hours=2)).isoformat())

    strict = {"parse_constant": _not_json}  # NaN must be printed as null
    first = json.loads(sextant(home, *args, *at).stdout, **strict)["decisions"]
    again = sextant(home, *args, *at)

    (record,) = first
    assert record["id"] == decision_id("cli", "ETH/USDT", datetime.fromisoformat(record["ts"]))
    assert record["symbol"] == "ETH/USDT" and len(record["risk_checks"]) == len(CHECK_CODES)
    assert {"models", "features", "model_versions", "fused_score"} <= set(record)
    assert record["feature_age_bars"] == 2.0 and record["target_fraction"] == 0.0  # stale
    # the bar is decided already (the gate advanced): the stored record stands and is printed
    assert json.loads(again.stdout, **strict)["decisions"][0]["id"] == record["id"]


def _not_json(constant: str) -> float:
    raise AssertionError(f"{constant} printed: not JSON")


def test_two_processes_deciding_one_account_lose_no_order(
    served_home: ServedHome, tmp_path: Path
) -> None:
    """Two service workers decide different symbols of one account at once: whichever writes
    second sees the state change, decides again from the new book, and both orders stand."""
    from tests.serving.engine_worker import PERMISSIVE
    from tests.serving.processes import Child

    home = served_home.settings.paths.home
    go = tmp_path / "go"
    now = (served_home.last_close + timedelta(minutes=5)).isoformat()
    symbols = served_home.settings.symbols
    children = [
        Child.start("tests.serving.engine_worker", "workers", s, now, go, len(symbols), home=home)
        for s in symbols
    ]
    try:
        for child in children:
            child.wait_for(lambda lines: "ready" in lines, timeout_s=120)
        go.touch()
        results = [
            json.loads(child.wait_for(lambda lines: len(lines) > 1, timeout_s=60)[-1])
            for child in children
        ]
    finally:
        for child in children:
            child.finish(timeout_s=60) if child.proc.poll() is not None else child.kill9()
    assert [r["made"] for r in results] == [[s] for s in symbols]
    # all read the same state: the first writer won, each other one decided again, once
    assert sorted(r["retries"] for r in results) == [0] + [1] * (len(symbols) - 1)

    config = DecisionConfig(sizing=SizingConfig(timeframe="1h"), risk=PERMISSIVE)
    engine = DecisionEngine.from_settings(served_home.settings, account="workers", config=config)
    try:
        book, _ = engine.account_state()
        records = engine.store.latest(10, account="workers")
        ordered = {r["symbol"] for r in records if r["target_fraction"] != r["current_fraction"]}
        assert len(records) == len(symbols) and ordered, "the permissive limits made no order"
        assert book is not None and set(book.pending_orders()) == ordered  # none lost
        assert len(engine.store.marks("workers")) == 1  # the bar was applied once
    finally:
        engine.close()
