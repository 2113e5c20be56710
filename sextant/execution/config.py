"""Execution assumptions shared by the backtest and the paper broker: fees, slippage, funding."""

from __future__ import annotations

from typing import Annotated

import numpy as np

from sextant.config import PositiveFloat, PositiveInt, SextantConfig, interval
from sextant.execution import _kernels as k
from sextant.ta._jit import FloatArray

__all__ = ["ExecutionConfig"]

Fee = Annotated[float, interval(0.0, 0.1)]  # a fraction of notional
Bps = Annotated[float, interval(0.0, 10_000.0)]


class ExecutionConfig(SextantConfig):
    """Execution and accounting assumptions of the backtest and of paper trading.

    Fees are fractions of notional; slippage is in basis points (see ``sextant.execution``).
    """

    initial_equity: PositiveFloat = 100_000.0
    taker_fee: Fee = 0.0005  # market orders: entries, exits, stops (Binance USD-M default)
    maker_fee: Fee = 0.0002  # limit orders: take profits
    slippage_base_bps: Bps = 1.0
    slippage_vol_bps: Bps = 1.0  # extra bps per 1 % of natr_14
    # extra fraction per unit of order notional / bar volume notional
    slippage_size_k: Annotated[float, interval(0.0, 100.0)] = 0.1
    max_slippage_bps: Bps = 100.0
    volume_window: PositiveInt = 24  # bars of the volume-notional EMA
    take_profit_maker: bool = True
    apply_funding: bool = True  # perpetual funding on open positions at settlement bars

    def to_array(self) -> FloatArray:
        """The execution kernels' layout (``EX_*`` indices)."""
        a = np.zeros(k.EX_SIZE, dtype=np.float64)
        a[k.EX_INITIAL] = self.initial_equity
        a[k.EX_TAKER] = self.taker_fee
        a[k.EX_MAKER] = self.maker_fee
        a[k.EX_SLIP_BASE] = self.slippage_base_bps
        a[k.EX_SLIP_VOL] = self.slippage_vol_bps
        a[k.EX_SLIP_SIZE] = self.slippage_size_k
        a[k.EX_SLIP_MAX] = self.max_slippage_bps
        a[k.EX_VOL_ALPHA] = 2.0 / (self.volume_window + 1.0)
        a[k.EX_TP_MAKER] = 1.0 if self.take_profit_maker else 0.0
        a[k.EX_FUNDING] = 1.0 if self.apply_funding else 0.0
        return a
