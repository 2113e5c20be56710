"""The decisions store: decision records, each account's paper portfolio and risk-gate state.

One repository over one database that several processes share: the service writes while the
CLI, the explainer and the web page read (DESIGN.md, "State on disk"). The default is SQLite in
WAL mode at ``<SEXTANT_HOME>/decisions.sqlite``: a reader never blocks the writer and only ever
sees committed transactions. Tables, durability and the PostgreSQL path: docs/decisions_store.md.

- ``record`` writes one bar's decisions (one per symbol) together with the account's portfolio
  snapshot and risk-gate state in ONE transaction, and returns only after the commit: a
  returned call is an acknowledged write, which a ``kill -9`` of the process cannot undo.
- Every decision has a stable id derived from (account, symbol, bar ts), so a decision re-made
  for a recorded bar is recognised: identical content is a no-op, other content is a
  ``RecordConflictError`` naming the id, and the whole write is rolled back.
- Explanations (``agents.explain`` records, as plain JSON dicts) are stored once per id and
  found again by (subject, subject id, question, model): the explainer's cache.
- Non-finite floats (NaN, ±inf) are stored as JSON ``null``, so records and portfolio
  snapshots read back with ``None`` where the writer had NaN (strict JSON, which PostgreSQL's
  ``jsonb`` and browsers accept too). The gate state, a vector of floats, reads back with NaN.

The hot path talks to ``sqlite3`` (DB-API) directly: SQLAlchemy Core costs about 50 µs per
statement on the project's machines, as much as the rest of a write (see the docs).
"""

from __future__ import annotations

import functools
import hashlib
import math
import operator
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import compress
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Literal, NoReturn, Self

import orjson

from sextant.decision import Decision, RiskConfig, RiskGate, TradingState
from sextant.errors import (
    ConfigError,
    DataValidationError,
    RecordConflictError,
    SourceUnavailableError,
    StateChangedError,
)

__all__ = [
    "ANY_VERSION",
    "SCHEMA_VERSION",
    "AccountState",
    "BookMark",
    "DecisionsStore",
    "Recorded",
    "Synchronous",
    "decision_id",
]

SCHEMA_VERSION: Final = 5  # 2: book_marks (equity per bar); 3: anomalies, monitor_state;
# 4: explanations; 5: account_books (a portfolio's per-symbol books in rows of their own)
ANY_VERSION: Final = "*"  # ``record(expect_version=...)``: write whatever state is stored
Synchronous = Literal["NORMAL", "FULL"]

# The schema uses only types and statements that PostgreSQL accepts as written (TEXT columns,
# INSERT ... ON CONFLICT ... DO UPDATE SET x = excluded.x); timestamps are fixed-width UTC
# ISO-8601 text, which sorts in time order on both engines. JSON columns hold strict JSON.
_SCHEMA: Final = (
    """CREATE TABLE IF NOT EXISTS store_meta (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS decisions (
        id TEXT PRIMARY KEY,
        account TEXT NOT NULL,
        ts TEXT NOT NULL,
        symbol TEXT NOT NULL,
        action TEXT NOT NULL,
        trading_state TEXT NOT NULL,
        config_hash TEXT NOT NULL,
        recorded_at TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    # every query is "newest first, maybe within a time range"; accounts and symbols are few and
    # filtered on the way (a second index would cost a page write per decision)
    "CREATE INDEX IF NOT EXISTS decisions_ts ON decisions (ts)",
    """CREATE TABLE IF NOT EXISTS account_state (
        account TEXT PRIMARY KEY,
        as_of TEXT NOT NULL,
        updated_at TEXT NOT NULL,
        portfolio TEXT,
        gate_state TEXT,
        trading_state TEXT
    )""",
    # each symbol's book of an account's portfolio (the portfolio column holds the rest): a
    # decision changes one symbol's book, so it writes one small row, not the whole portfolio
    """CREATE TABLE IF NOT EXISTS account_books (
        account TEXT NOT NULL,
        symbol TEXT NOT NULL,
        book TEXT NOT NULL,
        PRIMARY KEY (account, symbol)
    )""",
    # the paper book after each bar it processed: the equity curve of `sextant paper history`
    """CREATE TABLE IF NOT EXISTS book_marks (
        account TEXT NOT NULL,
        bar_open TEXT NOT NULL,
        equity DOUBLE PRECISION,
        cash DOUBLE PRECISION,
        realized DOUBLE PRECISION,
        unrealized DOUBLE PRECISION,
        fees DOUBLE PRECISION,
        funding DOUBLE PRECISION,
        PRIMARY KEY (account, bar_open)
    )""",
    # what the monitor found (agents.monitoring.Finding records), once per (kind, symbol, bar)
    """CREATE TABLE IF NOT EXISTS anomalies (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        category TEXT NOT NULL,
        symbol TEXT,
        bar_ts TEXT NOT NULL,
        severity TEXT NOT NULL,
        detected_at TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS anomalies_bar_ts ON anomalies (bar_ts)",
    # small named states of the monitor (e.g. whether a drift alarm is raised), JSON values
    """CREATE TABLE IF NOT EXISTS monitor_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_at TEXT NOT NULL
    )""",
    # every answer of the explainer (agents.explain.schema.ExplanationRecord as JSON); the cache
    # looks answers up by (subject, subject id, question, model), newest first
    """CREATE TABLE IF NOT EXISTS explanations (
        id TEXT PRIMARY KEY,
        subject TEXT NOT NULL,
        subject_id TEXT NOT NULL,
        question TEXT NOT NULL,
        model TEXT NOT NULL,
        grounded INTEGER NOT NULL,
        created_at TEXT NOT NULL,
        record TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS explanations_key ON explanations"
    " (subject_id, question, model, created_at)",
)
_INSERT_ANOMALY: Final = (
    "INSERT INTO anomalies (id, kind, category, symbol, bar_ts, severity, detected_at, record)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_INSERT_EXPLANATION: Final = (
    "INSERT INTO explanations (id, subject, subject_id, question, model, grounded, created_at,"
    " record) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
# what an explanation record must hold (ExplanationRecord.model_dump(mode="json"))
EXPLANATION_FIELDS: Final = (
    "id",
    "subject",
    "subject_id",
    "question",
    "model",
    "grounded",
    "created_at",
    "answer",
)
_UPSERT_MONITOR_STATE: Final = (
    "INSERT INTO monitor_state (key, value, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at"
)
_INSERT_MARK: Final = (
    "INSERT INTO book_marks (account, bar_open, equity, cash, realized, unrealized, fees, funding)"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (account, bar_open) DO NOTHING"
)
_SELECT_STATE_VERSION: Final = "SELECT updated_at FROM account_state WHERE account = ?"
# what an anomaly record must hold (agents.monitoring.Finding.as_record() and detected_at)
ANOMALY_FIELDS: Final = ("id", "kind", "category", "symbol", "bar_ts", "severity", "detected_at")
# an older store is upgraded in place (its new tables were just created); a newer one is refused
_INSERT_VERSION: Final = (
    "INSERT INTO store_meta (key, value) VALUES ('schema_version', ?) ON CONFLICT (key)"
    " DO UPDATE SET value = excluded.value"
    " WHERE CAST(store_meta.value AS INTEGER) < CAST(excluded.value AS INTEGER)"
)
_UPSERT_META: Final = (
    "INSERT INTO store_meta (key, value) VALUES (?, ?)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value"
)
_SELECT_VERSION: Final = "SELECT value FROM store_meta WHERE key = 'schema_version'"
_INSERT_DECISION: Final = (
    "INSERT INTO decisions (id, account, ts, symbol, action, trading_state, config_hash,"
    " recorded_at, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING"
)
_SELECT_RECORD: Final = "SELECT record FROM decisions WHERE id = ?"
# a portfolio or gate left out of a write (None) keeps its stored value
_UPSERT_STATE: Final = (
    "INSERT INTO account_state (account, as_of, updated_at, portfolio, gate_state, trading_state)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO UPDATE SET"
    " as_of = excluded.as_of, updated_at = excluded.updated_at,"
    " portfolio = COALESCE(excluded.portfolio, account_state.portfolio),"
    " gate_state = COALESCE(excluded.gate_state, account_state.gate_state),"
    " trading_state = COALESCE(excluded.trading_state, account_state.trading_state)"
)
# the state written only over the version a writer read (`record(expect_version=...)`)
_INSERT_NEW_STATE: Final = (
    "INSERT INTO account_state (account, as_of, updated_at, portfolio, gate_state, trading_state)"
    " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (account) DO NOTHING"
)
_UPDATE_STATE: Final = (
    "UPDATE account_state SET as_of = ?, updated_at = ?,"
    " portfolio = COALESCE(?, portfolio), gate_state = COALESCE(?, gate_state),"
    " trading_state = COALESCE(?, trading_state) WHERE account = ? AND updated_at = ?"
)
_UPSERT_BOOK: Final = (
    "INSERT INTO account_books (account, symbol, book) VALUES (?, ?, ?)"
    " ON CONFLICT (account, symbol) DO UPDATE SET book = excluded.book"
)
_SELECT_BOOKS: Final = "SELECT symbol, book FROM account_books WHERE account = ?"
_DELETE_BOOKS: Final = "DELETE FROM account_books WHERE account = ?"
_MAX_BOOKS_WRITTEN: Final = 1_024  # accounts whose last written or read books a store remembers
_NOT_PASSED: Final = object()  # a read book's object: never a caller's (compared by text)
_SELECT_STATE: Final = (
    "SELECT account, as_of, updated_at, portfolio, gate_state, trading_state"
    " FROM account_state WHERE account = ?"
)

_JSON_OPTIONS: Final = orjson.OPT_SERIALIZE_NUMPY  # numpy scalars too; NaN/inf become null
# SQLite checkpoints the WAL into the database inside whichever commit crosses this many pages
# (30-70 ms with its fsyncs); set far above SQLite's 1,000 so that the service's own
# ``checkpoint()`` (a thread, every second) does that work off the decision path, and this stays
# a safety net: the batch endpoint under back-to-back load writes about 13,000 pages a second,
# so at 8,192 one batch in 74 paid for a checkpoint before the thread's next round
_AUTOCHECKPOINT_PAGES: Final = 32_768
_WAL_SIZE_LIMIT: Final = 64 * 1024 * 1024  # the WAL file shrinks back to this after a reset


def _utc_text(ts: datetime, what: str) -> str:
    last = _LAST_TEXT[0]  # a bar's decisions ask for the same time's text several times each
    if ts is last[0]:
        return last[1]
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise DataValidationError(f"{what} {ts} is naive; the store needs tz-aware UTC", field=what)
    # fixed width (``2024-03-01T12:00:00.000000+00:00``), so text order is time order
    text = ts.astimezone(UTC).isoformat(timespec="microseconds")
    _LAST_TEXT[0] = (ts, text)  # datetimes are immutable: the same object has the same text
    return text


_LAST_TEXT: list[tuple[datetime | None, str]] = [(None, "")]  # one pair, swapped whole


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


def decision_id(account: str, symbol: str, ts: datetime) -> str:
    """Stable id of the decision for ``symbol`` at bar close ``ts`` in ``account``.

    ``<bar close, UTC>-<16 hex digits of a hash of all three>``: the same bar gets the same id
    after a restart, and ids sort by time (which also keeps the primary key's writes local).
    """
    return _decision_id(account, symbol, _utc_text(ts, "ts"))


# a decision's id is asked for several times on its way (the engine's check of what is stored, the
# held book's record map, the write): the hash is computed once per (account, symbol, bar)
@functools.lru_cache(maxsize=8192)
def _decision_id(account: str, symbol: str, bar: str) -> str:
    digest = hashlib.blake2b("\x1f".join((account, symbol, bar)).encode(), digest_size=8)
    return (
        f"{bar[:4]}{bar[5:7]}{bar[8:10]}T{bar[11:13]}{bar[14:16]}{bar[17:19]}Z-{digest.hexdigest()}"
    )


def _json(value: object, what: str) -> str:
    try:
        return orjson.dumps(value, option=_JSON_OPTIONS).decode()
    except TypeError as exc:  # orjson.JSONEncodeError: an unsupported type or a non-str key
        raise DataValidationError(f"{what} is not JSON-serialisable: {exc}", field=what) from exc


@dataclass(frozen=True, slots=True)
class _BookWrite:
    """The book rows one write stores: ``changed`` (account, symbol, JSON) rows, after deleting
    the account's rows first when ``full``; ``symbols``, ``objects``, ``texts``: every book (the
    caller's object and its JSON), as stored once the write commits. Kept per account after the
    commit, or taken from a read of the account (`DecisionsStore.account_state`), whose
    ``objects`` are ``_NOT_PASSED``: no caller's book is that object, so each is compared by its
    text."""

    symbols: tuple[str, ...]
    objects: list[object]
    texts: list[str]
    changed: list[tuple[str, str, str]]
    full: bool
    version: str = ""  # the state version the write stored (set once committed)


@dataclass(frozen=True, slots=True)
class BookMark:
    """The paper book after one bar: what ``PaperBroker.on_bar`` reported (fees and funding are
    the bar's, summed over symbols)."""

    bar_open: datetime
    equity: float
    cash: float
    realized: float
    unrealized: float
    fees: float
    funding: float


@dataclass(frozen=True, slots=True)
class Recorded:
    """What ``record`` wrote: the batch's ids, and how many of them were new.

    ``inserted == 0`` with ids: the bar was already recorded with identical decisions, so the
    call changed nothing (the stored portfolio and gate state stand). ``texts``: the batch's
    records by id as stored, JSON text (what ``record_texts(ids)`` would read back).
    """

    ids: tuple[str, ...]
    inserted: int
    version: str | None = None  # the account state's new version, when this call wrote it
    texts: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account's latest stored state: portfolio snapshot and risk-gate state, as of a bar.

    ``portfolio`` is the mapping the paper broker wrote (NaN came back as None); ``gate_state``
    is ``RiskGate.state_vector()`` (NaN preserved). Either is None until first written.
    """

    account: str
    as_of: datetime
    updated_at: datetime
    portfolio: dict[str, Any] | None
    gate_state: tuple[float, ...] | None
    trading_state: TradingState | None
    version: str  # the stored ``updated_at`` text: ``record(expect_version=...)`` compares it

    def risk_gate(self, config: RiskConfig) -> RiskGate | None:
        """The stored gate resumed under ``config`` (a HALTED gate comes back HALTED)."""
        if self.gate_state is None:
            return None
        return RiskGate.restore(config, self.gate_state)


def _mark(row: Sequence[Any]) -> BookMark:
    equity, cash, realized, unrealized, fees, funding = (
        math.nan if v is None else float(v) for v in row[2:8]
    )
    return BookMark(
        datetime.fromisoformat(row[1]), equity, cash, realized, unrealized, fees, funding
    )


def _location(location: str | Path) -> Path:
    """A filesystem path from a path or a ``sqlite:///`` URL; other engines are refused."""
    if isinstance(location, Path):
        return location
    if location.startswith("sqlite:///"):
        return Path(location.removeprefix("sqlite:///"))
    scheme, sep, _ = location.partition("://")
    if sep:
        raise ConfigError(
            f"decisions store URL scheme {scheme!r} is not supported yet; use sqlite:///<path> "
            "(PostgreSQL comes with the scale-out profile, docs/decisions_store.md)"
        )
    return Path(location)


class DecisionsStore:
    """Repository of the decisions store; open with ``DecisionsStore.open(path_or_url)``.

    One object may be shared by threads (calls are serialised); each process opens its own.
    """

    def __init__(self, connection: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
        self._con = connection
        self._path = path
        self._readonly = readonly
        self._lock = threading.RLock()
        # per account, the state version this store last wrote or read and the books stored
        # at it: a write over that version stores only the books that changed
        # (`_split_portfolio`; `account_state` seeds it from its read)
        self._books_written: dict[str, _BookWrite] = {}
        self._schema = SCHEMA_VERSION  # the store's schema version (`_configure` reads it)

    @classmethod
    def open(
        cls,
        location: str | Path,
        *,
        readonly: bool = False,
        synchronous: Synchronous = "NORMAL",
        busy_timeout_s: float = 5.0,
    ) -> DecisionsStore:
        """Open (and on first use create) the store at a path or ``sqlite:///<path>`` URL.

        ``readonly``: for readers (CLI, explainer, web page): creates nothing, refuses writes,
        and needs the store to exist. ``synchronous``: ``NORMAL`` (default) makes a commit
        survive a killed process; ``FULL`` also a power loss, at an fsync per commit.
        ``busy_timeout_s``: how long a call waits for another process's lock before it fails.
        """
        path = _location(location)
        if synchronous not in ("NORMAL", "FULL"):
            raise ConfigError(f"synchronous must be NORMAL or FULL, got {synchronous!r}")
        if not (math.isfinite(busy_timeout_s) and busy_timeout_s > 0):
            raise ConfigError(f"busy_timeout_s must be positive, got {busy_timeout_s!r}")
        if readonly and not path.is_file():
            raise ConfigError(
                f"no decisions store at {path}: nothing has been recorded under this home yet"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        # autocommit mode (isolation_level=None): every transaction is an explicit BEGIN/COMMIT
        con = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        store = cls(con, path, readonly=readonly)
        try:
            store._configure(synchronous, busy_timeout_s)
        except BaseException:
            con.close()
            raise
        return store

    def _configure(self, synchronous: Synchronous, busy_timeout_s: float) -> None:
        con = self._con
        try:
            con.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            if self._readonly:
                con.execute("PRAGMA query_only = ON")
            else:
                # WAL is a property of the file (readers inherit it); the rest is per connection
                mode = con.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise ConfigError(f"decisions store {self._path}: WAL mode refused ({mode})")
                con.execute(f"PRAGMA synchronous = {synchronous}")
                con.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT_PAGES}")
                con.execute(f"PRAGMA journal_size_limit = {_WAL_SIZE_LIMIT}")
                con.execute("BEGIN IMMEDIATE")
                try:
                    for statement in _SCHEMA:
                        con.execute(statement)
                    con.execute(_INSERT_VERSION, (str(SCHEMA_VERSION),))
                    con.execute("COMMIT")
                except BaseException:
                    con.execute("ROLLBACK")
                    raise
            row = con.execute(_SELECT_VERSION).fetchone()
        except sqlite3.OperationalError as exc:
            if self._readonly and "no such table" in str(exc):
                raise ConfigError(f"{self._path} is not a decisions store (no schema)") from exc
            self._reraise(exc)
        except sqlite3.DatabaseError as exc:  # "file is not a database" and the like
            raise ConfigError(f"{self._path} is not a usable decisions store: {exc}") from exc
        version = int(row[0]) if row else 0
        if version > SCHEMA_VERSION:
            raise ConfigError(
                f"decisions store {self._path} has schema version {version}; this sextant reads "
                f"up to {SCHEMA_VERSION}: upgrade sextant"
            )
        self._schema = version

    @property
    def path(self) -> Path:
        """The database file."""
        return self._path

    # -- writes -----------------------------------------------------------------------------

    def record(
        self,
        decisions: Sequence[Decision],
        *,
        account: str,
        portfolio: Mapping[str, Any] | None = None,
        gate: RiskGate | None = None,
        as_of: datetime | None = None,
        marks: Sequence[BookMark] = (),
        expect_version: str | None = ANY_VERSION,
    ) -> Recorded:
        """Store one bar's decisions with the account's portfolio and gate state, in one
        transaction; returns after the commit (the write is then acknowledged).

        ``decisions``: one bar, at most one per symbol (may be empty to store state alone).
        ``portfolio``: the broker's JSON-serialisable snapshot; ``gate``: its state is stored;
        either left None keeps what is stored. ``as_of``: the bar the state is as of (defaults
        to the decisions' bar; must equal it). ``marks``: the book after each bar it processed
        since the last write (kept once per bar). A bar already recorded with identical
        decisions changes nothing; with other content, ``RecordConflictError`` and nothing is
        written. ``expect_version``: the ``AccountState.version`` the caller read (None: no state
        yet); another writer's state in between is a ``StateChangedError`` and nothing is
        written (re-read and decide again). ``ANY_VERSION`` (default) skips that check.
        """
        if self._readonly:
            raise ConfigError(f"decisions store {self._path} was opened read-only")
        if not isinstance(account, str) or not account:
            raise DataValidationError(
                f"account must be a non-empty string, got {account!r}", field="account"
            )
        if not decisions and portfolio is None and gate is None:
            raise DataValidationError("nothing to record: no decisions, portfolio or gate")
        written_at = _now_text()
        rows, bar = self._decision_rows(decisions, account, written_at)
        if as_of is not None:
            as_of_text = _utc_text(as_of, "as_of")
            if bar is not None and as_of_text != bar:
                raise DataValidationError(
                    f"as_of {as_of} differs from the decisions' bar {decisions[0].ts}",
                    field="as_of",
                )
        elif bar is not None:
            as_of_text = bar
        else:
            raise DataValidationError("record without decisions needs as_of", field="as_of")
        state = None
        books: _BookWrite | None = None
        if portfolio is not None or gate is not None:
            header = None
            if portfolio is not None:
                header, books = self._split_portfolio(portfolio, account, expect_version)
            state = (
                account,
                as_of_text,
                written_at,
                header,
                None if gate is None else _json(gate.state_vector(), "gate_state"),
                None if gate is None else gate.state.value,
            )
        mark_rows = [
            (
                account,
                _utc_text(m.bar_open, "bar_open"),
                m.equity,
                m.cash,
                m.realized,
                m.unrealized,
                m.fees,
                m.funding,
            )
            for m in marks
        ]
        return self._write(rows, state, mark_rows, account, expect_version, books)

    def _split_portfolio(
        self, portfolio: Mapping[str, Any], account: str, expect_version: str | None
    ) -> tuple[str, _BookWrite]:
        """The portfolio's JSON without its ``books``, and what to write of those: every
        symbol's book, or, over the version this store last wrote for the account, only the
        books that changed (a book the caller passes as the same object as in that write is
        unchanged: `PaperBroker.to_snapshot(shared=True)`; another is compared by its text)."""
        if not isinstance(portfolio, Mapping):
            raise DataValidationError(
                f"portfolio must be a mapping, got {type(portfolio).__name__}", field="portfolio"
            )
        books = portfolio.get("books")
        if books is None:  # a portfolio without books: stored whole, no book rows
            return _json(dict(portfolio), "portfolio"), _BookWrite((), [], [], [], full=True)
        if not isinstance(books, Mapping):
            raise DataValidationError(
                f"portfolio books must be a mapping, got {type(books).__name__}", field="books"
            )
        header = _json({key: v for key, v in portfolio.items() if key != "books"}, "portfolio")
        symbols, objects = tuple(books), list(books.values())
        written = self._books_written.get(account)
        if (
            written is None
            or expect_version == ANY_VERSION
            or written.version != expect_version
            or written.symbols != symbols
        ):  # every book, the account's rows replaced
            for symbol in symbols:
                if not isinstance(symbol, str):
                    raise DataValidationError(
                        f"portfolio book keys must be symbols, got {symbol!r}", field="books"
                    )
            texts = [_json(book, f"book of {s}") for s, book in zip(symbols, objects, strict=True)]
            rows = [(account, s, text) for s, text in zip(symbols, texts, strict=True)]
            return header, _BookWrite(symbols, objects, texts, rows, full=True)
        texts = list(written.texts)
        rows = []
        for i in compress(range(len(symbols)), map(operator.is_not, objects, written.objects)):
            text = _json(objects[i], f"book of {symbols[i]}")
            if text != texts[i]:
                texts[i] = text
                rows.append((account, symbols[i], text))
        # every book changed (a batch over every symbol): the rows replaced, which SQLite does
        # faster than updating each in place (an upsert's conflict is a second index search)
        return header, _BookWrite(symbols, objects, texts, rows, full=len(rows) == len(symbols))

    @staticmethod
    def _decision_rows(
        decisions: Sequence[Decision], account: str, recorded_at: str
    ) -> tuple[list[tuple[str, ...]], str | None]:
        rows: list[tuple[str, ...]] = []
        bar: str | None = None
        symbols: set[str] = set()
        for decision in decisions:
            if not isinstance(decision, Decision):
                raise DataValidationError(
                    f"expected a Decision, got {type(decision).__name__}", field="decisions"
                )
            ts = _utc_text(decision.ts, "ts")
            if bar is None:
                bar = ts
            elif ts != bar:
                raise DataValidationError(
                    f"one record call holds one bar: {decisions[0].ts} and {decision.ts}",
                    field="ts",
                )
            if decision.symbol in symbols:
                raise DataValidationError(
                    f"two decisions for {decision.symbol} at {decision.ts}", field="symbol"
                )
            symbols.add(decision.symbol)
            ident = _decision_id(account, decision.symbol, ts)
            record = {"id": ident, "account": account, **decision.as_record()}
            rows.append(
                (
                    ident,
                    account,
                    ts,
                    decision.symbol,
                    decision.action.value,
                    decision.risk.state.value,
                    decision.config_hash,
                    recorded_at,
                    _json(record, f"decision {ident}"),
                )
            )
        return rows, bar

    def _write(
        self,
        rows: list[tuple[str, ...]],
        state: tuple[str | None, ...] | None,
        marks: Sequence[tuple[object, ...]] = (),
        account: str = "",
        expect_version: str | None = ANY_VERSION,
        books: _BookWrite | None = None,
    ) -> Recorded:
        with self._lock:
            if self._con.in_transaction:
                raise RuntimeError("record() inside snapshot(): a snapshot is for reads only")
            # what this store wrote of the account's books stands only once this write commits
            self._books_written.pop(account, None)
            with self._write_transaction() as con:
                # the version is checked by the state's own write where there is one (one
                # statement), else first; a replayed row checks it before its content
                checked = expect_version == ANY_VERSION
                if not checked and state is None:
                    self._check_version(account, expect_version)
                    checked = True
                inserted = con.executemany(_INSERT_DECISION, rows).rowcount if rows else 0
                if inserted < len(rows):  # some were stored before: each must be a replay
                    if not checked:
                        self._check_version(account, expect_version)
                        checked = True
                    for row in rows:
                        self._check_replay(row)
                # a bar replayed in full changes nothing: its state was stored with it
                version = None
                if state is not None and (inserted or not rows):
                    if checked:
                        con.execute(_UPSERT_STATE, state)
                    elif not self._replace_state(state, expect_version):
                        self._check_version(account, expect_version)  # raises: it moved
                        raise AssertionError("unreachable")  # pragma: no cover
                    if books is not None:
                        if books.full:
                            con.execute(_DELETE_BOOKS, (account,))
                        if books.changed:
                            con.executemany(_UPSERT_BOOK, books.changed)
                    if marks:
                        con.executemany(_INSERT_MARK, marks)
                    version = state[2]
                elif not checked:
                    self._check_version(account, expect_version)
            if version is not None and books is not None and books.symbols:
                self._remember_books(  # spelled out: `dataclasses.replace` costs microseconds
                    account,
                    _BookWrite(books.symbols, books.objects, books.texts, [], books.full, version),
                )
        return Recorded(
            ids=tuple(row[0] for row in rows),
            inserted=inserted,
            version=version,
            texts={row[0]: row[-1] for row in rows},
        )

    def _remember_books(self, account: str, books: _BookWrite) -> None:
        """Keep ``books`` as the account's books stored at ``books.version``, evicting the
        least recently written or read account past ``_MAX_BOOKS_WRITTEN``."""
        self._books_written.pop(account, None)
        self._books_written[account] = books
        if len(self._books_written) > _MAX_BOOKS_WRITTEN:
            del self._books_written[next(iter(self._books_written))]

    def _remember_read_books(
        self, account: str, version: str, symbols: tuple[str, ...], texts: list[str]
    ) -> None:
        """Seed the account's books from a read: ``symbols``' stored ``texts`` at ``version``,
        all read in one read transaction (the caller's), so a write over that version writes
        only the books whose text differs from what was read."""
        held = self._books_written.get(account)
        if (
            held is not None
            and held.version == version
            and held.symbols == symbols
            and held.texts == texts
        ):  # this store's own write of that state: its objects spare serializing the same books
            return
        self._remember_books(
            account,
            _BookWrite(
                symbols, [_NOT_PASSED] * len(symbols), texts, [], full=False, version=version
            ),
        )

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE (the write lock taken now, waiting up to the
        busy timeout, not at the first write, where a concurrent writer would fail it), COMMIT
        when the block ends, ROLLBACK on any error; a locked store is a typed error."""
        with self._lock:
            con = self._con
            try:
                con.execute("BEGIN IMMEDIATE")
                try:
                    yield con
                    con.execute("COMMIT")
                except BaseException:
                    if con.in_transaction:
                        con.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                self._reraise(exc)

    def _replace_state(self, state: tuple[str | None, ...], expected: str | None) -> bool:
        """Write the account's state only where the stored version is ``expected`` (None: no
        state yet), in one statement; False when it is not (nothing written)."""
        if expected is None:
            return bool(self._con.execute(_INSERT_NEW_STATE, state).rowcount)
        account, as_of, written_at, portfolio, gate_state, trading_state = state
        return bool(
            self._con.execute(
                _UPDATE_STATE,
                (as_of, written_at, portfolio, gate_state, trading_state, account, expected),
            ).rowcount
        )

    def _check_version(self, account: str, expected: str | None) -> None:
        found = self._con.execute(_SELECT_STATE_VERSION, (account,)).fetchone()
        stored = None if found is None else found[0]
        if stored != expected:
            raise StateChangedError(
                f"account {account}'s state changed since it was read (stored version "
                f"{stored}, read {expected}): another writer recorded in between",
                record_id=account,
                origin=str(self._path),
            )

    def _check_replay(self, row: tuple[str, ...]) -> None:
        ident, new = row[0], row[-1]
        stored = self._con.execute(_SELECT_RECORD, (ident,)).fetchone()[0]
        if stored != new and orjson.loads(stored) != orjson.loads(new):
            raise RecordConflictError(
                f"decision {ident} ({row[3]} at {row[2]}, account {row[1]}) is already recorded "
                "with other content; the stored one stands",
                record_id=ident,
                origin=str(self._path),
            )

    def record_anomalies(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        state: Mapping[str, Any] | None = None,
    ) -> int:
        """Store anomaly records (``agents.monitoring.Finding.as_record()`` plus ``detected_at``),
        each once: a record whose id is stored already is skipped (re-running the monitor over
        the same bars stores nothing new). ``state`` (key → JSON value) is written in the same
        transaction (the monitor's alarm states). Returns how many records were new."""
        if self._readonly:
            raise ConfigError(f"decisions store {self._path} was opened read-only")
        rows = [self._anomaly_row(r) for r in records]
        now = _now_text()
        states = [(k, _json(v, f"monitor state {k}"), now) for k, v in (state or {}).items()]
        with self._write_transaction() as con:
            inserted = sum(con.execute(_INSERT_ANOMALY, row).rowcount for row in rows)
            con.executemany(_UPSERT_MONITOR_STATE, states)
        return int(inserted)

    @staticmethod
    def _anomaly_row(record: Mapping[str, Any]) -> tuple[object, ...]:
        missing = [k for k in ANOMALY_FIELDS if k not in record]
        if missing:
            raise DataValidationError(
                f"anomaly record {record.get('id')!r} lacks {missing}", field="anomaly"
            )
        ident = record["id"]
        return (
            ident,
            record["kind"],
            record["category"],
            record["symbol"],
            _utc_text(datetime.fromisoformat(str(record["bar_ts"])), "bar_ts"),
            record["severity"],
            _utc_text(datetime.fromisoformat(str(record["detected_at"])), "detected_at"),
            _json(dict(record), f"anomaly {ident}"),
        )

    def anomalies(
        self,
        n: int = 100,
        *,
        kind: str | None = None,
        category: str | None = None,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``n`` anomaly records, newest bar first; ``start <= bar_ts < end`` when given."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataValidationError(f"n must be a non-negative integer, got {n!r}", field="n")
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (("kind", kind), ("category", category), ("symbol", symbol)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if start is not None:
            clauses.append("bar_ts >= ?")
            params.append(_utc_text(start, "start"))
        if end is not None:
            clauses.append("bar_ts < ?")
            params.append(_utc_text(end, "end"))
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._query(
            f"SELECT record FROM anomalies{where} ORDER BY bar_ts DESC, id LIMIT ?", (*params, n)
        )
        return [orjson.loads(row[0]) for row in rows]

    def anomaly(self, anomaly_id: str) -> dict[str, Any] | None:
        """The anomaly record with this id, or None."""
        rows = self._query("SELECT record FROM anomalies WHERE id = ?", (anomaly_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def anomaly_counts(self) -> dict[str, int]:
        """How many anomalies are stored, per kind (they are never deleted: a counter)."""
        rows = self._query("SELECT kind, COUNT(*) FROM anomalies GROUP BY kind ORDER BY kind", ())
        return {str(kind): int(count) for kind, count in rows}

    def monitor_state(self, key: str) -> Any | None:
        """A monitor state's JSON value (None when never written)."""
        rows = self._query("SELECT value FROM monitor_state WHERE key = ?", (key,))
        return orjson.loads(rows[0][0]) if rows else None

    def record_explanation(self, record: Mapping[str, Any]) -> bool:
        """Store one explanation record (``ExplanationRecord.model_dump(mode="json")``), once:
        its id stored already with the same content changes nothing, with other content is a
        ``RecordConflictError``. Returns whether it was new."""
        if self._readonly:
            raise ConfigError(f"decisions store {self._path} was opened read-only")
        row = self._explanation_row(record)
        with self._write_transaction() as con:
            inserted = con.execute(_INSERT_EXPLANATION, row).rowcount
            if not inserted:
                stored = con.execute(
                    "SELECT record FROM explanations WHERE id = ?", (row[0],)
                ).fetchone()[0]
                if orjson.loads(stored) != orjson.loads(str(row[-1])):
                    raise RecordConflictError(
                        f"explanation {row[0]} is already recorded with other content;"
                        " the stored one stands",
                        record_id=str(row[0]),
                        origin=str(self._path),
                    )
        return bool(inserted)

    @staticmethod
    def _explanation_row(record: Mapping[str, Any]) -> tuple[object, ...]:
        if not isinstance(record, Mapping):
            raise DataValidationError(
                f"explanation record must be a mapping, got {type(record).__name__}",
                field="explanation",
            )
        missing = [k for k in EXPLANATION_FIELDS if k not in record]
        if missing:
            raise DataValidationError(
                f"explanation record {record.get('id')!r} lacks {missing}", field="explanation"
            )
        ident = record["id"]
        for key in ("id", "subject", "subject_id", "question", "model"):
            if not isinstance(record[key], str) or not record[key]:
                raise DataValidationError(
                    f"explanation record {ident!r}: {key} must be a non-empty string, got"
                    f" {record[key]!r}",
                    field=key,
                )
        if not isinstance(record["grounded"], bool):
            raise DataValidationError(
                f"explanation record {ident!r}: grounded must be a boolean", field="grounded"
            )
        try:
            created = datetime.fromisoformat(str(record["created_at"]))
        except ValueError as exc:
            raise DataValidationError(
                f"explanation record {ident!r}: created_at {record['created_at']!r} is not"
                " ISO-8601",
                field="created_at",
            ) from exc
        return (
            ident,
            record["subject"],
            record["subject_id"],
            record["question"],
            record["model"],
            int(record["grounded"]),
            _utc_text(created, "created_at"),
            _json(dict(record), f"explanation {ident}"),
        )

    def explanation(self, explanation_id: str) -> dict[str, Any] | None:
        """The explanation record with this id, or None."""
        rows = self._explanation_query(
            "SELECT record FROM explanations WHERE id = ?", (explanation_id,)
        )
        return orjson.loads(rows[0][0]) if rows else None

    def explanations(
        self, *, subject: str | None = None, subject_id: str | None = None, n: int = 20
    ) -> list[dict[str, Any]]:
        """Up to ``n`` explanation records, newest first, of one subject kind and id if given."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataValidationError(f"n must be a non-negative integer, got {n!r}", field="n")
        clauses: list[str] = []
        params: list[object] = []
        for column, value in (("subject", subject), ("subject_id", subject_id)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        where = " WHERE " + " AND ".join(clauses) if clauses else ""
        rows = self._explanation_query(
            f"SELECT record FROM explanations{where} ORDER BY created_at DESC, id LIMIT ?",
            (*params, n),
        )
        return [orjson.loads(row[0]) for row in rows]

    def cached_explanation(
        self,
        subject: str,
        subject_id: str,
        question: str,
        model: str,
        *,
        grounded_only: bool = False,
    ) -> dict[str, Any] | None:
        """The newest stored answer to this question about this subject by this model (the
        explainer's cache: key (subject id, question, model)), or None. ``grounded_only``: skip
        answers the grounding guard refused."""
        sql = (
            "SELECT record FROM explanations WHERE subject_id = ? AND question = ? AND model = ?"
            " AND subject = ?"
        )
        if grounded_only:
            sql += " AND grounded = 1"
        rows = self._explanation_query(
            sql + " ORDER BY created_at DESC, id LIMIT 1", (subject_id, question, model, subject)
        )
        return orjson.loads(rows[0][0]) if rows else None

    def _explanation_query(self, sql: str, params: Sequence[object]) -> list[Any]:
        """A read of the explanations table; a read-only store of schema 3 has none yet."""
        with self._lock:
            try:
                return self._con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if self._readonly and "no such table: explanations" in str(exc):
                    return []
                self._reraise(exc)

    def checkpoint(self) -> int:
        """Copy committed WAL pages into the database file, without blocking anyone.

        Call it when idle (the service: after a bar's writes, while it waits for the next
        close); writes then never pay for it. Returns the WAL pages still not copied (a reader
        holding an older snapshot can keep some back until the next call).
        """
        if self._readonly:
            return 0
        with self._lock:
            try:
                _, frames, copied = self._con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames and frames == copied:
                    # the next write restarts the WAL from its start, and under synchronous
                    # NORMAL that write syncs the WAL header (about 0.4 ms here, the whole p99
                    # of decision writes): let a small write of our own pay for it, now
                    con = self._con
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        con.execute(_UPSERT_META, ("checkpointed_at", _now_text()))
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
            except sqlite3.OperationalError as exc:
                self._reraise(exc)
        return max(int(frames) - int(copied), 0)

    # -- reads ------------------------------------------------------------------------------

    @contextmanager
    def snapshot(self) -> Iterator[Self]:
        """Make the reads inside one consistent view of the store (one read transaction)."""
        with self._lock:
            if self._con.in_transaction:  # nested: the outer snapshot already holds the view
                yield self
                return
            self._execute("BEGIN")
            try:
                yield self
            finally:
                if self._con.in_transaction:
                    self._con.execute("COMMIT")

    def get(self, decision_id: str) -> dict[str, Any] | None:
        """The decision record with this id (``as_record()`` plus id and account), or None."""
        rows = self._query(_SELECT_RECORD, (decision_id,))
        return orjson.loads(rows[0][0]) if rows else None

    def latest(
        self,
        n: int = 20,
        *,
        account: str | None = None,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        action: str | None = None,
    ) -> list[dict[str, Any]]:
        """Up to ``n`` decision records, newest bar first; ``start <= ts < end`` when given,
        only ``action`` (``BUY``, ``HOLD``, ...) when given."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise DataValidationError(f"n must be a non-negative integer, got {n!r}", field="n")
        where, params = self._filters(account, symbol, start, end, action)
        rows = self._query(
            f"SELECT record FROM decisions{where} ORDER BY ts DESC, symbol, account LIMIT ?",
            (*params, n),
        )
        return [orjson.loads(row[0]) for row in rows]

    def count(
        self,
        *,
        account: str | None = None,
        symbol: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        action: str | None = None,
    ) -> int:
        """How many decisions are stored (with the filters of ``latest``)."""
        where, params = self._filters(account, symbol, start, end, action)
        return int(self._query(f"SELECT COUNT(*) FROM decisions{where}", params)[0][0])

    def records(self, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The stored records among ``ids``, by id (one query)."""
        return {ident: orjson.loads(text) for ident, text in self.record_texts(ids).items()}

    def record_texts(self, ids: Sequence[str]) -> dict[str, str]:
        """The stored records among ``ids`` as their JSON text, by id (one query)."""
        if not ids:
            return {}
        marks = ", ".join("?" * len(ids))
        rows = self._query(f"SELECT id, record FROM decisions WHERE id IN ({marks})", tuple(ids))
        return {str(ident): str(text) for ident, text in rows}

    def state_version(self, account: str) -> str | None:
        """The account's ``AccountState.version`` (None before its first write); one small read."""
        rows = self._query(_SELECT_STATE_VERSION, (account,))
        return str(rows[0][0]) if rows else None

    def marks(
        self, account: str, *, start: datetime | None = None, limit: int | None = None
    ) -> list[BookMark]:
        """The account's book after each bar, oldest first (the latest ``limit`` when given)."""
        sql = "SELECT * FROM book_marks WHERE account = ?"
        params: list[object] = [account]
        if start is not None:
            sql += " AND bar_open >= ?"
            params.append(_utc_text(start, "start"))
        sql += " ORDER BY bar_open DESC"
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise DataValidationError(f"limit must be a non-negative integer, got {limit!r}")
            sql += " LIMIT ?"
            params.append(limit)
        rows = self._query(sql, params)
        return [_mark(row) for row in reversed(rows)]

    def account_state(self, account: str) -> AccountState | None:
        """The account's stored portfolio and gate state, or None before its first write.

        A read-write store also remembers the books it read, with the version, so that its
        next write over that version writes only the books that changed (`_split_portfolio`).
        """
        with self.snapshot():  # the state and its books as of one commit
            rows = self._query(_SELECT_STATE, (account,))
            if not rows:
                return None
            name, as_of, updated_at, portfolio_text, gate_state, trading_state = rows[0]
            portfolio = None if portfolio_text is None else orjson.loads(portfolio_text)
            # a portfolio stored whole (schema 4; a reader's store may have no book table)
            split = portfolio is not None and "books" not in portfolio and self._schema >= 5
            books: dict[str, str] = {}
            if split:
                books = {str(s): book for s, book in self._query(_SELECT_BOOKS, (account,))}
            if books and portfolio is not None:
                order = portfolio.get("symbols")  # the books in the portfolio's symbol order
                if isinstance(order, list) and set(order) == books.keys():
                    books = {symbol: books[symbol] for symbol in order}
                if not self._readonly:  # still inside the read: the books stored at this version
                    self._remember_read_books(
                        account, updated_at, tuple(books), list(books.values())
                    )
        vector = None
        if gate_state is not None:
            vector = tuple(math.nan if x is None else float(x) for x in orjson.loads(gate_state))
        if books and portfolio is not None:
            portfolio["books"] = {symbol: orjson.loads(book) for symbol, book in books.items()}
        return AccountState(
            account=name,
            as_of=datetime.fromisoformat(as_of),
            updated_at=datetime.fromisoformat(updated_at),
            portfolio=portfolio,
            gate_state=vector,
            trading_state=None if trading_state is None else TradingState(trading_state),
            version=updated_at,
        )

    @staticmethod
    def _filters(
        account: str | None,
        symbol: str | None,
        start: datetime | None,
        end: datetime | None,
        action: str | None = None,
    ) -> tuple[str, tuple[str, ...]]:
        clauses: list[str] = []
        params: list[str] = []
        for clause, value in (
            ("account = ?", account),
            ("symbol = ?", symbol),
            ("action = ?", action),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        if start is not None:
            clauses.append("ts >= ?")
            params.append(_utc_text(start, "start"))
        if end is not None:
            clauses.append("ts < ?")
            params.append(_utc_text(end, "end"))
        return (" WHERE " + " AND ".join(clauses) if clauses else ""), tuple(params)

    def _query(self, sql: str, params: Sequence[object]) -> list[Any]:
        with self._lock:
            try:
                return self._con.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                self._reraise(exc)

    def _execute(self, sql: str) -> None:
        try:
            self._con.execute(sql)
        except sqlite3.OperationalError as exc:
            self._reraise(exc)

    def _reraise(self, exc: sqlite3.OperationalError) -> NoReturn:
        """A lock held past the busy timeout is transient; anything else is not ours to hide."""
        message = str(exc)
        if "locked" in message or "busy" in message:
            raise SourceUnavailableError(
                f"decisions store {self._path} is busy: {message}"
            ) from exc
        raise exc

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the last one to close folds the WAL into the database)."""
        with self._lock:
            self._con.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
