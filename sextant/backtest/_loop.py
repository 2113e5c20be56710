"""The backtest's compiled bar loop: the execution core and ``decide_kernel``, bar by bar.

Every decision is made by ``sextant.decision._kernels.decide_kernel``, the function the live
``decide`` calls; every fill, fee, stop, funding payment and mark by the kernels of
``sextant.execution._kernels``, the functions the ``PaperBroker`` calls. This file only orders
them over [bar, symbol] arrays and records per-bar figures. Per bar ``t``: each symbol's open
(funding, the pending order, stop and target), the marks at the close, then one decision per
symbol from bar ``t``'s inputs and the portfolio (symbols decided earlier in the bar count at
their new target), whose order waits for the next bar's open. A position stopped out within a
bar may be entered again at its close if the signal still says so. ``feature_age`` and
``model_error`` are replayed from the inputs (stale features and model failures reach the gate
as they would live).

After the last bar's decisions, every open position is sold at its last close as a market
order (taker fee, slippage), an ``END_OF_BACKTEST`` exit: the last bar's equity is what a
liquidation would leave, and the last bar's position is 0.
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
from sextant.execution import _kernels as _execution
from sextant.execution._kernels import (
    AC_CASH,
    AC_REALIZED,
    SS_UNITS,
    book_value,
    flatten_on_ruin,
    liquidate_all,
    mark_symbol,
    open_symbol,
    position_fractions,
    reset_books,
    submit_target,
)
from sextant.ta import _jit
from sextant.ta._jit import FloatArray, kernel

__all__ = ["DECISION_FIELDS", "D_SIZE", "compiled_loop", "source_fingerprint"]

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
        feature_age: FloatArray,
        model_error: Any,
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
        sym: FloatArray,
        acct: FloatArray,
        trades: FloatArray,
        fills: FloatArray,
        build: FloatArray,
    ) -> None:
        n_bars, n_symbols = close.shape
        build[0] = fingerprint
        reset_books(sym, acct, cfg)
        positions = np.zeros(n_symbols)
        out = np.empty(N_OUT)
        checks = np.zeros((N_CHECKS, N_CHECK_FIELDS))
        scratch = np.zeros(1)
        for t in range(n_bars):
            # --- the open and the bar: funding, pending orders, stops ------------------------
            for s in range(n_symbols):
                fees_out[t, s] = open_symbol(
                    s,
                    t,
                    open_[t, s],
                    high[t, s],
                    low[t, s],
                    funding[t, s],
                    sym,
                    acct,
                    trades,
                    fills,
                    cfg,
                    scratch,
                )
                funding_out[t, s] = scratch[0]
            # --- the close: mark to market -------------------------------------------------------
            for s in range(n_symbols):
                mark_symbol(s, close[t, s], volume[t, s], sym, cfg)
                units_out[t, s] = sym[s, SS_UNITS]
            equity = book_value(sym, acct, scratch)
            equity_out[t] = equity
            cash_out[t] = acct[AC_CASH]
            realized_out[t] = acct[AC_REALIZED]
            unrealized_out[t] = scratch[0]
            # --- the close: one decision per symbol, through the shared kernel --------------------
            position_fractions(sym, equity, positions)
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
                    flatten_on_ruin(s, sym)
                    continue
                approved = decide_kernel(
                    features[t, s],
                    p_xgb[t, s],
                    p_lstm[t, s],
                    garch_variance[t, s],
                    var_quantile[t, s],
                    c,
                    day[t],
                    feature_age[t, s],
                    model_error[t, s],
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
                proposed = out[O_PROPOSED]
                if submit_target(
                    s,
                    approved,
                    out[O_CURRENT],
                    proposed,
                    out[O_STOP_DIST],
                    out[O_TP_DIST],
                    features[t, s, F_NATR],
                    equity,
                    c,
                    sym,
                ):
                    positions[s] = approved
                if approved != proposed:
                    for k in range(N_CHECKS):
                        if checks[k, CK_PASSED] == 0.0:
                            rejections[k] += 1.0
            state_out[t] = risk_state[RS_STATE]
        # --- the end: open positions are sold at the last close as market orders -------------
        last = n_bars - 1
        liquidate_all(last, sym, acct, trades, fills, cfg, fees_out[last])
        for s in range(n_symbols):
            units_out[last, s] = 0.0
        equity_out[last] = acct[AC_CASH]  # every position is closed
        cash_out[last] = acct[AC_CASH]
        realized_out[last] = acct[AC_REALIZED]
        unrealized_out[last] = 0.0

    return backtest_loop


def source_fingerprint() -> int:
    """A 52-bit hash of the kernels' source (decision, execution, compile policy) this loop inlines."""
    digest = hashlib.sha256()
    for module in (_kernels, _execution, _jit):
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
