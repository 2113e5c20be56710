"""The execution kernels' trade and fill rows as frames (backtest results, paper reports)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.execution import _kernels as k
from sextant.ta._jit import FloatArray

__all__ = ["BarTimes", "fill_frame", "trade_frame"]

# bar numbers (as the kernels recorded them) -> their open times
BarTimes = Callable[[npt.NDArray[np.int64]], pd.DatetimeIndex]


def trade_frame(rows: FloatArray, symbols: Sequence[str], bar_open: BarTimes) -> pd.DataFrame:
    """One row per trade: entry at the open of its first fill's bar, exit at its last fill's.

    An open trade has exit_bar -1: its exit_ts is NaT and its reason empty.
    """
    r = rows
    entry_qty = r[:, k.TR_ENTRY_QTY]
    exit_qty = r[:, k.TR_EXIT_QTY]
    with np.errstate(invalid="ignore", divide="ignore"):
        entry_price = r[:, k.TR_ENTRY_NOTIONAL] / entry_qty
        exit_price = r[:, k.TR_EXIT_NOTIONAL] / exit_qty
    entry_bar = r[:, k.TR_ENTRY_BAR].astype(np.int64)
    exit_bar = r[:, k.TR_EXIT_BAR].astype(np.int64)
    closed = exit_bar >= 0
    exit_ts = pd.Series(pd.NaT, index=range(len(r)), dtype="datetime64[ns, UTC]")
    if closed.any():
        exit_ts[closed] = bar_open(exit_bar[closed])
    pnl = r[:, k.TR_GROSS] - r[:, k.TR_FEES] - r[:, k.TR_FUNDING]
    return pd.DataFrame(
        {
            "symbol": pd.Series([symbols[int(i)] for i in r[:, k.TR_SYMBOL]], dtype=object),
            "side": np.where(r[:, k.TR_SIDE] > 0, "LONG", "SHORT").astype(object),
            "entry_ts": bar_open(entry_bar),
            "exit_ts": pd.DatetimeIndex(exit_ts),
            "bars_held": np.where(closed, exit_bar - entry_bar, -1),
            "units": r[:, k.TR_MAX_UNITS],
            "entry_price": entry_price,
            "exit_price": exit_price,
            "gross_pnl": r[:, k.TR_GROSS],
            "fees": r[:, k.TR_FEES],
            "funding": r[:, k.TR_FUNDING],
            "pnl": pnl,
            "return_pct": pnl / r[:, k.TR_ENTRY_NOTIONAL] * 100.0,
            "reason": pd.Series(
                [k.EXIT_REASONS[int(i)] if i >= 0 else "" for i in r[:, k.TR_REASON]],
                dtype=object,
            ),
        }
    )


def fill_frame(rows: FloatArray, symbols: Sequence[str], bar_open: BarTimes) -> pd.DataFrame:
    """One row per fill: the bar it filled in (open time), symbol, signed units, price, fee, kind.

    ORDER fills happen at the bar's open; STOP and TAKE_PROFIT within it; LIQUIDATION at the
    close of the run's last bar.
    """
    r = rows
    return pd.DataFrame(
        {
            "bar_ts": bar_open(r[:, k.FL_BAR].astype(np.int64)),
            "symbol": pd.Series([symbols[int(i)] for i in r[:, k.FL_SYMBOL]], dtype=object),
            "units": r[:, k.FL_UNITS],
            "price": r[:, k.FL_PRICE],
            "fee": r[:, k.FL_FEE],
            "kind": pd.Series([k.FILL_KINDS[int(i)] for i in r[:, k.FL_KIND]], dtype=object),
        }
    )
