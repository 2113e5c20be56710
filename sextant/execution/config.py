"""Execution assumptions shared by the backtest and the paper broker: fees, slippage, funding."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sextant.errors import ConfigError
from sextant.execution import _kernels as k
from sextant.ta._jit import FloatArray

__all__ = ["ExecutionConfig"]


def _positive(name: str, value: object, *, zero_ok: bool = True, upper: float = math.inf) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"ExecutionConfig.{name} must be a number, got {value!r}")
    ok = (value >= 0 if zero_ok else value > 0) and value <= upper and math.isfinite(value)
    if not ok:
        bound = ">= 0" if zero_ok else "> 0"
        if math.isfinite(upper):
            bound += f" and <= {upper}"
        raise ConfigError(f"ExecutionConfig.{name} must be finite and {bound}, got {value!r}")


@dataclass(frozen=True, slots=True)
class ExecutionConfig:
    """Execution and accounting assumptions of the backtest and paper trading (fees: fractions of notional)."""

    initial_equity: float = 100_000.0
    taker_fee: float = 0.0005  # market orders: entries, exits, stops (Binance USD-M default)
    maker_fee: float = 0.0002  # limit orders: take profits
    slippage_base_bps: float = 1.0
    slippage_vol_bps: float = 1.0  # extra bps per 1 % of natr_14
    slippage_size_k: float = 0.1  # extra fraction per unit of order notional / bar volume notional
    max_slippage_bps: float = 100.0
    volume_window: int = 24  # bars of the volume-notional EMA
    take_profit_maker: bool = True
    apply_funding: bool = True  # perpetual funding on open positions at settlement bars

    def __post_init__(self) -> None:
        _positive("initial_equity", self.initial_equity, zero_ok=False)
        _positive("taker_fee", self.taker_fee, upper=0.1)
        _positive("maker_fee", self.maker_fee, upper=0.1)
        _positive("slippage_base_bps", self.slippage_base_bps, upper=10_000)
        _positive("slippage_vol_bps", self.slippage_vol_bps, upper=10_000)
        _positive("slippage_size_k", self.slippage_size_k, upper=100)
        _positive("max_slippage_bps", self.max_slippage_bps, upper=10_000)
        if isinstance(self.volume_window, bool) or not isinstance(self.volume_window, int):
            raise ConfigError(
                f"ExecutionConfig.volume_window must be an integer, got {self.volume_window!r}"
            )
        if self.volume_window < 1:
            raise ConfigError(
                f"ExecutionConfig.volume_window must be >= 1, got {self.volume_window}"
            )
        for name in ("take_profit_maker", "apply_funding"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"ExecutionConfig.{name} must be true or false")

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

    def as_dict(self) -> dict[str, Any]:
        """Field values by name (for MLflow params)."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
