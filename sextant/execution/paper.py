"""``PaperBroker``: simulated execution for paper trading, bar by bar, through the backtest's kernels.

The broker holds the books (cash, positions, stops, targets, pending orders, the trade and fill
logs) in the arrays the execution kernels update, and advances them one closed bar at a time:

    report = broker.on_bar(bar_open, candles, funding)   # the open's fills, stops, marks
    decision = decide(..., broker.portfolio(), ...)       # per symbol, at the bar's close
    broker.submit(decision)                               # the order for the next open

which is exactly the order of the backtest's bar loop, so a paper run over a historical window
equals the backtest over it (same orders, fills, fees and equity; a test holds them within 1e-9).
``close_all()`` sells what is open at the last close, as the backtest does after its last bar.

Bars are numbered by their open time (``bar_open // bar length``), so trade and fill records name
their bar whatever the run's start. ``to_snapshot()`` / ``from_snapshot()`` carry the whole live
state (books, open trades, pending orders, the decision portfolio) through a restart; closed
trades and fills are reported as they happen and are not part of the snapshot.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.decision.engine import Decision
from sextant.decision.risk import PortfolioState
from sextant.errors import DataValidationError
from sextant.execution import _kernels as k
from sextant.execution.config import ExecutionConfig
from sextant.execution.records import fill_frame, trade_frame
from sextant.ta._jit import FloatArray
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["BarReport", "Candle", "PaperBroker"]

SNAPSHOT_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Candle:
    """One closed bar of one symbol."""

    open: float
    high: float
    low: float
    close: float
    volume: float


@dataclass(frozen=True, slots=True)
class BarReport:
    """What one bar did to the books: its fills (open and intrabar), fees, funding, the marks.

    ``equity`` is cash plus positions at the bar's close; ``fills`` and ``closed_trades`` are the
    rows this bar added (fills of the pending orders and of stops/targets; trades they closed).
    """

    bar_open: datetime
    equity: float
    cash: float
    realized: float
    unrealized: float
    units: Mapping[str, float]
    fees: Mapping[str, float]
    funding: Mapping[str, float]
    fills: pd.DataFrame
    closed_trades: pd.DataFrame


def _grown(array: FloatArray, rows: int) -> FloatArray:
    """``array`` with room for at least ``rows`` rows (doubling), its rows kept."""
    if rows <= array.shape[0]:
        return array
    bigger = np.empty((max(rows, 2 * array.shape[0]), array.shape[1]))
    bigger[: array.shape[0]] = array
    return bigger


class PaperBroker:
    """Simulated fills for one account over ``symbols``, through the execution kernels."""

    def __init__(self, symbols: Sequence[str], timeframe: str, config: ExecutionConfig) -> None:
        if not symbols or len(set(symbols)) != len(symbols):
            raise DataValidationError(
                f"symbols must be distinct and non-empty: {tuple(symbols)}", field="symbols"
            )
        self._symbols = tuple(symbols)
        self._index = {symbol: i for i, symbol in enumerate(self._symbols)}
        self._timeframe = timeframe
        self._bar = timeframe_to_timedelta(timeframe)
        self._config = config
        self._cfg = config.to_array()
        n = len(self._symbols)
        self._sym = np.empty((n, k.SS_SIZE))
        self._acct = np.zeros(k.AC_SIZE)
        self._trades = np.empty((4 * n, k.TR_SIZE))
        self._fills = np.empty((8 * n, k.FL_SIZE))
        self._positions = np.zeros(n)  # decision portfolio: fractions, submitted targets count
        self._scratch = np.zeros(1)
        self._equity = config.initial_equity
        self._unrealized = 0.0
        self._last_bar: int | None = None
        # `to_snapshot`'s per-symbol books as of a copy of the state rows and trade numbering:
        # a decision changes one symbol's row, so only that book is built again
        self._snapshot_cache: tuple[np.ndarray, dict[int, int], list[dict[str, Any]]] | None = None
        self._portfolio_cache: tuple[bytes, float, PortfolioState] | None = None
        self._execution_dict: dict[str, Any] | None = None
        k.reset_books(self._sym, self._acct, self._cfg)

    # --- state -----------------------------------------------------------------------------------
    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this account trades, in kernel order."""
        return self._symbols

    @property
    def config(self) -> ExecutionConfig:
        """The execution assumptions (fees, slippage, funding)."""
        return self._config

    @property
    def equity(self) -> float:
        """Cash plus positions at the latest close."""
        return self._equity

    @property
    def last_bar_open(self) -> datetime | None:
        """Open time of the latest bar processed (None before the first)."""
        return None if self._last_bar is None else self._bar_time(self._last_bar)

    def units(self) -> dict[str, float]:
        """Signed units held per symbol."""
        return {s: float(self._sym[i, k.SS_UNITS]) for i, s in enumerate(self._symbols)}

    def pending_orders(self) -> dict[str, float]:
        """Target units of the orders waiting for the next open, per symbol that has one."""
        return {
            s: float(self._sym[i, k.SS_PENDING])
            for i, s in enumerate(self._symbols)
            if not math.isnan(self._sym[i, k.SS_PENDING])
        }

    def portfolio(self) -> PortfolioState:
        """Equity and position notionals for ``decide``; orders submitted this bar count at target.

        The same state object while the equity and the positions are unchanged (it is frozen).
        """
        key = self._positions.tobytes()
        cached = self._portfolio_cache
        if cached is not None and cached[0] == key and cached[1] == self._equity:
            return cached[2]
        notional = self._positions * self._equity
        state = PortfolioState(
            self._equity,
            dict(zip(self._symbols, notional.tolist(), strict=True)),
            _notional=notional,
            _index=self._index,
        )
        self._portfolio_cache = (key, self._equity, state)
        return state

    def trades(self) -> pd.DataFrame:
        """Every trade since the start (or the restore), open ones with exit_bar -1."""
        rows = self._trades[: int(self._acct[k.AC_TRADES])]
        return trade_frame(rows, self._symbols, self._bar_times)

    def fills(self) -> pd.DataFrame:
        """Every fill since the start (or the restore)."""
        rows = self._fills[: int(self._acct[k.AC_FILLS])]
        return fill_frame(rows, self._symbols, self._bar_times)

    # --- the bar -----------------------------------------------------------------------------------
    def on_bar(
        self,
        bar_open: datetime,
        candles: Mapping[str, Candle],
        funding: Mapping[str, float] | None = None,
    ) -> BarReport:
        """Advance the books over the closed bar opening at ``bar_open``.

        ``candles`` holds the symbols that traded in it (a missing symbol's pending order
        lapses); ``funding`` the rates settling at its open. Bars must come in order, each after
        the last; a malformed candle is refused before anything changes.
        """
        t = self._bar_number(bar_open)
        if self._last_bar is not None and t <= self._last_bar:
            raise DataValidationError(
                f"bar {bar_open.isoformat()} is not after the last bar "
                f"{self._bar_time(self._last_bar).isoformat()}",
                field="bar_open",
            )
        rows = self._rows(candles)
        rates = self._rates(funding or {})
        n = len(self._symbols)
        self._trades = _grown(self._trades, int(self._acct[k.AC_TRADES]) + 2 * n)
        self._fills = _grown(self._fills, int(self._acct[k.AC_FILLS]) + 3 * n)
        first_trade, first_fill = int(self._acct[k.AC_TRADES]), int(self._acct[k.AC_FILLS])
        open_trades = self._open_trade_rows()
        fees, paid = np.zeros(n), np.zeros(n)
        for s in range(n):
            o, h, lo, _, _ = rows[s]
            fees[s] = k.open_symbol(
                s, t, o, h, lo, rates[s], self._sym, self._acct, self._trades, self._fills,
                self._cfg, self._scratch,
            )  # fmt: skip
            paid[s] = self._scratch[0]
        for s in range(n):
            k.mark_symbol(s, rows[s, 3], rows[s, 4], self._sym, self._cfg)
        self._equity = k.book_value(self._sym, self._acct, self._scratch)
        self._unrealized = float(self._scratch[0])
        k.position_fractions(self._sym, self._equity, self._positions)
        self._last_bar = t
        closed = [i for i in open_trades if self._trades[i, k.TR_EXIT_BAR] >= 0]
        closed += [
            i
            for i in range(first_trade, int(self._acct[k.AC_TRADES]))
            if self._trades[i, k.TR_EXIT_BAR] >= 0
        ]
        return BarReport(
            bar_open=bar_open,
            equity=self._equity,
            cash=float(self._acct[k.AC_CASH]),
            realized=float(self._acct[k.AC_REALIZED]),
            unrealized=self._unrealized,
            units=self.units(),
            fees=dict(zip(self._symbols, fees.tolist(), strict=True)),
            funding=dict(zip(self._symbols, paid.tolist(), strict=True)),
            fills=fill_frame(
                self._fills[first_fill : int(self._acct[k.AC_FILLS])],
                self._symbols,
                self._bar_times,
            ),
            closed_trades=trade_frame(self._trades[closed], self._symbols, self._bar_times),
        )

    def submit(self, decision: Decision) -> bool:
        """Queue ``decision``'s approved target for the next open; True when an order was queued.

        The decision must be for this bar's close (``decide`` at ``bar_open + timeframe``).
        """
        s = self._symbol_index(decision.symbol)
        self._require_close(decision.ts, decision.symbol)
        if not self._equity > 0.0:
            raise DataValidationError(
                f"{decision.symbol}: equity is {self._equity}; nothing can be sized against it "
                "(flatten() the book instead of deciding)",
                field="equity",
            )
        queued = bool(
            k.submit_target(
                s,
                decision.target_fraction,
                decision.current_fraction,
                decision.risk.proposed,
                decision.sizing.stop_distance,
                decision.sizing.take_profit_distance,
                decision.features["natr_14"],
                self._equity,
                decision.price,
                self._sym,
            )
        )
        if queued:
            self._positions[s] = decision.target_fraction
        return queued

    def flatten(self, symbol: str) -> None:
        """Close ``symbol`` at the next open without a decision (the backtest's ruin rule)."""
        k.flatten_on_ruin(self._symbol_index(symbol), self._sym)

    def close_all(self) -> BarReport:
        """End the run: sell every open position at its last close (market orders)."""
        if self._last_bar is None:
            raise DataValidationError("no bar processed yet; nothing to close", field="bar_open")
        n = len(self._symbols)
        self._fills = _grown(self._fills, int(self._acct[k.AC_FILLS]) + n)
        first_fill = int(self._acct[k.AC_FILLS])
        open_trades = self._open_trade_rows()
        fees = np.zeros(n)
        k.liquidate_all(
            self._last_bar, self._sym, self._acct, self._trades, self._fills, self._cfg, fees
        )
        self._equity = float(self._acct[k.AC_CASH])
        self._unrealized = 0.0
        self._positions[:] = 0.0
        return BarReport(
            bar_open=self._bar_time(self._last_bar),
            equity=self._equity,
            cash=self._equity,
            realized=float(self._acct[k.AC_REALIZED]),
            unrealized=0.0,
            units=self.units(),
            fees=dict(zip(self._symbols, fees.tolist(), strict=True)),
            funding=dict.fromkeys(self._symbols, 0.0),
            fills=fill_frame(
                self._fills[first_fill : int(self._acct[k.AC_FILLS])],
                self._symbols,
                self._bar_times,
            ),
            closed_trades=trade_frame(self._trades[open_trades], self._symbols, self._bar_times),
        )

    # --- snapshot ----------------------------------------------------------------------------------
    def to_snapshot(self, *, shared: bool = False) -> dict[str, Any]:
        """The live state as plain JSON values (NaN as null): books, open trades, pending orders.

        ``shared``: each symbol's book is the broker's own cached mapping, not a copy, for a
        caller that serializes the snapshot at once and keeps nothing of it (the decision
        engine's write, per decision); it must not be changed.
        """
        open_rows = self._open_trade_rows()
        renumber = {row: i for i, row in enumerate(open_rows)}
        states = self._snapshot_books(renumber)
        if not shared:
            states = [dict(state) for state in states]
        books = dict(zip(self._symbols, states, strict=True))
        if self._execution_dict is None:  # the config is frozen: dumped once per broker
            self._execution_dict = self._config.as_dict()
        return {
            "version": SNAPSHOT_VERSION,
            "symbols": list(self._symbols),
            "timeframe": self._timeframe,
            "execution": dict(self._execution_dict),
            "last_bar": self._last_bar,
            "cash": float(self._acct[k.AC_CASH]),
            "realized": float(self._acct[k.AC_REALIZED]),
            "equity": self._equity,
            "unrealized": self._unrealized,
            "positions": self._positions.tolist(),
            "books": books,
            "open_trades": [
                dict(zip(k.TRADE_FIELDS, values, strict=True))
                for values in self._trades[open_rows].tolist()
            ],
        }

    def _snapshot_books(self, renumber: dict[int, int]) -> list[dict[str, Any]]:
        """Each symbol's book as JSON values (NaN as null), rebuilt only for the rows whose bits
        changed since the last snapshot under the same trade numbering (this runs per decision)."""
        sym = self._sym
        cache = self._snapshot_cache
        if cache is None or cache[1] != renumber or cache[0].shape != sym.shape:
            states: list[dict[str, Any]] = [{} for _ in self._symbols]
            changed: Sequence[int] = range(len(self._symbols))
        else:
            previous, _, states = cache
            states = list(states)
            same = (sym.view(np.int64) == previous.view(np.int64)).all(axis=1)
            changed = np.flatnonzero(~same).tolist()
        fields = k.SS_FIELDS
        for i in changed:
            values = sym[i].tolist()
            # x != x: NaN, stored as null
            state: dict[str, Any] = dict(
                zip(fields, [None if x != x else x for x in values], strict=True)
            )
            row = int(values[k.SS_TRADE])
            state["trade"] = renumber[row] if row >= 0 else -1
            states[i] = state
        self._snapshot_cache = (sym.copy(), renumber, states)
        return states

    @classmethod
    def from_snapshot(cls, snapshot: Mapping[str, Any], config: ExecutionConfig) -> PaperBroker:
        """The broker a ``to_snapshot()`` describes; ``config`` must be the one it ran with."""
        if snapshot.get("version") != SNAPSHOT_VERSION:
            raise DataValidationError(
                f"paper snapshot version {snapshot.get('version')!r} is not {SNAPSHOT_VERSION}",
                field="version",
            )
        if dict(snapshot["execution"]) != config.as_dict():
            raise DataValidationError(
                "the paper snapshot was taken under other execution settings: "
                f"{snapshot['execution']} != {config.as_dict()}",
                field="execution",
            )
        broker = cls(list(snapshot["symbols"]), str(snapshot["timeframe"]), config)
        # one C-level field pick per book and one array conversion (None -> NaN): this runs
        # for every decision of an account whose book is not held parsed
        books = snapshot["books"]
        book_fields = operator.itemgetter(*k.SS_FIELDS)
        broker._sym[:] = np.array(
            [book_fields(books[symbol]) for symbol in broker._symbols], dtype=np.float64
        ).reshape(broker._sym.shape)
        trades = snapshot["open_trades"]
        broker._trades = _grown(broker._trades, len(trades) + 2 * len(broker._symbols))
        if trades:
            trade_fields = operator.itemgetter(*k.TRADE_FIELDS)
            broker._trades[: len(trades)] = np.array(
                [trade_fields(trade) for trade in trades], dtype=np.float64
            ).reshape(len(trades), len(k.TRADE_FIELDS))
        broker._acct[k.AC_CASH] = float(snapshot["cash"])
        broker._acct[k.AC_REALIZED] = float(snapshot["realized"])
        broker._acct[k.AC_TRADES] = len(trades)
        broker._acct[k.AC_FILLS] = 0.0
        broker._equity = float(snapshot["equity"])
        broker._unrealized = float(snapshot["unrealized"])
        broker._positions[:] = np.asarray(snapshot["positions"], dtype=np.float64)
        last = snapshot["last_bar"]
        broker._last_bar = None if last is None else int(last)
        return broker

    # --- helpers -----------------------------------------------------------------------------------
    def _bar_number(self, bar_open: datetime) -> int:
        if bar_open.tzinfo is None or bar_open.utcoffset() is None:
            raise DataValidationError(
                f"bar time {bar_open} is naive; bars need tz-aware UTC", field="bar_open"
            )
        since = bar_open.astimezone(UTC) - _EPOCH
        if since % self._bar != timedelta(0):
            raise DataValidationError(
                f"bar time {bar_open.isoformat()} is not a {self._timeframe} bar open",
                field="bar_open",
            )
        return since // self._bar

    def _bar_time(self, bar: int) -> datetime:
        return _EPOCH + bar * self._bar

    def _bar_times(self, bars: npt.NDArray[np.int64]) -> pd.DatetimeIndex:
        return pd.DatetimeIndex([self._bar_time(int(b)) for b in bars], tz=UTC)

    def _symbol_index(self, symbol: str) -> int:
        try:
            return self._index[symbol]
        except KeyError:
            raise DataValidationError(
                f"{symbol} is not traded by this account ({', '.join(self._symbols)})",
                field="symbol",
            ) from None

    def _require_close(self, ts: datetime, symbol: str) -> None:
        if self._last_bar is None:
            raise DataValidationError(
                f"{symbol}: a decision before any bar was processed", field="ts"
            )
        close = self._bar_time(self._last_bar) + self._bar
        if ts != close:
            raise DataValidationError(
                f"{symbol}: decision at {ts.isoformat()} is not at the close of the last bar "
                f"({close.isoformat()})",
                field="ts",
            )

    def _rows(self, candles: Mapping[str, Candle]) -> FloatArray:
        """[symbol, (open, high, low, close, volume)], NaN for a symbol without a bar."""
        rows = np.full((len(self._symbols), 5), np.nan)
        for symbol, candle in candles.items():
            s = self._symbol_index(symbol)
            values = np.array(
                [candle.open, candle.high, candle.low, candle.close, candle.volume],
                dtype=np.float64,
            )
            prices = values[:4]
            if not (np.isfinite(prices).all() and (prices > 0).all()):
                raise DataValidationError(
                    f"{symbol}: candle prices must be finite and positive, got {candle}",
                    field="candle",
                )
            top, bottom = max(candle.open, candle.close), min(candle.open, candle.close)
            if candle.high < top * (1 - 1e-9) or candle.low > bottom * (1 + 1e-9):
                raise DataValidationError(
                    f"{symbol}: high/low do not bracket open/close in {candle}", field="candle"
                )
            rows[s] = values
        return rows

    def _rates(self, funding: Mapping[str, float]) -> FloatArray:
        rates = np.zeros(len(self._symbols))
        for symbol, rate in funding.items():
            if math.isinf(rate):
                raise DataValidationError(f"{symbol}: funding rate is infinite", field="funding")
            rates[self._symbol_index(symbol)] = rate
        return rates

    def _open_trade_rows(self) -> list[int]:
        """The open trades' rows in the trade table, in symbol order."""
        rows: list[float] = self._sym[:, k.SS_TRADE].tolist()
        return [int(row) for row in rows if row >= 0]
