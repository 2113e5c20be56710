"""The execution core, written once as numba kernels: fills, fees, slippage, stops, funding, books.

The backtest's bar loop (``sextant.backtest._loop``) and the ``PaperBroker`` call these very
functions, so a paper run over a historical window and the backtest over the same window produce
the same orders, fills, fees and equity. Per bar and symbol, in this order:

1. ``open_symbol`` at the open: funding settles on the position carried into the bar (cash -=
   units * open * rate: longs pay a positive rate, shorts receive it); then the market order
   decided at the previous close fills at the open (taker fee, slippage against the order); a new
   position's stop and take profit are anchored at its fill price. Within the bar, a stop or
   target the open gapped through fills at the open; else the stop is checked before the target
   (when the bar touches both, the stop is assumed first); stops are market orders (taker fee,
   slippage), targets limit orders (maker fee by default, no slippage). A bar without a price
   lets the pending order lapse.
2. ``mark_symbol`` at the close: the last price and the bar-volume EMA; ``book_value`` marks the
   positions; ``position_fractions`` gives the decision its portfolio.
3. ``submit_target`` after the decision: the approved target becomes the order for the next open
   (``flatten_on_ruin`` instead when equity is gone).
4. ``liquidate_all`` when a run ends: every open position sold at its last close, market order.

Slippage (fraction of price, adverse) = (base_bps + vol_bps * natr_pct) / 1e4 + size_k * order
notional / average bar volume notional (an EMA of close * volume over ``volume_window`` bars,
known at the decision), capped at ``max_slippage_bps``. Positions are average-cost, so equity =
initial + realized + unrealized - fees - funding holds at every bar.

State lives in three float arrays the caller owns: ``sym`` [symbol, SS_*], ``acct`` [AC_*], the
trade log [trade, TR_*] and the fill log [fill, FL_*] (both with room for what the bar can add:
one trade and two fills per symbol). Bars are numbered by the caller (the backtest: position in
its index; the paper broker: bar open time / bar length) and recorded as given.

Layout constants live in this file: numba's cache only notices edits to a kernel's own file.
"""

from __future__ import annotations

import numpy as np

from sextant.ta._jit import FloatArray, kernel

__all__ = [
    "AC_CASH",
    "AC_FILLS",
    "AC_REALIZED",
    "AC_SIZE",
    "AC_TRADES",
    "EXIT_END",
    "EXIT_REASONS",
    "EXIT_REVERSE",
    "EXIT_RISK",
    "EXIT_SIGNAL",
    "EXIT_STOP",
    "EXIT_TAKE_PROFIT",
    "EX_FIELDS",
    "EX_FUNDING",
    "EX_INITIAL",
    "EX_MAKER",
    "EX_SIZE",
    "EX_SLIP_BASE",
    "EX_SLIP_MAX",
    "EX_SLIP_SIZE",
    "EX_SLIP_VOL",
    "EX_TAKER",
    "EX_TP_MAKER",
    "EX_VOL_ALPHA",
    "FILL_FIELDS",
    "FILL_KINDS",
    "FK_LIQUIDATION",
    "FK_ORDER",
    "FK_STOP",
    "FK_TAKE_PROFIT",
    "FL_BAR",
    "FL_FEE",
    "FL_KIND",
    "FL_PRICE",
    "FL_SIZE",
    "FL_SYMBOL",
    "FL_UNITS",
    "SS_AVG",
    "SS_AVG_VOLUME",
    "SS_FIELDS",
    "SS_LAST_CLOSE",
    "SS_NATR",
    "SS_PENDING",
    "SS_PENDING_REASON",
    "SS_PENDING_STOP",
    "SS_PENDING_TP",
    "SS_SIZE",
    "SS_STOP",
    "SS_TP",
    "SS_TRADE",
    "SS_UNITS",
    "TRADE_FIELDS",
    "TR_ENTRY_BAR",
    "TR_ENTRY_NOTIONAL",
    "TR_ENTRY_QTY",
    "TR_EXIT_BAR",
    "TR_EXIT_NOTIONAL",
    "TR_EXIT_QTY",
    "TR_FEES",
    "TR_FUNDING",
    "TR_GROSS",
    "TR_MAX_UNITS",
    "TR_REASON",
    "TR_SIDE",
    "TR_SIZE",
    "TR_SYMBOL",
    "book_value",
    "flatten_on_ruin",
    "liquidate_all",
    "mark_symbol",
    "open_symbol",
    "position_fractions",
    "reset_books",
    "submit_target",
]

# --- ExecutionConfig array -------------------------------------------------------------------------
EX_FIELDS: tuple[str, ...] = (
    "initial_equity",
    "taker_fee",
    "maker_fee",
    "slippage_base_bps",
    "slippage_vol_bps",  # bps per natr percent
    "slippage_size_k",  # fraction per unit of participation
    "max_slippage_bps",
    "volume_alpha",  # EMA weight of the bar volume notional
    "take_profit_maker",  # 1: targets pay the maker fee, 0: taker
    "apply_funding",  # 1: apply funding
)
EX_INITIAL = EX_FIELDS.index("initial_equity")
EX_TAKER = EX_FIELDS.index("taker_fee")
EX_MAKER = EX_FIELDS.index("maker_fee")
EX_SLIP_BASE = EX_FIELDS.index("slippage_base_bps")
EX_SLIP_VOL = EX_FIELDS.index("slippage_vol_bps")
EX_SLIP_SIZE = EX_FIELDS.index("slippage_size_k")
EX_SLIP_MAX = EX_FIELDS.index("max_slippage_bps")
EX_VOL_ALPHA = EX_FIELDS.index("volume_alpha")
EX_TP_MAKER = EX_FIELDS.index("take_profit_maker")
EX_FUNDING = EX_FIELDS.index("apply_funding")
EX_SIZE = len(EX_FIELDS)

# --- per-symbol state columns ----------------------------------------------------------------------
SS_FIELDS: tuple[str, ...] = (
    "units",
    "avg_price",  # average entry price of the open position
    "stop",
    "take_profit",
    "pending",  # target units of the order waiting for the next open (NaN: none)
    "pending_stop",  # stop distance of that order's entry
    "pending_take_profit",
    "pending_reason",  # EXIT_* code if it closes the open trade
    "last_close",
    "avg_volume",  # EMA of close * volume
    "natr",  # latest natr_14 (percent) seen at a decision
    "trade",  # row of the open trade (-1: none)
)
SS_UNITS = SS_FIELDS.index("units")
SS_AVG = SS_FIELDS.index("avg_price")
SS_STOP = SS_FIELDS.index("stop")
SS_TP = SS_FIELDS.index("take_profit")
SS_PENDING = SS_FIELDS.index("pending")
SS_PENDING_STOP = SS_FIELDS.index("pending_stop")
SS_PENDING_TP = SS_FIELDS.index("pending_take_profit")
SS_PENDING_REASON = SS_FIELDS.index("pending_reason")
SS_LAST_CLOSE = SS_FIELDS.index("last_close")
SS_AVG_VOLUME = SS_FIELDS.index("avg_volume")
SS_NATR = SS_FIELDS.index("natr")
SS_TRADE = SS_FIELDS.index("trade")
SS_SIZE = len(SS_FIELDS)

# --- account ---------------------------------------------------------------------------------------
AC_CASH = 0
AC_REALIZED = 1
AC_TRADES = 2  # trade rows used
AC_FILLS = 3  # fill rows used
AC_SIZE = 4

# --- trade records ---------------------------------------------------------------------------------
TRADE_FIELDS: tuple[str, ...] = (
    "symbol",
    "side",
    "entry_bar",
    "exit_bar",
    "max_units",
    "entry_qty",
    "entry_notional",
    "exit_qty",
    "exit_notional",
    "gross_pnl",
    "fees",
    "funding",
    "reason",
)
TR_SYMBOL = TRADE_FIELDS.index("symbol")
TR_SIDE = TRADE_FIELDS.index("side")
TR_ENTRY_BAR = TRADE_FIELDS.index("entry_bar")
TR_EXIT_BAR = TRADE_FIELDS.index("exit_bar")
TR_MAX_UNITS = TRADE_FIELDS.index("max_units")
TR_ENTRY_QTY = TRADE_FIELDS.index("entry_qty")
TR_ENTRY_NOTIONAL = TRADE_FIELDS.index("entry_notional")
TR_EXIT_QTY = TRADE_FIELDS.index("exit_qty")
TR_EXIT_NOTIONAL = TRADE_FIELDS.index("exit_notional")
TR_GROSS = TRADE_FIELDS.index("gross_pnl")
TR_FEES = TRADE_FIELDS.index("fees")
TR_FUNDING = TRADE_FIELDS.index("funding")
TR_REASON = TRADE_FIELDS.index("reason")
TR_SIZE = len(TRADE_FIELDS)

EXIT_REASONS: tuple[str, ...] = (
    "SIGNAL",
    "REVERSE",
    "STOP",
    "TAKE_PROFIT",
    "RISK",
    "END_OF_BACKTEST",  # still open when the run ended: sold at its last close, market order
)
EXIT_SIGNAL = EXIT_REASONS.index("SIGNAL")
EXIT_REVERSE = EXIT_REASONS.index("REVERSE")
EXIT_STOP = EXIT_REASONS.index("STOP")
EXIT_TAKE_PROFIT = EXIT_REASONS.index("TAKE_PROFIT")
EXIT_RISK = EXIT_REASONS.index("RISK")
EXIT_END = EXIT_REASONS.index("END_OF_BACKTEST")

# --- fill records ----------------------------------------------------------------------------------
FILL_FIELDS: tuple[str, ...] = ("bar", "symbol", "units", "price", "fee", "kind")
FL_BAR = FILL_FIELDS.index("bar")
FL_SYMBOL = FILL_FIELDS.index("symbol")
FL_UNITS = FILL_FIELDS.index("units")  # signed: + bought, - sold
FL_PRICE = FILL_FIELDS.index("price")
FL_FEE = FILL_FIELDS.index("fee")
FL_KIND = FILL_FIELDS.index("kind")
FL_SIZE = len(FILL_FIELDS)
FILL_KINDS: tuple[str, ...] = ("ORDER", "STOP", "TAKE_PROFIT", "LIQUIDATION")
FK_ORDER = FILL_KINDS.index("ORDER")  # the market order decided at the previous close
FK_STOP = FILL_KINDS.index("STOP")
FK_TAKE_PROFIT = FILL_KINDS.index("TAKE_PROFIT")
FK_LIQUIDATION = FILL_KINDS.index("LIQUIDATION")  # the end of a run


@kernel
def _side(x: float) -> float:
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


@kernel
def reset_books(sym: FloatArray, acct: FloatArray, cfg: FloatArray) -> None:
    """Flat books: initial cash, no positions, orders, prices or trades."""
    for s in range(sym.shape[0]):
        for f in range(SS_SIZE):
            sym[s, f] = 0.0
        sym[s, SS_STOP] = np.nan
        sym[s, SS_TP] = np.nan
        sym[s, SS_PENDING] = np.nan
        sym[s, SS_LAST_CLOSE] = np.nan
        sym[s, SS_AVG_VOLUME] = np.nan
        sym[s, SS_NATR] = np.nan
        sym[s, SS_TRADE] = -1.0
    acct[AC_CASH] = cfg[EX_INITIAL]
    acct[AC_REALIZED] = 0.0
    acct[AC_TRADES] = 0.0
    acct[AC_FILLS] = 0.0


@kernel
def _exec_price(
    price: float, delta: float, natr: float, avg_volume: float, cfg: FloatArray
) -> float:
    """Fill price of a market order of ``delta`` units at ``price``, slippage against the order."""
    bps: float = cfg[EX_SLIP_BASE]
    if natr > 0.0:
        bps += cfg[EX_SLIP_VOL] * natr
    slip: float = bps / 1e4
    if avg_volume > 0.0:
        slip += cfg[EX_SLIP_SIZE] * abs(delta) * price / avg_volume
    slip = min(slip, cfg[EX_SLIP_MAX] / 1e4)
    return price * (1.0 + slip) if delta > 0.0 else price * (1.0 - slip)


@kernel
def _fill(
    s: int,
    t: int,
    delta: float,
    price: float,
    fee_rate: float,
    reason: int,
    kind: int,
    sym: FloatArray,
    acct: FloatArray,
    trades: FloatArray,
    fills: FloatArray,
) -> float:
    """Trade ``delta`` units of symbol ``s`` at ``price``: cash, fee, average cost, both logs.

    A fill that crosses zero closes the open trade and opens a new one; returns the fee.
    """
    units = sym[s, SS_UNITS]
    fee = abs(delta) * price * fee_rate
    acct[AC_CASH] -= delta * price + fee
    n = int(acct[AC_FILLS])
    acct[AC_FILLS] = n + 1
    fills[n, FL_BAR] = t
    fills[n, FL_SYMBOL] = s
    fills[n, FL_UNITS] = delta
    fills[n, FL_PRICE] = price
    fills[n, FL_FEE] = fee
    fills[n, FL_KIND] = kind
    remaining = delta
    if units != 0.0 and delta * units < 0.0:
        side = _side(units)
        close_qty = min(abs(delta), abs(units))
        pnl = close_qty * (price - sym[s, SS_AVG]) * side
        acct[AC_REALIZED] += pnl
        k = int(sym[s, SS_TRADE])
        trades[k, TR_EXIT_QTY] += close_qty
        trades[k, TR_EXIT_NOTIONAL] += close_qty * price
        trades[k, TR_GROSS] += pnl
        trades[k, TR_FEES] += fee * close_qty / abs(delta)
        if close_qty == abs(units):
            units = 0.0
            remaining = delta + side * close_qty
            trades[k, TR_EXIT_BAR] = t
            trades[k, TR_REASON] = reason
            sym[s, SS_TRADE] = -1.0
            sym[s, SS_AVG] = 0.0
            sym[s, SS_STOP] = np.nan
            sym[s, SS_TP] = np.nan
        else:
            units -= side * close_qty
            remaining = 0.0
    if remaining != 0.0:
        if units == 0.0:
            k = int(acct[AC_TRADES])
            acct[AC_TRADES] = k + 1
            for f in range(TR_SIZE):
                trades[k, f] = 0.0
            trades[k, TR_SYMBOL] = s
            trades[k, TR_SIDE] = _side(remaining)
            trades[k, TR_ENTRY_BAR] = t
            trades[k, TR_EXIT_BAR] = -1.0
            trades[k, TR_REASON] = -1.0
            sym[s, SS_TRADE] = k
            sym[s, SS_AVG] = price
        else:
            k = int(sym[s, SS_TRADE])
            held = abs(units)
            sym[s, SS_AVG] = (sym[s, SS_AVG] * held + price * abs(remaining)) / (
                held + abs(remaining)
            )
        units += remaining
        trades[k, TR_ENTRY_QTY] += abs(remaining)
        trades[k, TR_ENTRY_NOTIONAL] += abs(remaining) * price
        trades[k, TR_FEES] += fee * abs(remaining) / abs(delta)
        trades[k, TR_MAX_UNITS] = max(trades[k, TR_MAX_UNITS], abs(units))
    sym[s, SS_UNITS] = units
    return fee


@kernel
def _exits(
    s: int,
    t: int,
    o: float,
    h: float,
    lo: float,
    sym: FloatArray,
    acct: FloatArray,
    trades: FloatArray,
    fills: FloatArray,
    cfg: FloatArray,
) -> float:
    """Stop and take profit of symbol ``s`` within bar ``t`` (stop first); returns the fee."""
    units = sym[s, SS_UNITS]
    if units == 0.0:
        return 0.0
    stop = sym[s, SS_STOP]
    target = sym[s, SS_TP]
    level = np.nan
    reason = EXIT_STOP
    if units > 0.0:
        if o <= stop:
            level = o
        elif o >= target:
            level = o
            reason = EXIT_TAKE_PROFIT
        elif lo <= stop:
            level = stop
        elif h >= target:
            level = target
            reason = EXIT_TAKE_PROFIT
    else:
        if o >= stop:
            level = o
        elif o <= target:
            level = o
            reason = EXIT_TAKE_PROFIT
        elif h >= stop:
            level = stop
        elif lo <= target:
            level = target
            reason = EXIT_TAKE_PROFIT
    if np.isnan(level):
        return 0.0
    delta = -units
    if reason == EXIT_STOP:
        price = _exec_price(level, delta, sym[s, SS_NATR], sym[s, SS_AVG_VOLUME], cfg)
        return _fill(s, t, delta, price, cfg[EX_TAKER], reason, FK_STOP, sym, acct, trades, fills)
    fee_rate = cfg[EX_MAKER] if cfg[EX_TP_MAKER] != 0.0 else cfg[EX_TAKER]
    return _fill(s, t, delta, level, fee_rate, reason, FK_TAKE_PROFIT, sym, acct, trades, fills)


@kernel
def open_symbol(
    s: int,
    t: int,
    o: float,
    h: float,
    lo: float,
    rate: float,
    sym: FloatArray,
    acct: FloatArray,
    trades: FloatArray,
    fills: FloatArray,
    cfg: FloatArray,
    paid: FloatArray,
) -> float:
    """Symbol ``s``'s bar ``t`` up to its close: funding, the pending order, stop and target.

    Returns the fees paid; ``paid[0]`` is set to the funding paid (negative: received).
    """
    paid[0] = 0.0
    if not o > 0.0:
        sym[s, SS_PENDING] = np.nan  # no bar: the order lapses
        return 0.0
    fees = 0.0
    units = sym[s, SS_UNITS]
    if cfg[EX_FUNDING] != 0.0 and units != 0.0 and rate == rate and rate != 0.0:
        amount = units * o * rate
        acct[AC_CASH] -= amount
        paid[0] = amount
        trades[int(sym[s, SS_TRADE]), TR_FUNDING] += amount
    target = sym[s, SS_PENDING]
    if target == target:
        sym[s, SS_PENDING] = np.nan
        delta = target - units
        if delta != 0.0:
            price = _exec_price(o, delta, sym[s, SS_NATR], sym[s, SS_AVG_VOLUME], cfg)
            fees += _fill(
                s,
                t,
                delta,
                price,
                cfg[EX_TAKER],
                int(sym[s, SS_PENDING_REASON]),
                FK_ORDER,
                sym,
                acct,
                trades,
                fills,
            )
            now = sym[s, SS_UNITS]
            if now != 0.0 and (units == 0.0 or now * units < 0.0):
                side = _side(now)
                sym[s, SS_STOP] = price - side * sym[s, SS_PENDING_STOP]
                sym[s, SS_TP] = price + side * sym[s, SS_PENDING_TP]
    fees += _exits(s, t, o, h, lo, sym, acct, trades, fills, cfg)
    return fees


@kernel
def mark_symbol(s: int, c: float, v: float, sym: FloatArray, cfg: FloatArray) -> None:
    """Symbol ``s`` at its close: the last price, and the bar-volume notional EMA."""
    if c > 0.0:
        sym[s, SS_LAST_CLOSE] = c
        if v >= 0.0:
            notional = c * v
            previous = sym[s, SS_AVG_VOLUME]
            if previous == previous:
                sym[s, SS_AVG_VOLUME] = previous + cfg[EX_VOL_ALPHA] * (notional - previous)
            else:
                sym[s, SS_AVG_VOLUME] = notional


@kernel
def book_value(sym: FloatArray, acct: FloatArray, marked: FloatArray) -> float:
    """Equity (cash + positions at their last close); ``marked[0]`` = the unrealized P&L."""
    value = 0.0
    unrealized = 0.0
    for s in range(sym.shape[0]):
        units = sym[s, SS_UNITS]
        if units != 0.0:
            mark = sym[s, SS_LAST_CLOSE]
            value += units * mark
            unrealized += units * (mark - sym[s, SS_AVG])
    marked[0] = unrealized
    equity: float = acct[AC_CASH] + value
    return equity


@kernel
def position_fractions(sym: FloatArray, equity: float, positions: FloatArray) -> None:
    """Each symbol's position as a signed fraction of ``equity``, at its last close."""
    for s in range(sym.shape[0]):
        units = sym[s, SS_UNITS]
        positions[s] = units * sym[s, SS_LAST_CLOSE] / equity if units != 0.0 else 0.0


@kernel
def submit_target(
    s: int,
    approved: float,
    current: float,
    proposed: float,
    stop_distance: float,
    take_profit_distance: float,
    natr: float,
    equity: float,
    c: float,
    sym: FloatArray,
) -> bool:
    """Queue the order that takes symbol ``s`` to the ``approved`` fraction at the next open.

    ``current``/``proposed`` are the decision's; the stop and take-profit distances apply if
    the order opens or reverses a position. Returns whether an order was queued.
    """
    sym[s, SS_NATR] = natr
    if approved == current:
        return False
    sym[s, SS_PENDING] = approved * equity / c if approved != 0.0 else 0.0
    sym[s, SS_PENDING_STOP] = stop_distance
    sym[s, SS_PENDING_TP] = take_profit_distance
    if approved * current < 0.0:
        sym[s, SS_PENDING_REASON] = EXIT_REVERSE
    elif approved == 0.0 and proposed == 0.0:
        sym[s, SS_PENDING_REASON] = EXIT_SIGNAL
    else:
        sym[s, SS_PENDING_REASON] = EXIT_RISK
    return True


@kernel
def flatten_on_ruin(s: int, sym: FloatArray) -> None:
    """No equity left to size against: close symbol ``s`` at the next open, decide nothing."""
    if sym[s, SS_UNITS] != 0.0:
        sym[s, SS_PENDING] = 0.0
        sym[s, SS_PENDING_REASON] = EXIT_RISK


@kernel
def liquidate_all(
    t: int,
    sym: FloatArray,
    acct: FloatArray,
    trades: FloatArray,
    fills: FloatArray,
    cfg: FloatArray,
    fees: FloatArray,
) -> None:
    """The end of a run: every open position sold at its last close as a market order.

    ``fees[s]`` is increased by symbol ``s``'s fee; pending orders are dropped.
    """
    for s in range(sym.shape[0]):
        sym[s, SS_PENDING] = np.nan
        units = sym[s, SS_UNITS]
        if units != 0.0:
            mark = sym[s, SS_LAST_CLOSE]
            price = _exec_price(mark, -units, sym[s, SS_NATR], sym[s, SS_AVG_VOLUME], cfg)
            fees[s] += _fill(
                s,
                t,
                -units,
                price,
                cfg[EX_TAKER],
                EXIT_END,
                FK_LIQUIDATION,
                sym,
                acct,
                trades,
                fills,
            )
