"""The decision engine: online features → ONNX champions → ``sextant.decision.decide`` → the log.

Per request (one bar, any number of symbols): one online read (each service's packed Feast view,
all symbols at once) returns every service's vector, kept with the champions' inputs built from
it while the online store's change token stands (`features.change_token`: any commit to the store
changes it); each champion runs once over all symbols (onnxruntime, no torch or xgboost); each
symbol is decided by the same ``decide`` the backtest replays, its approved target submitted to
the account's paper book (`sextant.execution.PaperBroker`, held between requests); the bar's
decisions are written with the book, its equity marks and the risk gate's state in one
transaction of the decisions store, the state only over the version the book was read at.

**Which bar.** A decision is made at a bar close: the latest one the data describes (the newest
``as_of`` among the symbols' vectors), never after the clock's latest bar close. Before a bar's
candles are ingested the engine therefore still answers for the previous bar, and a request
never advances the paper book over a bar the market store has not seen. One decision per
(account, symbol, bar): a symbol already decided at that bar is answered with its stored record
(the first request made it, and the book acted on it). Before deciding, the book is brought up to
the bar with the market store's candles and funding (`serving.market`, read once per new bar).

Failures are decisions, not errors (the gate records the reason):

- a family without a champion → its output is NaN; with too few families the gate flats with
  ``MODEL_UNAVAILABLE``;
- a champion that fails at run time → NaN and ``model_error``, which the gate's circuit breaker
  counts (``CIRCUIT_BREAKER`` after ``RiskConfig.max_consecutive_errors`` in a row);
- features older than ``RiskConfig.max_feature_age_bars`` bars by the clock (its latest bar
  close), or none at all (a failed read with nothing read before) → ``STALE_FEATURES``. A failed
  online read (e.g. a view being materialized) falls back to the last good read, flagged by its
  age. Without any data the decisions are recorded at the clock's bar and the book is left as it
  is (nothing can be filled without candles).
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from features.definitions import GARCH_RETURN
from features.feast_store import FeastStore, OnlineVectors
from features.online import sequence_input
from serving.champions import (
    Champion,
    champion_versions,
    check_registry,
    load_champions,
    registry_change_token,
)
from serving.decisions_store import AccountState, BookMark, DecisionsStore, decision_id
from serving.garch_window import windowed_feeds
from serving.market import ClosedBar, closed_bars, latest_closes
from sextant.contracts import DECISION_FEATURES, DECISION_SERVICE, FEATURE_SERVICES
from sextant.decision import (
    Decision,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    SizingConfig,
    decide,
)
from sextant.errors import (
    ConfigError,
    RecordConflictError,
    SourceUnavailableError,
    UnknownSymbolError,
)
from sextant.execution import ExecutionConfig, PaperBroker
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["DecisionBatch", "DecisionEngine", "FamilyOutput", "ReloadOutcome"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

MAX_CACHED_BOOKS = 256  # accounts whose book and gate stay parsed between requests
MAX_PREPARED_READS = 256  # symbol sets whose prepared online read is kept (one per set)
MARKET_ATTEMPTS = 10  # an ingest holds the market store for well under a second per batch
MARKET_RETRY_S = 0.2


@dataclass(frozen=True, slots=True)
class FamilyOutput:
    """One family's output per symbol (NaN: unavailable) and whether its model failed."""

    values: FloatArray
    error: bool = False


@dataclass(frozen=True, slots=True)
class DecisionBatch:
    """What ``DecisionEngine.decide`` answered: one bar's records, in the symbols' order.

    ``made`` are the decisions this call made (and submitted to the paper book); the others were
    already recorded for the bar and are answered from the store. ``versions`` are the champions
    that served the call; ``feature_age_bars`` the age by the clock of each symbol's vectors.
    ``texts`` are the records as stored (JSON text, for a caller that sends them on as they are);
    ``records`` the same parsed (on first use).
    """

    ts: datetime
    account: str
    symbols: tuple[str, ...]
    texts: tuple[str, ...]
    made: tuple[Decision, ...]
    versions: Mapping[str, str]
    feature_age_bars: Mapping[str, float]
    _parsed: tuple[dict[str, Any], ...] | None = field(default=None, repr=False, compare=False)

    @property
    def records(self) -> tuple[dict[str, Any], ...]:
        """The records as ``DecisionsStore.records`` reads them (parsed once)."""
        parsed = self._parsed
        if parsed is None:
            parsed = tuple(orjson.loads(text) for text in self.texts)
            object.__setattr__(self, "_parsed", parsed)
        return parsed


@dataclass(frozen=True, slots=True)
class ReloadOutcome:
    """What ``DecisionEngine.reload`` did: the versions served before and after."""

    changed: bool
    versions: Mapping[str, str]
    previous: Mapping[str, str]


@dataclass(slots=True)
class _Book:
    """An account's paper book and gate as of a stored state version (the engine's cache)."""

    version: str | None
    broker: PaperBroker
    gate: RiskGate
    # served from the cache: taken to be the stored state (the next write checks it, and
    # another writer in between fails that write)
    cached: bool = False
    # every record stored for the book's symbols at the bar closing at ``recent_ts``, by id:
    # those read with the book, then this engine's own writes (another writer's write moves
    # the version, which fails this engine's next write, and the book is read again)
    recent_ts: datetime | None = None
    recent: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class _Run:
    """One champion's session run over a read's symbols, its feeds prepared once per read."""

    champion: Champion
    # the session over the prepared feeds (`_session_call`); None: the inputs could not be
    # built (a model error)
    call: Callable[[], Sequence[Any]] | None
    rows: npt.NDArray[np.intp] | None = None  # the symbols the feeds cover (None: all)


@dataclass(frozen=True, slots=True)
class _Prepared:
    """One online read turned into what a bar's decisions need, kept while the online store
    and the champions stay as they were: per symbol the bar close its vectors describe and the
    TA signal's inputs, per family the session's feeds (the sessions still run per call)."""

    token: tuple[int, int] | None  # the online store's change token taken before the read
    champions: Mapping[str, Champion]
    online: Mapping[str, OnlineVectors] | None  # None: nothing read (all stale)
    as_of: list[datetime | None]
    features: list[dict[str, float | None]]
    runs: Mapping[str, _Run]  # a family without a champion or a read is absent (NaN)
    var_quantile: list[float]


@dataclass(slots=True)
class _Inputs:
    """Everything a bar's decisions read, before any state is touched; the models run only
    when something is to be decided (``DecisionEngine._run_models`` fills ``outputs``)."""

    symbols: tuple[str, ...]
    ts: datetime
    clock_ts: datetime
    data_ts: datetime | None
    ages: list[float]
    versions: dict[str, str]
    prepared: _Prepared = field(repr=False)
    outputs: dict[str, FamilyOutput] | None = None

    @property
    def as_of(self) -> list[datetime | None]:
        return self.prepared.as_of

    @property
    def features(self) -> list[dict[str, float | None]]:
        return self.prepared.features

    @property
    def var_quantile(self) -> list[float]:
        return self.prepared.var_quantile

    @property
    def model_error(self) -> bool:
        return self.outputs is not None and any(o.error for o in self.outputs.values())


class DecisionEngine:
    """Decides symbols at the latest bar close and records the decisions; one per process.

    Build it with `from_settings`; `decide` is the per-request path, `evaluate` the same without
    recording anything, `reload` swaps in the registry's current champions.
    """

    MAX_ATTEMPTS = 3  # a write that lost a race with another process is decided again

    def __init__(
        self,
        settings: Settings,
        champions: Mapping[str, Champion],
        feast: FeastStore,
        store: DecisionsStore,
        *,
        account: str,
        config: DecisionConfig,
        execution: ExecutionConfig,
    ) -> None:
        self.settings = settings
        self.champions: Mapping[str, Champion] = dict(champions)  # swapped whole by `reload`
        self.feast = feast
        self.store = store
        self.account = account
        self.config = config
        self.execution = execution
        self._bar = timeframe_to_timedelta(settings.timeframe)
        self._symbols = frozenset(settings.symbols)
        self._lock = threading.RLock()
        # the registry's change token when its aliases were last looked up (`reload`)
        self._registry = registry_change_token(settings)
        self._registry_seen: tuple[int, int] | None = None
        # per symbol set, the latest good online read prepared for the models (`_prepare`)
        self._prepared: dict[tuple[str, ...], _Prepared] = {}
        self._closes: dict[tuple[str, datetime], float] = {}
        self._last_price: dict[str, float] = {}
        self._books: dict[str, _Book] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        account: str | None = None,
        config: DecisionConfig | None = None,
        execution: ExecutionConfig | None = None,
    ) -> DecisionEngine:
        """Load and check the champions, bind the feature store and open the decisions store.

        ``ConfigError`` when a champion's features do not match its registered feature service.
        """
        if config is None:
            config = DecisionConfig(sizing=SizingConfig(timeframe=settings.timeframe))
        elif config.sizing.timeframe != settings.timeframe:
            raise ConfigError(
                f"the decision config sizes {config.sizing.timeframe} bars, the settings' "
                f"timeframe is {settings.timeframe}"
            )
        _import_feast_without_torch()
        feast = FeastStore(settings)
        champions = load_champions(settings)
        check_registry(champions, feast)
        store = DecisionsStore.open(settings.paths.decisions_db)
        return cls(
            settings,
            champions,
            feast,
            store,
            account=account or settings.paper_account,
            config=config,
            execution=execution or ExecutionConfig(),
        )

    @property
    def model_versions(self) -> dict[str, str]:
        """Family → served registry version."""
        return {family: c.version for family, c in self.champions.items()}

    def close(self) -> None:
        """Close the decisions store and the registry's change watch."""
        self._registry.close()
        self.store.close()

    # --- hot reload ------------------------------------------------------------------------

    def registry_versions(self) -> dict[str, str]:
        """Family → the registry's current ``champion`` version (one alias lookup each)."""
        return champion_versions(self.settings)

    def reload(self, *, force: bool = False) -> ReloadOutcome:
        """Load the registry's champions and swap them in when any alias moved (or ``force``).

        The new sessions are opened, checked against the feature registry and validated on each
        version's stored probe before one atomic swap; a call in flight finishes on the set it
        started with. Any failure raises (``ModelUnavailableError``, ``ConfigError``) and the
        served champions stay as they were.
        """
        previous = self.model_versions
        token = self._registry.token()  # taken before the lookups: see `features.change_token`
        if not force and token is not None and token == self._registry_seen:
            # nothing committed to the registry's database since the aliases were looked up
            return ReloadOutcome(changed=False, versions=previous, previous=previous)
        if not force and self.registry_versions() == previous:
            self._registry_seen = token
            return ReloadOutcome(changed=False, versions=previous, previous=previous)
        champions = load_champions(self.settings)
        check_registry(champions, self.feast)
        self.champions = champions  # one reference assignment: atomic for every reader
        self._registry_seen = token
        versions = self.model_versions
        log.info("champions reloaded: %s -> %s", previous, versions)
        return ReloadOutcome(changed=versions != previous, versions=versions, previous=previous)

    # --- the per-request path ---------------------------------------------------------------

    def decide(
        self,
        symbols: Sequence[str] | None = None,
        *,
        now: datetime | None = None,
        account: str | None = None,
    ) -> DecisionBatch:
        """Decide ``symbols`` (default: the settings') at the latest bar close the data
        describes by ``now`` (default: the clock), act on the paper book and record them.

        ``UnknownSymbolError`` for a symbol this home does not trade; ``SourceUnavailableError``
        when the market store stays locked while the book must catch up.
        """
        account = account or self.account
        chosen = self._chosen(symbols)
        inputs = self._inputs(chosen, now)
        # the common answer once the `trade` flow has decided the bar: what is stored, no models
        ids = [decision_id(account, symbol, inputs.ts) for symbol in chosen]
        held = self._books.get(account)
        if held is not None and held.recent_ts == inputs.ts:
            # a held book knows every record of its bar (`_decide_once`): no read
            recent = held.recent
            stored = {ident: recent[ident] for ident in ids if ident in recent}
        elif held is not None:
            stored = {}  # a bar the held book has not decided yet
        else:
            stored = self.store.record_texts(ids)
        if len(stored) == len(ids):
            return DecisionBatch(
                ts=inputs.ts,
                account=account,
                symbols=chosen,
                texts=tuple(stored[ident] for ident in ids),
                made=(),
                versions=inputs.versions,
                feature_age_bars=dict(zip(chosen, inputs.ages, strict=True)),
            )
        for attempt in range(self.MAX_ATTEMPTS):
            with self._lock:
                try:
                    return self._decide_once(inputs, account, stored)
                except RecordConflictError:  # another process wrote this account in between
                    self._books.pop(account, None)
                    if attempt + 1 == self.MAX_ATTEMPTS:
                        raise
                    log.info("account %s changed under us; deciding again", account)
                except BaseException:
                    self._books.pop(account, None)  # the cached book may be half-updated
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def evaluate(
        self,
        symbols: Sequence[str] | None = None,
        *,
        now: datetime | None = None,
        account: str | None = None,
    ) -> list[Decision]:
        """The decisions ``decide`` would make now, without recording or submitting anything
        (the account's stored book and gate are read, on copies)."""
        account = account or self.account
        inputs = self._inputs(self._chosen(symbols), now)
        with self._lock:
            broker, gate = self.account_state(account)
            portfolio = self._fresh_portfolio() if broker is None else broker.portfolio()
        positions = dict(portfolio.positions)
        prices = self._prices(inputs, inputs.ts)  # every symbol's close, read once
        decisions = []
        for i, symbol in enumerate(inputs.symbols):
            decision = self._decide_symbol(
                inputs, i, PortfolioState(portfolio.equity, positions), gate, price=prices[symbol]
            )
            if decision.target_fraction != decision.current_fraction:
                positions[symbol] = decision.target_fraction * portfolio.equity
            decisions.append(decision)
        return decisions

    def account_state(self, account: str | None = None) -> tuple[PaperBroker | None, RiskGate]:
        """The account's stored paper book (None before its first decision) and gate."""
        state = self.store.account_state(account or self.account)
        broker = None
        if state is not None and state.portfolio is not None:
            broker = PaperBroker.from_snapshot(state.portfolio, self.execution)
        return broker, self._gate(state)

    def _gate(self, state: AccountState | None) -> RiskGate:
        """The stored gate resumed under this engine's limits, else a fresh one."""
        stored = None if state is None else state.risk_gate(self.config.risk)
        return stored or RiskGate(self.config.risk)

    def set_gate(self, change: Callable[[RiskGate], None], account: str | None = None) -> RiskGate:
        """Apply an operator's ``change`` (kill switch, reset) to the account's stored gate and
        store it; returns the gate as stored."""
        account = account or self.account
        with self._lock:
            self._books.pop(account, None)
            state = self.store.account_state(account)
            gate = self._gate(state)
            change(gate)
            as_of = state.as_of if state is not None else self._bar_close(None)
            self.store.record(
                [],
                account=account,
                gate=gate,
                as_of=as_of,
                expect_version=None if state is None else state.version,
            )
            return gate

    # --- inputs -----------------------------------------------------------------------------

    def _chosen(self, symbols: Sequence[str] | None) -> tuple[str, ...]:
        chosen = tuple(dict.fromkeys(symbols or self.settings.symbols))
        for symbol in chosen:
            if symbol not in self._symbols:
                raise UnknownSymbolError(
                    f"unknown symbol {symbol!r}: this home trades "
                    f"{', '.join(self.settings.symbols)}",
                    symbol=symbol,
                )
        return chosen

    def _inputs(self, chosen: tuple[str, ...], now: datetime | None) -> _Inputs:
        champions = self.champions  # one set for the whole call, even if `reload` swaps it
        clock_ts = self._bar_close(now)
        prepared = self._prepare(chosen, champions)
        known = [m for m in prepared.as_of if m is not None]
        if known and max(known) > clock_ts:
            raise ConfigError(
                f"the online features are as of {max(known).isoformat()}, after the bar "
                f"closing at {clock_ts.isoformat()} asked for: the online store holds only the "
                "latest vectors (replay history with `sextant backtest`)"
            )
        data_ts = max(known) if known else None
        return _Inputs(
            symbols=chosen,
            ts=clock_ts if data_ts is None else data_ts,
            clock_ts=clock_ts,
            data_ts=data_ts,
            ages=[math.inf if m is None else (clock_ts - m) / self._bar for m in prepared.as_of],
            versions={family: c.version for family, c in champions.items()},
            prepared=prepared,
        )

    def _run_models(self, inputs: _Inputs) -> dict[str, FamilyOutput]:
        """Each champion once over all of the call's symbols (done once per call)."""
        if inputs.outputs is None:
            inputs.outputs = self._model_outputs(inputs.prepared, len(inputs.symbols))
        return inputs.outputs

    def _decide_once(self, inputs: _Inputs, account: str, read: Mapping[str, str]) -> DecisionBatch:
        """Decide what is not recorded yet; ``read``: the records of the call's ids at
        ``inputs.ts`` known before the lock was taken (read, or the held book's)."""
        book = self._book(account)
        ts = inputs.ts
        last_open = book.broker.last_bar_open
        if last_open is not None:
            ts = max(ts, last_open + self._bar)  # the book never goes back
        ids = [decision_id(account, symbol, ts) for symbol in inputs.symbols]
        if not book.cached or book.recent_ts != ts:
            # what is stored of the book's symbols at this bar (each later write of the account
            # by this engine adds its records; another writer's write moves the version, which
            # fails this engine's next write, and the book is read again)
            every = [decision_id(account, symbol, ts) for symbol in book.broker.symbols]
            book.recent_ts = ts
            book.recent = self.store.record_texts(every) if not book.cached else dict(read)
        recent = book.recent
        stored = {i: recent[i] for i in ids if i in recent}
        todo = [i for i, ident in enumerate(ids) if ident not in stored]
        made: list[Decision] = []
        if todo:
            missing = [s for s in inputs.symbols if s not in book.broker.symbols]
            if missing:
                raise ConfigError(
                    f"account {account}'s paper book trades {', '.join(book.broker.symbols)}, "
                    f"not {', '.join(missing)}: use another account for the new symbols"
                )
            # the book acts only on bars the market store has (the data's bar)
            trading = inputs.data_ts is not None and ts <= inputs.data_ts
            marks = self._catch_up(book.broker, ts) if trading else []
            prices = self._prices(inputs, ts)
            for i in todo:
                symbol = inputs.symbols[i]
                decision = self._decide_symbol(
                    inputs, i, book.broker.portfolio(), book.gate, ts=ts, price=prices[symbol]
                )
                if trading:
                    if book.broker.equity > 0:
                        book.broker.submit(decision)
                    else:  # a ruined book sizes nothing: close out, as the backtest does
                        book.broker.flatten(symbol)
                made.append(decision)
            recorded = self.store.record(
                made,
                account=account,
                portfolio=book.broker.to_snapshot(shared=True) if trading else None,
                gate=book.gate,
                marks=marks,
                expect_version=book.version,
            )
            if recorded.inserted < len(made):
                # some were stored already (another writer, unseen): the book acted on them again
                self._books.pop(account, None)
            book.version = recorded.version or book.version
            book.recent.update(recorded.texts)
            stored |= recorded.texts
        return DecisionBatch(
            ts=ts,
            account=account,
            symbols=inputs.symbols,
            texts=tuple(stored[ident] for ident in ids),
            made=tuple(made),
            versions=inputs.versions,
            feature_age_bars=dict(zip(inputs.symbols, inputs.ages, strict=True)),
        )

    def _decide_symbol(
        self,
        inputs: _Inputs,
        i: int,
        portfolio: PortfolioState,
        gate: RiskGate,
        *,
        ts: datetime | None = None,
        price: float | None = None,
    ) -> Decision:
        symbol = inputs.symbols[i]
        if price is None:
            price = self._prices(inputs, inputs.ts)[symbol]
        outputs = self._run_models(inputs)
        var_quantile = inputs.var_quantile
        return decide(
            symbol,
            ts or inputs.ts,
            inputs.features[i],
            ModelOutputs(
                p_xgb=float(outputs["xgb"].values[i]),
                p_lstm=float(outputs["lstm"].values[i]),
                garch_variance=float(outputs["garch"].values[i]),
                var_quantile=var_quantile[i],
            ),
            portfolio,
            self.config,
            gate,
            price=price,
            feature_age_bars=inputs.ages[i],
            model_error=inputs.model_error,
            model_versions=inputs.versions,
        )

    def _book(self, account: str) -> _Book:
        """The account's book and gate: the cached ones, else read from the store.

        A cached book is this engine's last write of the account; the write of the next
        decision checks that the stored version is still that one (``expect_version``), so
        another writer in between fails it and `decide` reads the account again.
        """
        cached = self._books.get(account)
        if cached is not None:
            cached.cached = True
            return cached
        state = self.store.account_state(account)
        if state is None or state.portfolio is None:
            broker = PaperBroker(self.settings.symbols, self.settings.timeframe, self.execution)
        else:
            broker = PaperBroker.from_snapshot(state.portfolio, self.execution)
        gate = self._gate(state)
        book = _Book(None if state is None else state.version, broker, gate)
        self._books.pop(account, None)
        if len(self._books) >= MAX_CACHED_BOOKS:  # least recently loaded first
            del self._books[next(iter(self._books))]
        self._books[account] = book
        return book

    def _catch_up(self, broker: PaperBroker, ts: datetime) -> list[BookMark]:
        """Advance ``broker`` over the closed bars up to the one closing at ``ts``."""
        last_open = ts - self._bar
        first_open = last_open if broker.last_bar_open is None else broker.last_bar_open + self._bar
        if first_open > last_open:
            return []
        bars = self._closed_bars(broker.symbols, first_open, last_open)
        marks = []
        for bar in bars:
            report = broker.on_bar(bar.bar_open, bar.candles, bar.funding)
            marks.append(
                BookMark(
                    bar_open=bar.bar_open,
                    equity=report.equity,
                    cash=report.cash,
                    realized=report.realized,
                    unrealized=report.unrealized,
                    fees=sum(report.fees.values()),
                    funding=sum(report.funding.values()),
                )
            )
            for symbol, candle in bar.candles.items():
                self._closes[(symbol, bar.bar_open + self._bar)] = candle.close
        return marks

    def _closed_bars(
        self, symbols: Sequence[str], first_open: datetime, last_open: datetime
    ) -> list[ClosedBar]:
        """The market store's bars; retried while an ingest holds the file."""
        for attempt in range(MARKET_ATTEMPTS):
            try:
                return closed_bars(self.settings, symbols, first_open, last_open)
            except Exception as exc:  # duckdb refuses readers while a writer holds the file
                if attempt + 1 == MARKET_ATTEMPTS:
                    raise SourceUnavailableError(
                        f"the market store {self.settings.paths.market_db} stayed unreadable "
                        f"while the paper book needed bars {first_open.isoformat()} .. "
                        f"{last_open.isoformat()}: {exc}"
                    ) from exc
                time.sleep(MARKET_RETRY_S)
        raise AssertionError("unreachable")  # pragma: no cover

    def _fresh_portfolio(self) -> PortfolioState:
        return PortfolioState(
            self.execution.initial_equity, dict.fromkeys(self.settings.symbols, 0.0)
        )

    def _bar_close(self, now: datetime | None) -> datetime:
        moment = datetime.now(UTC) if now is None else now
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ConfigError(f"now must be timezone-aware (UTC), got {moment.isoformat()}")
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + ((moment.astimezone(UTC) - epoch) // self._bar) * self._bar

    def _prepare(self, symbols: tuple[str, ...], champions: Mapping[str, Champion]) -> _Prepared:
        """The symbols' online read, prepared for the champions: the one kept for them while
        the online store's change token and the champions are unchanged (the online store's
        change token, `features.change_token`, changes with any write to it), else a new read; a
        failed read falls back to the last good one of the same symbols, flagged by its age."""
        kept = self._prepared.get(symbols)
        token = self.feast.online_version()
        if (
            kept is not None
            and token is not None
            and kept.token == token
            and kept.champions is champions
        ):
            return kept
        try:
            online: Mapping[str, OnlineVectors] | None = self.feast.online_read(symbols)
        except ConfigError:
            raise  # the registry or the services are wrong: not something to serve around
        except Exception:  # the online store is unreadable now (missing rows, materializing)
            log.exception("online read of %s failed; using the last good read", symbols)
            online = None if kept is None else kept.online
            token = None  # never reused as is: the next call reads again
        prepared = _prepared(token, champions, online, symbols)
        if online is not None:
            self._prepared.pop(symbols, None)
            if len(self._prepared) >= MAX_PREPARED_READS:  # least recently read first
                del self._prepared[next(iter(self._prepared))]
            self._prepared[symbols] = prepared
        return prepared

    @staticmethod
    def _model_outputs(prepared: _Prepared, n: int) -> dict[str, FamilyOutput]:
        """Each family's champion run once over the read's ``n`` symbols (NaN: no champion or no
        read; NaN and ``error``: the champion failed, now or while its inputs were built)."""
        nan = np.full(n, np.nan)
        outputs: dict[str, FamilyOutput] = {}
        for family in FAMILIES:
            run = prepared.runs.get(family)
            if run is None:
                outputs[family] = FamilyOutput(nan)
                continue
            if run.call is None:
                outputs[family] = FamilyOutput(nan, error=True)
                continue
            try:
                values = np.asarray(run.call()[0], dtype=np.float64).reshape(-1)
                if run.rows is not None:
                    values, covered = np.full(n, np.nan), values
                    values[run.rows] = covered
                outputs[family] = FamilyOutput(values.reshape(n))
            except Exception:  # onnxruntime's errors are untyped; any failure is a model error
                log.exception("%s failed on %d symbol(s)", run.champion.label, n)
                outputs[family] = FamilyOutput(nan, error=True)
        return outputs

    def _prices(self, inputs: _Inputs, ts: datetime) -> dict[str, float]:
        """Each symbol's close at the bar its features describe (``ts`` without features):
        cached per bar; the market store is read for what is not cached, and while it is busy
        the last price read stands in."""
        wanted = {s: m or ts for s, m in zip(inputs.symbols, inputs.as_of, strict=True)}
        for moment in sorted({m for s, m in wanted.items() if (s, m) not in self._closes}):
            # one read per bar fills every traded symbol's close at it (the next symbols asked
            # at that bar find theirs cached)
            try:
                for symbol, close in latest_closes(
                    self.settings, self.settings.symbols, moment
                ).items():
                    self._closes[(symbol, moment)] = close
            except Exception:  # duckdb refuses readers while an ingest writes
                log.exception("market store read failed; using the last prices read")
        prices: dict[str, float] = {}
        for symbol, moment in wanted.items():
            found = self._closes.get((symbol, moment), self._last_price.get(symbol))
            if found is None:
                raise SourceUnavailableError(
                    f"no close price for {symbol} in {self.settings.paths.market_db}: "
                    "run `sextant ingest`"
                )
            self._last_price[symbol] = prices[symbol] = found
        return prices


FAMILIES = ("xgb", "lstm", "garch")  # the champions a decision runs, in order


def _prepared(
    token: tuple[int, int] | None,
    champions: Mapping[str, Champion],
    online: Mapping[str, OnlineVectors] | None,
    symbols: tuple[str, ...],
) -> _Prepared:
    """An online read (None: none) prepared for ``champions``."""
    runs: dict[str, _Run] = {}
    if online is not None:
        build = {"xgb": _xgb_feeds, "lstm": _lstm_feeds, "garch": _garch_feeds}
        for family in FAMILIES:
            champion = champions.get(family)
            if champion is None:
                continue
            output = champion.session.get_outputs()[0].name
            try:
                feeds, rows = build[family](champion, online, symbols)
            except Exception:  # a champion whose inputs cannot be built fails like a run
                log.exception("%s: inputs for %s could not be built", champion.label, symbols)
                runs[family] = _Run(champion, None)
                continue
            if feeds is not None:
                runs[family] = _Run(champion, _session_call(champion.session, output, feeds), rows)
    return _Prepared(
        token=token,
        champions=champions,
        online=online,
        as_of=_as_of(online, symbols),
        features=_decision_features(online, symbols),
        runs=runs,
        var_quantile=_var_quantiles(champions, symbols),
    )


def _session_call(session: Any, output: str, feeds: Mapping[str, np.ndarray]) -> Callable[[], Any]:
    """``session`` run over the fixed ``feeds``, as one call: onnxruntime's compiled session
    directly, where the build has one (its Python ``run`` checks the same feeds' names and types
    again on every call, about a quarter of a one-row run), else the public ``run``."""
    inner = getattr(session, "_sess", None)
    if inner is None or not callable(getattr(inner, "run", None)):
        return partial(session.run, [output], dict(feeds))
    return partial(inner.run, [output], dict(feeds), None)


_Feeds = tuple[dict[str, np.ndarray] | None, npt.NDArray[np.intp] | None]


def _xgb_feeds(
    champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
) -> _Feeds:
    rows = online[FEATURE_SERVICES["xgb"]].values.astype(np.float32)
    return {champion.session.get_inputs()[0].name: rows}, None


def _lstm_feeds(
    champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
) -> _Feeds:
    session = champion.session
    vectors = online[FEATURE_SERVICES["lstm"]]
    seq_len = session.get_inputs()[0].shape[1]
    if not isinstance(seq_len, int):
        seq_len = int(champion.metadata["seq_len"])
    sequence = sequence_input(vectors.window, vectors.features, champion.features, seq_len)
    return {session.get_inputs()[0].name: sequence}, None


def _garch_feeds(
    champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
) -> _Feeds:
    """The windowed recursion's inputs for the symbols the champion was fitted on (None: none
    of them; the others answer NaN)."""
    vectors = online[FEATURE_SERVICES["garch"]]
    fitted = list(json.loads(champion.metadata["symbols"]))
    known = [i for i, s in enumerate(symbols) if s in fitted]
    if not known:
        return None, None
    index = [fitted.index(symbols[i]) for i in known]
    returns = vectors.window[known, :, vectors.features.index(GARCH_RETURN)]
    # the champion's session is the registered recursion evaluated over the whole window
    return windowed_feeds(index, returns), np.asarray(known, dtype=np.intp)


def _var_quantiles(champions: Mapping[str, Champion], symbols: tuple[str, ...]) -> list[float]:
    """GARCH's unit-variance 99 % innovation quantile per symbol (NaN without a fit)."""
    champion = champions.get("garch")
    if champion is None:
        return [math.nan] * len(symbols)
    quantiles = json.loads(champion.metadata.get("var99_quantile", "{}"))
    return [float(quantiles.get(s, math.nan)) for s in symbols]


def _import_feast_without_torch() -> None:
    """Import Feast with torch hidden, so that serving never loads torch.

    Feast 0.67 imports torch eagerly wherever it is installed (``feast.torch_wrapper``, pulled in
    by the offline store module), which the training environment has. Hidden for that one import,
    Feast records torch as unavailable (used only to return offline results as tensors, which
    serving never asks for); a later ``import torch`` elsewhere in the process still works.
    """
    if "feast.torch_wrapper" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        importlib.import_module("feast.torch_wrapper")
        importlib.import_module("feast")
    finally:
        del sys.modules["torch"]


def _as_of(
    online: Mapping[str, OnlineVectors] | None, symbols: tuple[str, ...]
) -> list[datetime | None]:
    """Per symbol, the oldest bar close among its vectors (None: a vector is missing)."""
    if online is None:
        return [None] * len(symbols)
    result: list[datetime | None] = []
    for i in range(len(symbols)):
        stamps = [vectors.as_of[i] for vectors in online.values()]
        known = [s.to_pydatetime() for s in stamps if s is not None]
        result.append(min(known) if len(known) == len(stamps) else None)
    return result


def _decision_features(
    online: Mapping[str, OnlineVectors] | None, symbols: tuple[str, ...]
) -> list[dict[str, float | None]]:
    """The TA signal's inputs per symbol (all unknown without a read)."""
    if online is None:
        return [dict.fromkeys(DECISION_FEATURES) for _ in symbols]
    vectors = online[DECISION_SERVICE]
    return [
        {name: float(value) for name, value in zip(vectors.features, row, strict=True)}
        for row in vectors.values
    ]
