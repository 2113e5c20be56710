"""Position sizing: volatility target, fractional Kelly cap on the loss at the stop, leverage cap."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sextant.decision import _kernels as layout
from sextant.decision._kernels import SIZE_CAPS, size_kernel
from sextant.decision.config import SizingConfig
from sextant.ta._jit import FloatArray

__all__ = ["SIZE_CAPS", "PositionSize", "position_size_from", "size_position"]


@dataclass(frozen=True, slots=True)
class PositionSize:
    """The entry size an order in ``direction`` would take, and the figures behind it.

    ``fraction`` (unsigned notional, of equity) = min(vol_target_fraction, kelly_cap, max
    leverage), and ``binding`` names the cap that set it (a ``SIZE_CAPS`` name; None, with
    fraction 0, without a direction or when the GARCH variance, the ATR or the probability is
    unknown). Kelly bounds the loss: ``kelly_risk_fraction`` of equity is what a stop-out may
    cost, and ``kelly_cap`` the notional fraction whose stop-out costs exactly that. Stop and
    take profit are price distances from the entry (the executor anchors them at the fill
    price); ``stop_loss``/``take_profit`` are those levels around the reference price for the
    direction (NaN without one).
    """

    direction: int
    probability: float  # P(horizon return > 0) in the trade's direction, as Kelly uses it
    vol_target_fraction: float
    kelly_raw: float  # p - (1 - p) / b
    kelly_risk_fraction: float  # kelly_fraction * max(kelly_raw, 0): equity lost at the stop
    kelly_cap: float  # kelly_risk_fraction / (stop_distance / price): a notional fraction
    fraction: float
    binding: str | None
    stop_distance: float
    take_profit_distance: float
    stop_loss: float
    take_profit: float


def position_size_from(
    out: Sequence[float] | FloatArray, direction: int, price: float
) -> PositionSize:
    """The sizing part of a decision output vector (the array, or its values as a list)."""
    stop_dist = float(out[layout.O_STOP_DIST])
    tp_dist = float(out[layout.O_TP_DIST])
    stop = price - direction * stop_dist if direction else math.nan
    target = price + direction * tp_dist if direction else math.nan
    code = float(out[layout.O_SIZE_BINDING])
    return PositionSize(
        direction=direction,
        probability=float(out[layout.O_PROB]),
        vol_target_fraction=float(out[layout.O_VOL_FRACTION]),
        kelly_raw=float(out[layout.O_KELLY_RAW]),
        kelly_risk_fraction=float(out[layout.O_KELLY_RISK]),
        kelly_cap=float(out[layout.O_KELLY_CAP]),
        fraction=float(out[layout.O_SIZE_FRACTION]),
        binding=None if math.isnan(code) else layout.SIZE_CAPS[int(code)],
        stop_distance=stop_dist,
        take_profit_distance=tp_dist,
        stop_loss=stop,
        take_profit=target,
    )


def size_position(
    direction: int,
    probability: float,
    garch_variance: float,
    natr_pct: float,
    price: float,
    config: SizingConfig,
) -> PositionSize:
    """Entry size for ``direction`` from the GARCH one-step variance (per bar) and natr_14 (%)."""
    out = np.full(layout.N_OUT, np.nan)
    size_kernel(
        float(direction),
        float(probability),
        float(garch_variance),
        float(natr_pct),
        float(price),
        config.to_array(),
        out,
    )
    return position_size_from(out, direction, price)
