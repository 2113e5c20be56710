"""The decisions store: round trips of real decisions, stable ids, one transaction per write."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from serving.decisions_store import SCHEMA_VERSION, DecisionsStore, decision_id
from sextant.decision import Decision, ModelOutputs, PortfolioState, RiskGate, TradingState, decide
from sextant.errors import (
    ConfigError,
    DataValidationError,
    RecordConflictError,
    SourceUnavailableError,
    StateChangedError,
)
from sextant.paths import StatePaths
from tests.serving.store_writer import ACCOUNT, CONFIG, FEATURES, MODELS, bar_ts

BTC, ETH = "BTC/USDT", "ETH/USDT"


def make_decision(
    symbol: str,
    bar: int,
    gate: RiskGate | None = None,
    *,
    equity: float = 100_000.0,
    models: ModelOutputs = MODELS,
    price: float = 100.0,
) -> Decision:
    return decide(
        symbol,
        bar_ts(bar),
        FEATURES,
        models,
        PortfolioState(equity, {}),
        CONFIG,
        gate or RiskGate(CONFIG.risk),
        price=price,
        model_versions={"xgb": "3", "lstm": "2"},
    )


def nulls(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (what the store reads back)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: nulls(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [nulls(v) for v in value]
    return value


def stored_form(decision: Decision, account: str = ACCOUNT) -> dict[str, Any]:
    """The record as the store gives it back: id and account first, NaN as None."""
    ident = decision_id(account, decision.symbol, decision.ts)
    stored: dict[str, Any] = nulls({"id": ident, "account": account, **decision.as_record()})
    return stored


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return StatePaths(tmp_path / "home").decisions_db


@pytest.fixture
def store(db: Path) -> Iterator[DecisionsStore]:
    with DecisionsStore.open(db) as opened:
        yield opened


def test_a_decision_round_trips_with_its_id_and_account(store: DecisionsStore) -> None:
    # Arrange: a real decision, with NaN inputs (no LSTM) and NaN outputs (no stop on a HOLD)
    decision = make_decision(BTC, 0, models=replace(MODELS, p_lstm=math.nan))
    assert math.isnan(decision.as_record()["models"]["p_lstm"])

    # Act
    written = store.record([decision], account=ACCOUNT)
    read = store.get(written.ids[0])

    # Assert
    assert written.inserted == 1 and written.ids == (decision_id(ACCOUNT, BTC, decision.ts),)
    assert read == stored_form(decision)
    assert read is not None and read["models"]["p_lstm"] is None
    assert read["risk_checks"] == nulls(decision.as_record()["risk_checks"])
    assert store.get("no-such-id") is None


def test_non_finite_floats_read_back_as_null_except_in_the_gate_state(
    store: DecisionsStore,
) -> None:
    # Arrange: a fresh gate's state vector holds NaN (no peak equity yet)
    gate = RiskGate(CONFIG.risk)
    portfolio = {"cash": 1.0, "stop": math.nan, "take_profit": math.inf, "orders": [-math.inf]}

    # Act
    store.record([], account=ACCOUNT, portfolio=portfolio, gate=gate, as_of=bar_ts(0))
    state = store.account_state(ACCOUNT)

    # Assert
    assert state is not None and state.as_of == bar_ts(0)
    assert state.portfolio == {"cash": 1.0, "stop": None, "take_profit": None, "orders": [None]}
    assert state.gate_state is not None
    assert len(state.gate_state) == len(gate.state_vector())
    assert all(
        (math.isnan(a) and math.isnan(b)) or a == b
        for a, b in zip(state.gate_state, gate.state_vector(), strict=True)
    )
    assert state.trading_state is TradingState.ACTIVE


def test_decision_ids_are_stable_per_account_symbol_and_bar() -> None:
    ts = datetime(2024, 3, 1, 12, tzinfo=UTC)
    same_instant = ts.astimezone(timezone(timedelta(hours=2)))

    ident = decision_id(ACCOUNT, BTC, ts)

    assert ident == decision_id(ACCOUNT, BTC, same_instant)
    assert ident.startswith("20240301T120000Z-")
    others = {
        decision_id("live", BTC, ts),
        decision_id(ACCOUNT, ETH, ts),
        decision_id(ACCOUNT, BTC, ts + timedelta(minutes=1)),
    }
    assert ident not in others and len(others) == 3
    with pytest.raises(DataValidationError, match="naive"):
        decision_id(ACCOUNT, BTC, datetime(2024, 3, 1, 12))


def test_recording_a_bar_again_with_identical_decisions_changes_nothing(
    store: DecisionsStore,
) -> None:
    # Arrange
    gate = RiskGate(CONFIG.risk)
    decisions = [make_decision(BTC, 0, gate), make_decision(ETH, 0, gate)]
    first = store.record(decisions, account=ACCOUNT, portfolio={"n": 1}, gate=gate)

    # Act: a restarted service records the same bar again, with a state that moved on
    again = store.record(decisions, account=ACCOUNT, portfolio={"n": 2}, gate=RiskGate(CONFIG.risk))

    # Assert
    assert again.ids == first.ids and (first.inserted, again.inserted) == (2, 0)
    assert store.count() == 2
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"n": 1}


def test_another_decision_for_a_recorded_bar_is_a_conflict_naming_its_id(
    store: DecisionsStore,
) -> None:
    # Arrange
    recorded = make_decision(BTC, 0, price=100.0)
    ident = store.record([recorded], account=ACCOUNT, portfolio={"n": 1}).ids[0]
    remade = make_decision(BTC, 0, price=101.0)

    # Act
    with pytest.raises(RecordConflictError, match=ident) as caught:
        store.record([remade], account=ACCOUNT, portfolio={"n": 2})

    # Assert: the stored decision and state stand
    assert caught.value.record_id == ident and caught.value.field == "id"
    assert isinstance(caught.value, DataValidationError)
    assert store.get(ident) == stored_form(recorded)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"n": 1}


def test_a_conflict_in_a_batch_leaves_nothing_of_the_batch(store: DecisionsStore) -> None:
    # Arrange: BTC of bar 0 is recorded; the new batch adds ETH but remakes BTC differently
    store.record([make_decision(BTC, 0, price=100.0)], account=ACCOUNT, portfolio={"n": 1})
    batch = [make_decision(ETH, 0), make_decision(BTC, 0, price=101.0)]

    # Act
    with pytest.raises(RecordConflictError):
        store.record(batch, account=ACCOUNT, portfolio={"n": 2})

    # Assert: ETH, inserted before the conflict showed, was rolled back with the rest
    assert store.count() == 1 and store.count(symbol=ETH) == 0
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"n": 1}


def test_a_failure_in_the_middle_of_a_write_leaves_nothing_of_it(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: the state write fails inside the transaction, after the decision's insert
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute(
            "CREATE TRIGGER fail_state BEFORE INSERT ON account_state "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    decision = make_decision(BTC, 0)

    # Act
    with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
        store.record([decision], account=ACCOUNT, portfolio={"n": 1})

    # Assert: no decision, no state; the store keeps working once the fault is gone
    assert store.count() == 0 and store.account_state(ACCOUNT) is None
    with closing(sqlite3.connect(db, isolation_level=None)) as other:
        other.execute("DROP TRIGGER fail_state")
    assert store.record([decision], account=ACCOUNT, portfolio={"n": 1}).inserted == 1


def test_latest_returns_newest_first_with_filters(store: DecisionsStore) -> None:
    # Arrange: 3 bars x 2 symbols in one account, 1 bar in another
    gate = RiskGate(CONFIG.risk)
    for bar in range(3):
        store.record(
            [make_decision(BTC, bar, gate), make_decision(ETH, bar, gate)], account=ACCOUNT
        )
    store.record([make_decision(BTC, 5)], account="live")

    # Act
    newest = store.latest(3)
    btc_paper = store.latest(10, account=ACCOUNT, symbol=BTC)
    window = store.latest(10, account=ACCOUNT, start=bar_ts(1), end=bar_ts(2))

    # Assert
    assert [(r["account"], r["symbol"], r["ts"]) for r in newest] == [
        ("live", BTC, bar_ts(5).isoformat()),
        (ACCOUNT, BTC, bar_ts(2).isoformat()),
        (ACCOUNT, ETH, bar_ts(2).isoformat()),
    ]
    assert [r["ts"] for r in btc_paper] == [bar_ts(b).isoformat() for b in (2, 1, 0)]
    assert {(r["symbol"], r["ts"]) for r in window} == {
        (BTC, bar_ts(1).isoformat()),
        (ETH, bar_ts(1).isoformat()),
    }
    assert store.count() == 7 and store.count(account=ACCOUNT) == 6
    assert store.count(account=ACCOUNT, symbol=ETH, start=bar_ts(1)) == 2
    assert store.latest(0) == []


def test_a_halted_gate_is_halted_again_after_reopening(db: Path) -> None:
    # Arrange: a 3 % fall through decide() trips the 1 % daily loss and 2 % hard drawdown
    gate = RiskGate(CONFIG.risk)
    with DecisionsStore.open(db) as store:
        store.record([make_decision(BTC, 0, gate)], account=ACCOUNT, gate=gate, portfolio={})
        halted = make_decision(BTC, 1, gate, equity=97_000.0)
        store.record([halted], account=ACCOUNT, gate=gate, portfolio={})
    assert gate.state is TradingState.HALTED

    # Act
    with DecisionsStore.open(db, readonly=True) as reader:
        state = reader.account_state(ACCOUNT)
        record = reader.get(decision_id(ACCOUNT, BTC, bar_ts(1)))
    assert state is not None
    restored = state.risk_gate(CONFIG.risk)

    # Assert
    assert restored is not None and restored.state is TradingState.HALTED
    assert restored.status() == gate.status()
    assert state.trading_state is TradingState.HALTED
    assert record is not None and record["trading_state"] == "HALTED"
    later = make_decision(BTC, 2, restored, equity=97_000.0)
    assert later.risk.state is TradingState.HALTED and later.target_fraction == 0.0


def test_state_left_out_of_a_write_keeps_its_stored_value(store: DecisionsStore) -> None:
    gate = RiskGate(CONFIG.risk)
    store.record([make_decision(BTC, 0, gate)], account=ACCOUNT, portfolio={"n": 1}, gate=gate)

    store.record([make_decision(BTC, 1, gate)], account=ACCOUNT, portfolio={"n": 2})

    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"n": 2} and state.as_of == bar_ts(1)
    assert state.gate_state is not None and state.trading_state is TradingState.ACTIVE


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda s: s.record([make_decision(BTC, 0)], account=""), "account"),
        (lambda s: s.record([], account=ACCOUNT), None),
        (lambda s: s.record([], account=ACCOUNT, portfolio={}), "as_of"),
        (
            lambda s: s.record([], account=ACCOUNT, portfolio={}, as_of=datetime(2024, 3, 1)),
            "as_of",
        ),
        (
            lambda s: s.record([make_decision(BTC, 0)], account=ACCOUNT, as_of=bar_ts(1)),
            "as_of",
        ),
        (lambda s: s.record([make_decision(BTC, 0), make_decision(ETH, 1)], account=ACCOUNT), "ts"),
        (
            lambda s: s.record([make_decision(BTC, 0), make_decision(BTC, 0)], account=ACCOUNT),
            "symbol",
        ),
        (lambda s: s.record([{"symbol": BTC}], account=ACCOUNT), "decisions"),
        (
            lambda s: s.record([make_decision(BTC, 0)], account=ACCOUNT, portfolio={"x": object()}),
            "portfolio",
        ),
        (lambda s: s.record([make_decision(BTC, 0)], account=ACCOUNT, portfolio=[1]), "portfolio"),
        (lambda s: s.latest(-1), "n"),
        (lambda s: s.latest(5, start=datetime(2024, 3, 1)), "start"),
    ],
)
def test_bad_input_is_refused_naming_it_and_nothing_is_stored(
    store: DecisionsStore, call: Any, field: str | None
) -> None:
    store.record([make_decision(BTC, 9)], account=ACCOUNT, portfolio={"n": 1})

    with pytest.raises(DataValidationError) as caught:
        call(store)

    assert caught.value.field == field
    assert store.count() == 1
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"n": 1}


def test_the_schema_is_created_once_in_wal_mode_with_a_version(db: Path) -> None:
    # Act: open twice (the second open finds everything in place)
    with DecisionsStore.open(db) as store:
        store.record([make_decision(BTC, 0)], account=ACCOUNT)
    with DecisionsStore.open(db) as store:
        count = store.count()

    # Assert
    with closing(sqlite3.connect(db, isolation_level=None)) as raw:
        mode = raw.execute("PRAGMA journal_mode").fetchone()[0]
        version = raw.execute("SELECT value FROM store_meta").fetchall()
    assert count == 1 and mode == "wal" and version == [(str(SCHEMA_VERSION),)]


def test_a_store_from_a_newer_sextant_is_refused(db: Path) -> None:
    DecisionsStore.open(db).close()
    with closing(sqlite3.connect(db, isolation_level=None)) as raw:
        raw.execute("UPDATE store_meta SET value = ?", (str(SCHEMA_VERSION + 1),))

    with pytest.raises(ConfigError, match="schema version"):
        DecisionsStore.open(db)
    with pytest.raises(ConfigError, match="schema version"):
        DecisionsStore.open(db, readonly=True)


def test_a_reader_creates_nothing_and_writes_nothing(db: Path) -> None:
    with pytest.raises(ConfigError, match="no decisions store"):
        DecisionsStore.open(db, readonly=True)
    assert not db.exists()

    DecisionsStore.open(db).close()
    with (
        DecisionsStore.open(db, readonly=True) as reader,
        pytest.raises(ConfigError, match="read-only"),
    ):
        reader.record([make_decision(BTC, 0)], account=ACCOUNT)


def test_a_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "decisions.sqlite"
    junk.write_bytes(b"not a database at all" * 100)

    with pytest.raises(ConfigError, match="not a usable decisions store"):
        DecisionsStore.open(junk)


def test_the_store_opens_from_a_url_and_refuses_other_engines(db: Path) -> None:
    with DecisionsStore.open(f"sqlite:///{db}") as store:
        store.record([make_decision(BTC, 0)], account=ACCOUNT)
    assert db.is_file()

    with pytest.raises(ConfigError, match="postgresql"):
        DecisionsStore.open("postgresql://localhost/sextant")
    with pytest.raises(ConfigError, match="synchronous"):
        DecisionsStore.open(db, synchronous="OFF")  # type: ignore[arg-type]


def test_full_synchronous_mode_stores_the_same(db: Path) -> None:
    decision = make_decision(BTC, 0)
    with DecisionsStore.open(db, synchronous="FULL") as store:
        store.record([decision], account=ACCOUNT)
        assert store.get(decision_id(ACCOUNT, BTC, decision.ts)) == stored_form(decision)


def test_a_snapshot_is_one_view_while_another_connection_writes(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: bar 0 stored; a second writer connection stands in for another process
    gate = RiskGate(CONFIG.risk)
    store.record([make_decision(BTC, 0, gate)], account=ACCOUNT, portfolio={"n": 1})

    with DecisionsStore.open(db) as writer, store.snapshot():
        before = store.count()
        # Act: a commit lands between two reads of one snapshot
        writer.record([make_decision(BTC, 1, gate)], account=ACCOUNT, portfolio={"n": 2})
        with store.snapshot():  # nested: same view
            state = store.account_state(ACCOUNT)

    # Assert: the snapshot saw the store as it was at its first read, then the new write
    assert before == 1 and state is not None and state.portfolio == {"n": 1}
    assert store.count() == 2


def test_checkpoint_folds_the_wal_into_the_database(store: DecisionsStore) -> None:
    for bar in range(5):
        store.record([make_decision(BTC, bar)], account=ACCOUNT, portfolio={"bar": bar})

    assert store.checkpoint() == 0
    assert store.count() == 5


def test_checkpoint_restarts_the_wal_so_the_next_decision_write_does_not(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: 20 bars in the WAL
    for bar in range(20):
        store.record([make_decision(BTC, bar)], account=ACCOUNT, portfolio={"bar": bar})
    with closing(sqlite3.connect(db, isolation_level=None)) as probe:
        _, before, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        # Act
        store.checkpoint()
        # Assert: the WAL was restarted by checkpoint()'s own small write (a couple of frames
        # from its start), not left for the next decision write to restart
        _, after, _ = probe.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        stamp = probe.execute(
            "SELECT value FROM store_meta WHERE key = 'checkpointed_at'"
        ).fetchone()
    assert before >= 20 and 0 < after <= 4
    assert stamp is not None


def test_writes_leave_the_wal_to_the_checkpointer_well_past_8192_pages(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: the database file as the schema left it (a checkpoint copies pages into it)
    store.checkpoint()
    wal = db.with_name(db.name + "-wal")
    frame = 4096 + 24  # a WAL frame: one page and its header
    db_size = db.stat().st_size
    # Act: decision writes until the WAL holds 10,000 pages (the batch endpoint writes about
    # 13,000 a second between the service checkpointer's rounds), bounded
    bar = 0
    while wal.stat().st_size < 10_000 * frame and bar < 20_000:
        store.record([make_decision(BTC, bar)], account=ACCOUNT, portfolio={"bar": bar})
        bar += 1
    # Assert: no commit folded the WAL into the database inline (SQLite does that in the commit
    # that crosses ``wal_autocheckpoint``, with fsyncs: tens of ms on the decision path); the
    # checkpointer's round then does, off the decision path
    assert wal.stat().st_size >= 10_000 * frame
    assert db.stat().st_size == db_size
    assert store.checkpoint() == 0
    assert db.stat().st_size > db_size
    assert store.count() == bar


def test_a_writer_locked_out_past_the_busy_timeout_gets_a_transient_error(db: Path) -> None:
    # Arrange: another connection holds the write lock
    DecisionsStore.open(db).close()
    with (
        closing(sqlite3.connect(db, isolation_level=None)) as other,
        DecisionsStore.open(db, busy_timeout_s=0.1) as store,
    ):
        other.execute("BEGIN IMMEDIATE")

        # Act
        with pytest.raises(SourceUnavailableError, match=r"is busy: database is locked"):
            store.record([make_decision(BTC, 0)], account=ACCOUNT, portfolio={"n": 1})
        other.execute("ROLLBACK")

        # Assert: nothing was written, and the store writes once the lock is free
        assert store.count() == 0
        assert store.record([make_decision(BTC, 0)], account=ACCOUNT).inserted == 1


def test_a_snapshot_is_for_reads_only(store: DecisionsStore) -> None:
    with store.snapshot(), pytest.raises(RuntimeError, match="snapshot"):
        store.record([make_decision(BTC, 0)], account=ACCOUNT)
    assert store.record([make_decision(BTC, 0)], account=ACCOUNT).inserted == 1


def test_a_write_checked_against_the_version_read_refuses_another_writers_change(
    store: DecisionsStore, db: Path
) -> None:
    from serving.decisions_store import BookMark
    from sextant.errors import StateChangedError

    gate = RiskGate(CONFIG.risk)
    first = store.record(
        [make_decision(BTC, 0, gate)], account=ACCOUNT, gate=gate, expect_version=None
    )
    read = store.account_state(ACCOUNT)
    assert read is not None and read.version == first.version == store.state_version(ACCOUNT)
    with DecisionsStore.open(db) as other:  # another process's write in between
        other.record([make_decision(ETH, 0, gate)], account=ACCOUNT, gate=gate)

    mark = BookMark(bar_ts(0), 101.0, 50.0, 1.0, 0.5, 0.1, 0.0)
    with pytest.raises(StateChangedError, match=f"account {ACCOUNT}'s state changed"):
        store.record(
            [make_decision(BTC, 1, gate)],
            account=ACCOUNT,
            gate=gate,
            marks=[mark],
            expect_version=read.version,
        )

    assert store.count(account=ACCOUNT) == 2 and store.marks(ACCOUNT) == []  # nothing written
    with pytest.raises(StateChangedError):  # no state expected, but there is one
        store.record([make_decision(BTC, 1, gate)], account=ACCOUNT, gate=gate, expect_version=None)
    fresh = store.state_version(ACCOUNT)
    done = store.record(
        [make_decision(BTC, 1, gate)],
        account=ACCOUNT,
        gate=gate,
        marks=[mark],
        expect_version=fresh,
    )
    assert done.inserted == 1 and done.version is not None and done.version != fresh
    assert store.marks(ACCOUNT) == [mark]


def test_marks_are_kept_once_per_bar_and_read_oldest_first(store: DecisionsStore) -> None:
    from serving.decisions_store import BookMark

    gate = RiskGate(CONFIG.risk)
    marks = [BookMark(bar_ts(i), 100.0 + i, 50.0, float(i), 0.0, 0.01, -0.02) for i in range(3)]
    store.record([make_decision(BTC, 1, gate)], account=ACCOUNT, gate=gate, marks=marks[:2])
    again = replace(marks[1], equity=999.0)  # the same bar marked again keeps its first mark
    store.record([make_decision(BTC, 2, gate)], account=ACCOUNT, gate=gate, marks=[again, marks[2]])

    assert store.marks(ACCOUNT) == marks
    assert store.marks(ACCOUNT, limit=2) == marks[1:]
    assert store.marks(ACCOUNT, start=bar_ts(2)) == marks[2:]
    assert store.marks("nobody") == []
    ids = [decision_id(ACCOUNT, BTC, bar_ts(b)) for b in (2, 1, 7)]
    assert set(store.records(ids)) == set(ids[:2])


def test_a_schema_1_store_is_upgraded_on_a_read_write_open(db: Path) -> None:
    with DecisionsStore.open(db):
        pass
    with closing(sqlite3.connect(db)) as raw:
        raw.execute("DROP TABLE book_marks")
        raw.execute("UPDATE store_meta SET value = '1' WHERE key = 'schema_version'")
        raw.commit()

    with DecisionsStore.open(db) as reopened:
        assert reopened.marks(ACCOUNT) == []
    with closing(sqlite3.connect(db)) as raw:
        version = raw.execute(
            "SELECT value FROM store_meta WHERE key = 'schema_version'"
        ).fetchall()
    assert version == [(str(SCHEMA_VERSION),)]


def anomaly(kind: str, bar: int, symbol: str | None = BTC, **extra: Any) -> dict[str, Any]:
    return {
        "id": f"{bar_ts(bar).strftime('%Y%m%dT%H%M%SZ')}-{kind}-{symbol}",
        "kind": kind,
        "category": "market",
        "symbol": symbol,
        "bar_ts": bar_ts(bar).isoformat(),
        "severity": "warning",
        "detected_at": bar_ts(bar + 1).isoformat(),
        "statistic": "robust_z",
        "value": 9.5,
        "threshold": 6.0,
        "evidence": {"window": [1.0, float("nan"), 2.0]},
        **extra,
    }


def test_anomalies_are_stored_once_and_listed_newest_first(store: DecisionsStore) -> None:
    records = [anomaly("volume_spike", 3), anomaly("price_gap", 5), anomaly("missing_bar", 4, None)]

    first = store.record_anomalies(records, state={"drift:xgb": {"raised": True}})
    again = store.record_anomalies([{**records[0], "value": 99.0}, anomaly("price_gap", 6)])

    assert first == 3 and again == 1  # the stored volume spike stands; one new gap
    listed = store.anomalies()
    assert [a["bar_ts"] for a in listed] == [bar_ts(b).isoformat() for b in (6, 5, 4, 3)]
    assert listed[-1]["value"] == 9.5 and listed[-1]["evidence"]["window"] == [1.0, None, 2.0]
    assert [a["kind"] for a in store.anomalies(kind="price_gap")] == ["price_gap"] * 2
    assert [a["symbol"] for a in store.anomalies(symbol=BTC, start=bar_ts(5))] == [BTC, BTC]
    assert store.anomalies(end=bar_ts(4)) == [listed[-1]]
    assert store.monitor_state("drift:xgb") == {"raised": True}
    assert store.monitor_state("never") is None
    assert store.anomaly(str(records[1]["id"])) == listed[1]  # by id: the stored record
    assert store.anomaly("no-such-anomaly") is None


def test_an_incomplete_anomaly_record_is_refused_and_nothing_is_stored(
    store: DecisionsStore,
) -> None:
    broken = {k: v for k, v in anomaly("price_gap", 1).items() if k != "severity"}

    with pytest.raises(DataValidationError, match=r"lacks \['severity'\]"):
        store.record_anomalies([anomaly("volume_spike", 1), broken])

    assert store.anomalies() == []


def _book_writes(db: Path) -> list[tuple[str, str]]:
    """(account, symbol) of every account_books row stored (via its own connection)."""
    with closing(sqlite3.connect(db)) as raw:
        return raw.execute("SELECT account, symbol FROM account_books ORDER BY 1, 2").fetchall()


def test_a_book_change_writes_that_symbols_row_and_the_state_reads_back_whole(
    store: DecisionsStore, db: Path
) -> None:
    from sextant.execution import ExecutionConfig, PaperBroker
    from tests.sextant.execution.test_paper_broker import (
        BULLISH,
        EXECUTION,
        FLAT,
        T0,
    )
    from tests.sextant.execution.test_paper_broker import CONFIG as BROKER_CONFIG

    # Arrange: a real book of three symbols after a bar, written whole once
    symbols = ["SOL/USDT", BTC, ETH]  # not in alphabetical order
    broker = PaperBroker(symbols, "1h", EXECUTION)
    gate = RiskGate(BROKER_CONFIG.risk)
    broker.on_bar(T0, {s: FLAT for s in symbols})
    close = T0 + timedelta(hours=1)
    writes: list[str] = []
    store._con.set_trace_callback(writes.append)
    first = store.record(
        [], account=ACCOUNT, portfolio=broker.to_snapshot(shared=True), gate=gate, as_of=close,
        expect_version=None,
    )  # fmt: skip
    whole = [w for w in writes if "account_books" in w]
    writes.clear()
    # Act: an order for BTC changes its book only; then a write with nothing changed
    decision = decide(
        BTC, close, BULLISH, ModelOutputs(p_xgb=0.9, p_lstm=0.9, garch_variance=1e-4,
        var_quantile=2.6), broker.portfolio(), BROKER_CONFIG, gate, price=100.0,
    )  # fmt: skip
    assert broker.submit(decision)
    second = store.record(
        [], account=ACCOUNT, portfolio=broker.to_snapshot(shared=True), gate=gate, as_of=close,
        expect_version=first.version,
    )  # fmt: skip
    one = [w for w in writes if "account_books" in w]
    writes.clear()
    third = store.record(
        [], account=ACCOUNT, portfolio=broker.to_snapshot(shared=True), gate=gate, as_of=close,
        expect_version=second.version,
    )  # fmt: skip
    none = [w for w in writes if "account_books" in w]
    store._con.set_trace_callback(None)
    # Assert: whole (the rows deleted, then one per symbol), one row, no row
    assert whole[0].startswith("DELETE FROM account_books") and len(whole) == 1 + len(symbols)
    assert len(one) == 1 and "'BTC/USDT'" in one[0] and none == []
    state = store.account_state(ACCOUNT)
    assert state is not None and state.version == third.version
    assert state.portfolio == nulls(broker.to_snapshot())
    assert list(state.portfolio["books"]) == symbols  # in the portfolio's order, as written
    assert _book_writes(db) == [(ACCOUNT, s) for s in sorted(symbols)]
    restored = PaperBroker.from_snapshot(state.portfolio, EXECUTION)
    assert restored.pending_orders() == broker.pending_orders() != {}
    with pytest.raises(DataValidationError, match="other execution settings"):
        PaperBroker.from_snapshot(state.portfolio, ExecutionConfig())


def entered_book() -> tuple[Any, RiskGate, datetime]:
    """A real BTC/ETH paper book with a BTC order queued at a bar close, its gate, that close."""
    from sextant.execution import PaperBroker
    from tests.sextant.execution.test_paper_broker import CONFIG as BROKER_CONFIG
    from tests.sextant.execution.test_paper_broker import EXECUTION, T0, long_entry

    gate = RiskGate(BROKER_CONFIG.risk)
    broker = PaperBroker([BTC, ETH], "1h", EXECUTION)
    long_entry(broker, gate)
    return broker, gate, T0 + timedelta(hours=1)


def test_after_another_writer_the_books_are_written_whole_again(
    store: DecisionsStore, db: Path
) -> None:
    from sextant.execution import PaperBroker
    from tests.sextant.execution.test_paper_broker import EXECUTION, T0

    # Arrange: this store wrote the books; another process then wrote other books, unversioned
    mine, gate, as_of = entered_book()
    ours = store.record(
        [], account=ACCOUNT, portfolio=mine.to_snapshot(shared=True), gate=gate, as_of=as_of
    )
    theirs = PaperBroker([BTC, ETH], "1h", EXECUTION)
    theirs.on_bar(T0, {})
    with DecisionsStore.open(db) as other:
        other.record([], account=ACCOUNT, portfolio=theirs.to_snapshot(), gate=gate, as_of=as_of)
    # Act: this store reads the other's state and writes over it (its books held are stale)
    stored = store.account_state(ACCOUNT)
    assert stored is not None and stored.portfolio == nulls(theirs.to_snapshot())
    assert stored.version != ours.version
    store.record(
        [], account=ACCOUNT, portfolio=mine.to_snapshot(shared=True), gate=gate, as_of=as_of,
        expect_version=stored.version,
    )  # fmt: skip
    # Assert: the books are this store's again, every symbol (not only those it saw change)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == nulls(mine.to_snapshot())


def three_books() -> tuple[Any, RiskGate, datetime]:
    """A real flat SOL/BTC/ETH paper book after one bar, its gate, the bar's close."""
    from sextant.execution import PaperBroker
    from tests.sextant.execution.test_paper_broker import CONFIG as BROKER_CONFIG
    from tests.sextant.execution.test_paper_broker import EXECUTION, FLAT, T0

    symbols = ["SOL/USDT", BTC, ETH]
    broker = PaperBroker(symbols, "1h", EXECUTION)
    broker.on_bar(T0, {s: FLAT for s in symbols})
    return broker, RiskGate(BROKER_CONFIG.risk), T0 + timedelta(hours=1)


def enter(broker: Any, symbol: str, close: datetime) -> None:
    """A long order for ``symbol`` at ``close``: that symbol's book changes, no other."""
    from tests.sextant.execution.test_paper_broker import BULLISH
    from tests.sextant.execution.test_paper_broker import CONFIG as BROKER_CONFIG

    decision = decide(
        symbol, close, BULLISH, ModelOutputs(p_xgb=0.9, p_lstm=0.9, garch_variance=1e-4,
        var_quantile=2.6), broker.portfolio(), BROKER_CONFIG, RiskGate(BROKER_CONFIG.risk),
        price=100.0,
    )  # fmt: skip
    assert broker.submit(decision)


def read_back(state: Any) -> Any:
    """The paper broker of a read ``AccountState``, as the engine builds it."""
    from sextant.execution import PaperBroker
    from tests.sextant.execution.test_paper_broker import EXECUTION

    return PaperBroker.from_snapshot(state.portfolio, EXECUTION)


def write_elsewhere(
    db: Path, portfolio: dict[str, Any], gate: RiskGate, as_of: datetime, **kwargs: Any
) -> str | None:
    """Record the account's state through a store of its own (another process's write)."""
    with DecisionsStore.open(db) as other:
        return other.record(
            [], account=kwargs.pop("account", ACCOUNT), portfolio=portfolio, gate=gate,
            as_of=as_of, **kwargs,
        ).version  # fmt: skip


def book_statements(
    store: DecisionsStore,
    portfolio: Any,
    gate: RiskGate,
    as_of: datetime,
    version: str | None,
    account: str = ACCOUNT,
) -> list[str]:
    """The statements on ``account_books`` of ``store``'s write of ``portfolio`` over
    ``version``."""
    statements: list[str] = []
    store._con.set_trace_callback(statements.append)
    try:
        store.record(
            [], account=account, portfolio=portfolio, gate=gate, as_of=as_of,
            expect_version=version,
        )  # fmt: skip
    finally:
        store._con.set_trace_callback(None)
    return [s for s in statements if "account_books" in s]


def read_by_this_store(store: DecisionsStore, db: Path) -> tuple[Any, RiskGate, datetime]:
    """The account (three books) as another process wrote it, read by this store: the state
    read, the gate and the bar close."""
    broker, gate, close = three_books()
    write_elsewhere(db, broker.to_snapshot(), gate, close)
    state = store.account_state(ACCOUNT)
    assert state is not None
    return state, gate, close


def one_row_of(symbol: str, statements: list[str]) -> bool:
    """Whether ``statements`` write ``symbol``'s row alone."""
    (first, *rest) = statements or [""]
    return not rest and first.startswith("INSERT") and f"'{symbol}'" in first


@pytest.mark.parametrize("changed", [True, False], ids=["one-book-changed", "nothing-changed"])
def test_after_a_read_a_write_over_its_version_writes_only_the_books_that_changed(
    store: DecisionsStore, db: Path, changed: bool
) -> None:
    # Arrange: the account as another process left it; this store only reads it (the engine's
    # first decision of an account in a process)
    state, gate, close = read_by_this_store(store, db)
    book = read_back(state)
    if changed:
        enter(book, BTC, close)
    # Act
    written = book_statements(store, book.to_snapshot(shared=True), gate, close, state.version)
    # Assert: BTC's row alone, or none; the state reads back whole
    assert one_row_of(BTC, written) if changed else written == []
    again = store.account_state(ACCOUNT)
    assert again is not None and again.version != state.version
    assert again.portfolio == nulls(book.to_snapshot())
    assert _book_writes(db) == [(ACCOUNT, s) for s in sorted(book.symbols)]


def test_a_write_that_changes_every_book_replaces_the_accounts_rows(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: after a read, an order for every symbol (a batch over all of them)
    state, gate, close = read_by_this_store(store, db)
    book = read_back(state)
    for symbol in book.symbols:
        enter(book, symbol, close)
    # Act
    written = book_statements(store, book.to_snapshot(shared=True), gate, close, state.version)
    # Assert: the rows deleted and written again, not updated one by one; read back whole
    assert written[0].startswith("DELETE") and len(written) == 1 + len(book.symbols)
    again = store.account_state(ACCOUNT)
    assert again is not None and again.portfolio == nulls(book.to_snapshot())
    assert _book_writes(db) == [(ACCOUNT, s) for s in sorted(book.symbols)]


def test_a_read_book_changed_in_place_is_written(store: DecisionsStore, db: Path) -> None:
    # Arrange: the caller changes a book of the portfolio it read, in place
    broker, gate, close = three_books()
    write_elsewhere(db, broker.to_snapshot(), gate, close)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio is not None
    state.portfolio["books"][ETH]["changed_in_place"] = 1.5
    # Act
    written = book_statements(store, state.portfolio, gate, close, state.version)
    # Assert: compared by its text, not as the object read
    assert one_row_of(ETH, written)
    again = store.account_state(ACCOUNT)
    assert again is not None and again.portfolio == state.portfolio


def read_then_another_writer_enters_eth(
    store: DecisionsStore, db: Path
) -> tuple[Any, Any, RiskGate, datetime]:
    """This store reads the account (three books); another process then enters ETH over that
    version: the first read, the other writer's book, the gate and the bar close."""
    first, gate, close = read_by_this_store(store, db)
    theirs = read_back(first)
    enter(theirs, ETH, close)
    write_elsewhere(db, theirs.to_snapshot(), gate, close, expect_version=first.version)
    return first, theirs, gate, close


def test_after_another_writer_the_stale_write_fails_and_the_next_read_seeds_the_books(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: this store read the account; another process then wrote ETH's book over it
    first, theirs, gate, close = read_then_another_writer_enters_eth(store, db)
    mine = read_back(first)
    enter(mine, BTC, close)
    # Act: the write over the stale read fails and writes nothing; read again, decide again
    with pytest.raises(StateChangedError):
        store.record(
            [], account=ACCOUNT, portfolio=mine.to_snapshot(shared=True), gate=gate,
            as_of=close, expect_version=first.version,
        )  # fmt: skip
    second = store.account_state(ACCOUNT)
    assert second is not None and second.portfolio == nulls(theirs.to_snapshot())
    mine = read_back(second)
    enter(mine, BTC, close)
    written = book_statements(store, mine.to_snapshot(shared=True), gate, close, second.version)
    # Assert: only BTC's book differs from the second read; ETH's order (theirs) stands
    assert one_row_of(BTC, written)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == nulls(mine.to_snapshot())
    assert set(read_back(state).pending_orders()) == {BTC, ETH}


@pytest.mark.parametrize(
    "moment", ["BEGIN", "SELECT account, as_of", "SELECT symbol, book", "COMMIT"]
)
def test_a_read_remembers_the_books_and_the_version_of_its_one_read_transaction(
    store: DecisionsStore, db: Path, moment: str
) -> None:
    # Arrange: another process writes ETH's book while this store reads the account, at the
    # start of each statement of the read in turn
    broker, gate, close = three_books()
    write_elsewhere(db, broker.to_snapshot(), gate, close)
    theirs = read_back(store.account_state(ACCOUNT))
    enter(theirs, ETH, close)
    store._books_written.clear()  # nothing of the read above: this test's read alone
    fired: list[str] = []

    def another_writer(statement: str) -> None:
        if statement.startswith(moment) and not fired:
            fired.append(statement)
            write_elsewhere(db, theirs.to_snapshot(), gate, close)

    store._con.set_trace_callback(another_writer)
    try:
        read = store.account_state(ACCOUNT)
    finally:
        store._con.set_trace_callback(None)
    assert fired and read is not None and read.portfolio is not None
    # Act: the portfolio read written back over the version now stored (whichever it is)
    store.record(
        [], account=ACCOUNT, portfolio=read.portfolio, gate=gate, as_of=close,
        expect_version=store.state_version(ACCOUNT),
    )  # fmt: skip
    # Assert: what was written is stored (a remembered book never stands for another version's)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == read.portfolio


def test_a_read_of_a_newer_version_replaces_the_books_remembered_from_the_older_one(
    store: DecisionsStore, db: Path
) -> None:
    # Arrange: this store read the account, another process wrote ETH's book, this store read
    # it again
    first, _, gate, close = read_then_another_writer_enters_eth(store, db)
    second = store.account_state(ACCOUNT)
    assert second is not None and second.version != first.version
    # Act: the first read's books written over the second read's version (ETH's order undone)
    written = book_statements(store, first.portfolio, gate, close, second.version)
    # Assert: ETH's row alone (compared with the second read), and it is stored
    assert one_row_of(ETH, written)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == first.portfolio


def test_remembered_books_are_bounded_and_a_read_only_store_remembers_none(
    store: DecisionsStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving import decisions_store

    monkeypatch.setattr(decisions_store, "_MAX_BOOKS_WRITTEN", 2)
    broker, gate, close = three_books()
    for account in ("a", "b", "c"):
        write_elsewhere(db, broker.to_snapshot(), gate, close, account=account)
    with DecisionsStore.open(db, readonly=True) as reader:  # it never writes: keeps nothing
        assert reader.account_state("a") is not None and reader._books_written == {}
    # Act: three accounts read by a store that remembers two
    read = {account: store.account_state(account) for account in ("a", "b", "c")}

    def write_back(account: str) -> list[str]:
        state = read[account]
        assert state is not None
        return book_statements(store, state.portfolio, gate, close, state.version, account)

    # Assert: the least recently read account's write replaces every book; the others' none
    assert write_back("c") == [] and write_back("b") == []
    whole = write_back("a")
    assert whole[0].startswith("DELETE") and len(whole) == 1 + len(broker.symbols)


def test_a_portfolio_stored_whole_by_schema_4_reads_back_and_is_split_on_the_next_write(
    store: DecisionsStore, db: Path
) -> None:
    import orjson

    broker, gate, as_of = entered_book()
    store.record([], account=ACCOUNT, gate=gate, as_of=as_of)
    with closing(sqlite3.connect(db)) as raw:  # what schema 4 wrote: the books inline
        raw.execute(
            "UPDATE account_state SET portfolio = ? WHERE account = ?",
            (orjson.dumps(broker.to_snapshot()).decode(), ACCOUNT),
        )
        raw.commit()
    # Act / Assert: read as it is, then written in rows
    old = store.account_state(ACCOUNT)
    assert old is not None and old.portfolio == nulls(broker.to_snapshot())
    # (over the version read: a portfolio read whole seeds no books, so every book is written)
    store.record(
        [], account=ACCOUNT, portfolio=old.portfolio, gate=gate, as_of=as_of,
        expect_version=old.version,
    )  # fmt: skip
    assert _book_writes(db) == [(ACCOUNT, BTC), (ACCOUNT, ETH)]
    with closing(sqlite3.connect(db)) as raw:
        (header,) = raw.execute("SELECT portfolio FROM account_state").fetchone()
    assert "books" not in orjson.loads(header)
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == old.portfolio
    # a portfolio without books leaves no book rows behind
    store.record([], account=ACCOUNT, portfolio={"cash": 1.0}, gate=gate, as_of=as_of)
    assert _book_writes(db) == []
    state = store.account_state(ACCOUNT)
    assert state is not None and state.portfolio == {"cash": 1.0}


def test_a_reader_of_a_schema_4_store_reads_portfolios_stored_whole(db: Path) -> None:
    import orjson

    from tests.sextant.execution.test_paper_broker import T0

    broker, gate, as_of = entered_book()
    with DecisionsStore.open(db) as writer:
        writer.record([], account=ACCOUNT, gate=gate, as_of=as_of)
        writer.record([], account="bare", portfolio={"cash": 1.0}, as_of=T0)
    with closing(sqlite3.connect(db)) as raw:  # the store as schema 4 left it
        raw.execute("DROP TABLE account_books")
        raw.execute(
            "UPDATE account_state SET portfolio = ? WHERE account = ?",
            (orjson.dumps(broker.to_snapshot()).decode(), ACCOUNT),
        )
        raw.execute("UPDATE store_meta SET value = '4' WHERE key = 'schema_version'")
        raw.commit()

    with DecisionsStore.open(db, readonly=True) as reader:
        state, bare = reader.account_state(ACCOUNT), reader.account_state("bare")
    assert state is not None and state.portfolio == nulls(broker.to_snapshot())
    assert bare is not None and bare.portfolio == {"cash": 1.0}
