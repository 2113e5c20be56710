"""The backtest's compiled bar loop: fills, stops, funding and accounting around ``decide_kernel``.

Every decision is made by ``sextant.decision._kernels.decide_kernel``, the function the live
``decide`` calls; this file adds only execution and bookkeeping. Per bar ``t`` and symbol:

1. at the open: funding settles on the position carried into the bar (cash -= units * open *
   rate: longs pay a positive rate, shorts receive it); then the market order decided at the
   previous close fills at the open (taker fee, slippage against the order); a new position's
   stop and take profit are anchored at its fill price;
2. within the bar: a stop or target the open gapped through fills at the open; else the stop
   is checked before the target (when the bar touches both, the stop is assumed first);
   stops are market orders (taker fee, slippage), targets limit orders (maker fee by default,
   no slippage);
3. at the close: positions are marked, then each symbol's decision sees only bar ``t``'s
   inputs and the portfolio (symbols decided earlier in the bar count at their new target);
   an order waits for the next bar's open (and lapses if that bar has no price). A position
   stopped out within a bar may be entered again at its close if the signal still says so.

After the last bar's decisions, every open position is sold at its last close as a market
order (taker fee, slippage), an ``END_OF_BACKTEST`` exit: the last bar's equity is what a
liquidation would leave, and the last bar's position is 0.

Slippage (fraction of price, adverse) = (base_bps + vol_bps * natr_pct) / 1e4 + size_k *
order notional / average bar volume notional (an EMA of close * volume over ``volume_window``
bars, known at the decision), capped at ``max_slippage_bps``. Positions are average-cost, so
equity = initial + realized + unrealized - fees - funding holds at every bar.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from sextant.decision import _kernels
from sextant.decision._kernels import (
    CK_PASSED,
    F_NATR,
    N_CHECK_FIELDS,
    N_CHECKS,
    N_OUT,
    O_CURRENT,
    O_PROPOSED,
    O_STOP_DIST,
    O_TP_DIST,
    OUTPUT_NAMES,
    RS_STATE,
    decide_kernel,
)
from sextant.ta import _jit
from sextant.ta._jit import FloatArray, kernel

__all__ = [
    "AC_BUILD",
    "AC_CASH",
    "AC_REALIZED",
    "AC_SIZE",
    "AC_TRADES",
    "BT_FUNDING",
    "BT_INITIAL",
    "BT_MAKER",
    "BT_SIZE",
    "BT_SLIP_BASE",
    "BT_SLIP_MAX",
    "BT_SLIP_SIZE",
    "BT_SLIP_VOL",
    "BT_TAKER",
    "BT_TP_MAKER",
    "BT_VOL_ALPHA",
    "DECISION_FIELDS",
    "D_SIZE",
    "EXIT_END_OF_BACKTEST",
    "EXIT_REASONS",
    "EXIT_REVERSE",
    "EXIT_RISK",
    "EXIT_SIGNAL",
    "EXIT_STOP",
    "EXIT_TAKE_PROFIT",
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
    "compiled_loop",
    "source_fingerprint",
]

# --- BacktestConfig array ---------------------------------------------------------------------------
BT_INITIAL = 0
BT_TAKER = 1
BT_MAKER = 2
BT_SLIP_BASE = 3  # bps
BT_SLIP_VOL = 4  # bps per natr percent
BT_SLIP_SIZE = 5  # fraction per unit of participation
BT_SLIP_MAX = 6  # bps
BT_VOL_ALPHA = 7  # EMA weight of the bar volume notional
BT_TP_MAKER = 8  # 1: targets pay the maker fee, 0: taker
BT_FUNDING = 9  # 1: apply funding
BT_SIZE = 10

# --- per-symbol state columns -------------------------------------------------------------------
SS_UNITS = 0
SS_AVG = 1  # average entry price of the open position
SS_STOP = 2
SS_TP = 3
SS_PENDING = 4  # target units of the order waiting for the next open (NaN: none)
SS_PENDING_STOP = 5  # stop distance of that order's entry
SS_PENDING_TP = 6
SS_PENDING_REASON = 7  # EXIT_* code if it closes the open trade
SS_LAST_CLOSE = 8
SS_AVG_VOLUME = 9  # EMA of close * volume
SS_NATR = 10  # latest natr_14 (percent) seen at a decision
SS_TRADE = 11  # row of the open trade (-1: none)
SS_SIZE = 12

# --- account ------------------------------------------------------------------------------------------
AC_CASH = 0
AC_REALIZED = 1
AC_TRADES = 2
AC_BUILD = 3  # fingerprint of the decision kernels this loop was compiled with
AC_SIZE = 4

# --- trade records ----------------------------------------------------------------------------------
TR_SYMBOL = 0
TR_SIDE = 1
TR_ENTRY_BAR = 2
TR_EXIT_BAR = 3
TR_MAX_UNITS = 4
TR_ENTRY_QTY = 5
TR_ENTRY_NOTIONAL = 6
TR_EXIT_QTY = 7
TR_EXIT_NOTIONAL = 8
TR_GROSS = 9
TR_FEES = 10
TR_FUNDING = 11
TR_REASON = 12
TR_SIZE = 13
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

EXIT_REASONS: tuple[str, ...] = (
    "SIGNAL",
    "REVERSE",
    "STOP",
    "TAKE_PROFIT",
    "RISK",
    "END_OF_BACKTEST",  # still open after the last bar: sold at its close, as a market order
)
EXIT_SIGNAL = EXIT_REASONS.index("SIGNAL")
EXIT_REVERSE = EXIT_REASONS.index("REVERSE")
EXIT_STOP = EXIT_REASONS.index("STOP")
EXIT_TAKE_PROFIT = EXIT_REASONS.index("TAKE_PROFIT")
EXIT_RISK = EXIT_REASONS.index("RISK")
EXIT_END_OF_BACKTEST = EXIT_REASONS.index("END_OF_BACKTEST")

# --- recorded decision fields, [T, S, D_SIZE]: decision output slots, by their names ---------------
DECISION_FIELDS: tuple[str, ...] = (
    "ta_score",
    "ml_score",
    "fused_score",
    "direction",
    "confidence",
    "size_fraction",
    "size_binding",
    "current",
    "proposed",
    "approved",
    "action",
)
_DECISION_SLOTS = tuple(OUTPUT_NAMES.index(name) for name in DECISION_FIELDS)
D_SIZE = len(DECISION_FIELDS)


@kernel
def _side(x: float) -> float:
    # kept here rather than imported: numba's cache of this file's kernels cannot see edits elsewhere
    return 1.0 if x > 0.0 else (-1.0 if x < 0.0 else 0.0)


@kernel
def _exec_price(
    price: float, delta: float, natr: float, avg_volume: float, cfg: FloatArray
) -> float:
    """Fill price of a market order of ``delta`` units at ``price``, slippage against the order."""
    bps: float = cfg[BT_SLIP_BASE]
    if natr > 0.0:
        bps += cfg[BT_SLIP_VOL] * natr
    slip: float = bps / 1e4
    if avg_volume > 0.0:
        slip += cfg[BT_SLIP_SIZE] * abs(delta) * price / avg_volume
    slip = min(slip, cfg[BT_SLIP_MAX] / 1e4)
    return price * (1.0 + slip) if delta > 0.0 else price * (1.0 - slip)


@kernel
def _fill(
    s: int,
    t: int,
    delta: float,
    price: float,
    fee_rate: float,
    reason: int,
    sym: FloatArray,
    acct: FloatArray,
    trades: FloatArray,
) -> float:
    """Trade ``delta`` units of symbol ``s`` at ``price``: cash, fee, average cost, trade log.

    A fill that crosses zero closes the open trade and opens a new one; returns the fee.
    """
    units = sym[s, SS_UNITS]
    fee = abs(delta) * price * fee_rate
    acct[AC_CASH] -= delta * price + fee
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
        fee_rate = cfg[BT_TAKER]
    else:
        price = level
        fee_rate = cfg[BT_MAKER] if cfg[BT_TP_MAKER] != 0.0 else cfg[BT_TAKER]
    return _fill(s, t, delta, price, fee_rate, reason, sym, acct, trades)


def _build(fingerprint: int) -> Callable[..., Any]:
    """Compile the loop keyed on ``fingerprint`` (numba hashes closure values into cache keys)."""

    @kernel
    def backtest_loop(
        day: Any,
        open_: FloatArray,
        high: FloatArray,
        low: FloatArray,
        close: FloatArray,
        volume: FloatArray,
        features: FloatArray,
        p_xgb: FloatArray,
        p_lstm: FloatArray,
        garch_variance: FloatArray,
        var_quantile: FloatArray,
        funding: FloatArray,
        cfg_fuser: FloatArray,
        cfg_sizing: FloatArray,
        cfg_risk: FloatArray,
        cfg: FloatArray,
        risk_state: FloatArray,
        equity_out: FloatArray,
        cash_out: FloatArray,
        realized_out: FloatArray,
        unrealized_out: FloatArray,
        state_out: FloatArray,
        units_out: FloatArray,
        fees_out: FloatArray,
        funding_out: FloatArray,
        decisions: FloatArray,
        rejections: FloatArray,
        trades: FloatArray,
        acct: FloatArray,
    ) -> None:
        n_bars, n_symbols = close.shape
        sym = np.empty((n_symbols, SS_SIZE))
        for s in range(n_symbols):
            for f in range(SS_SIZE):
                sym[s, f] = 0.0
            sym[s, SS_STOP] = np.nan
            sym[s, SS_TP] = np.nan
            sym[s, SS_PENDING] = np.nan
            sym[s, SS_LAST_CLOSE] = np.nan
            sym[s, SS_AVG_VOLUME] = np.nan
            sym[s, SS_NATR] = np.nan
            sym[s, SS_TRADE] = -1.0
        acct[AC_CASH] = cfg[BT_INITIAL]
        acct[AC_REALIZED] = 0.0
        acct[AC_TRADES] = 0.0
        acct[AC_BUILD] = fingerprint
        positions = np.zeros(n_symbols)
        out = np.empty(N_OUT)
        checks = np.zeros((N_CHECKS, N_CHECK_FIELDS))
        alpha = cfg[BT_VOL_ALPHA]
        for t in range(n_bars):
            # --- the open and the bar: funding, pending orders, stops ------------------------
            for s in range(n_symbols):
                fees_out[t, s] = 0.0
                funding_out[t, s] = 0.0
                o = open_[t, s]
                if not o > 0.0:
                    sym[s, SS_PENDING] = np.nan  # no bar: the order lapses
                    continue
                units = sym[s, SS_UNITS]
                rate = funding[t, s]
                if cfg[BT_FUNDING] != 0.0 and units != 0.0 and rate == rate and rate != 0.0:
                    paid = units * o * rate
                    acct[AC_CASH] -= paid
                    funding_out[t, s] = paid
                    trades[int(sym[s, SS_TRADE]), TR_FUNDING] += paid
                target = sym[s, SS_PENDING]
                if target == target:
                    sym[s, SS_PENDING] = np.nan
                    delta = target - units
                    if delta != 0.0:
                        price = _exec_price(o, delta, sym[s, SS_NATR], sym[s, SS_AVG_VOLUME], cfg)
                        fees_out[t, s] += _fill(
                            s,
                            t,
                            delta,
                            price,
                            cfg[BT_TAKER],
                            int(sym[s, SS_PENDING_REASON]),
                            sym,
                            acct,
                            trades,
                        )
                        now = sym[s, SS_UNITS]
                        if now != 0.0 and (units == 0.0 or now * units < 0.0):
                            side = _side(now)
                            sym[s, SS_STOP] = price - side * sym[s, SS_PENDING_STOP]
                            sym[s, SS_TP] = price + side * sym[s, SS_PENDING_TP]
                fees_out[t, s] += _exits(s, t, o, high[t, s], low[t, s], sym, acct, trades, cfg)
            # --- the close: mark to market -------------------------------------------------------
            value = 0.0
            unrealized = 0.0
            for s in range(n_symbols):
                c = close[t, s]
                if c > 0.0:
                    sym[s, SS_LAST_CLOSE] = c
                    v = volume[t, s]
                    if v >= 0.0:
                        notional = c * v
                        previous = sym[s, SS_AVG_VOLUME]
                        if previous == previous:
                            sym[s, SS_AVG_VOLUME] = previous + alpha * (notional - previous)
                        else:
                            sym[s, SS_AVG_VOLUME] = notional
                units = sym[s, SS_UNITS]
                units_out[t, s] = units
                if units != 0.0:
                    mark = sym[s, SS_LAST_CLOSE]
                    value += units * mark
                    unrealized += units * (mark - sym[s, SS_AVG])
            equity = acct[AC_CASH] + value
            equity_out[t] = equity
            cash_out[t] = acct[AC_CASH]
            realized_out[t] = acct[AC_REALIZED]
            unrealized_out[t] = unrealized
            # --- the close: one decision per symbol, through the shared kernel --------------------
            for s in range(n_symbols):
                units = sym[s, SS_UNITS]
                positions[s] = units * sym[s, SS_LAST_CLOSE] / equity if units != 0.0 else 0.0
            for s in range(n_symbols):
                c = close[t, s]
                if not c > 0.0:
                    for f in range(D_SIZE):
                        decisions[t, s, f] = np.nan
                    continue
                if not equity > 0.0:
                    # nothing left to size against: liquidate, decide nothing
                    for f in range(D_SIZE):
                        decisions[t, s, f] = np.nan
                    if sym[s, SS_UNITS] != 0.0:
                        sym[s, SS_PENDING] = 0.0
                        sym[s, SS_PENDING_REASON] = EXIT_RISK
                    continue
                approved = decide_kernel(
                    features[t, s],
                    p_xgb[t, s],
                    p_lstm[t, s],
                    garch_variance[t, s],
                    var_quantile[t, s],
                    c,
                    day[t],
                    0.0,
                    False,
                    s,
                    positions,
                    equity,
                    risk_state,
                    cfg_fuser,
                    cfg_sizing,
                    cfg_risk,
                    out,
                    checks,
                )
                for f in range(D_SIZE):
                    decisions[t, s, f] = out[_DECISION_SLOTS[f]]
                sym[s, SS_NATR] = features[t, s, F_NATR]
                current = out[O_CURRENT]
                proposed = out[O_PROPOSED]
                if approved != current:
                    sym[s, SS_PENDING] = approved * equity / c if approved != 0.0 else 0.0
                    sym[s, SS_PENDING_STOP] = out[O_STOP_DIST]
                    sym[s, SS_PENDING_TP] = out[O_TP_DIST]
                    if approved * current < 0.0:
                        sym[s, SS_PENDING_REASON] = EXIT_REVERSE
                    elif approved == 0.0 and proposed == 0.0:
                        sym[s, SS_PENDING_REASON] = EXIT_SIGNAL
                    else:
                        sym[s, SS_PENDING_REASON] = EXIT_RISK
                    positions[s] = approved
                if approved != proposed:
                    for k in range(N_CHECKS):
                        if checks[k, CK_PASSED] == 0.0:
                            rejections[k] += 1.0
            state_out[t] = risk_state[RS_STATE]
        # --- the end: open positions are sold at the last close as market orders -------------
        last = n_bars - 1
        for s in range(n_symbols):
            units = sym[s, SS_UNITS]
            if units != 0.0:
                mark = sym[s, SS_LAST_CLOSE]
                price = _exec_price(mark, -units, sym[s, SS_NATR], sym[s, SS_AVG_VOLUME], cfg)
                fees_out[last, s] += _fill(
                    s, last, -units, price, cfg[BT_TAKER], EXIT_END_OF_BACKTEST, sym, acct, trades
                )
                units_out[last, s] = 0.0
        equity_out[last] = acct[AC_CASH]  # every position is closed
        cash_out[last] = acct[AC_CASH]
        realized_out[last] = acct[AC_REALIZED]
        unrealized_out[last] = 0.0

    return backtest_loop


def source_fingerprint() -> int:
    """A 52-bit hash of the decision kernels' source (and the compile policy) this loop inlines."""
    digest = hashlib.sha256()
    for module in (_kernels, _jit):
        digest.update(Path(module.__file__ or "").read_bytes())
    return int(digest.hexdigest()[:13], 16)


_COMPILED: dict[int, Callable[..., Any]] = {}


def compiled_loop() -> tuple[Callable[..., Any], int]:
    """The loop for the decision kernels as they are on disk now, and their fingerprint.

    numba's cache notices edits to this file only; keying the loop on the kernels' source
    means an edited decision kernel recompiles the loop instead of replaying a stale copy.
    """
    fingerprint = source_fingerprint()
    if fingerprint not in _COMPILED:
        _COMPILED[fingerprint] = _build(fingerprint)
    return _COMPILED[fingerprint], fingerprint
