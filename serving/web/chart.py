"""The review page's price chart: candles around a decision with its entry, stop and take-profit.

The geometry is computed here and drawn as inline SVG by the template (no JavaScript, no image
files): the chart is part of the page's HTML, so a test reads it as it reads the rest. Candles
come from the market store through `serving.market.closed_bars` (the features' candle source,
a bar without a candle left as a gap).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from serving.market import closed_bars
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "BARS_AFTER",
    "BARS_BEFORE",
    "CandleShape",
    "ChartCandle",
    "LevelLine",
    "PriceChart",
    "build_chart",
    "decision_levels",
    "read_candles",
]

BARS_BEFORE = 48  # bars shown up to the decision's bar
BARS_AFTER = 12  # bars shown after it (what happened next, shaded)
WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 70, 120, 14, 30  # margins: price ticks left, level labels right


@dataclass(frozen=True, slots=True)
class ChartCandle:
    """One stored candle (``bar_open`` is the bar's open time)."""

    bar_open: datetime
    open: float
    high: float
    low: float
    close: float


@dataclass(frozen=True, slots=True)
class CandleShape:
    """A candle in SVG coordinates: the wick (x, high_y..low_y) and the body rectangle."""

    x: float
    high_y: float
    low_y: float
    body_x: float
    body_y: float
    body_width: float
    body_height: float
    rising: bool
    after: bool  # opened after the decision (shown shaded: what came next)
    title: str


@dataclass(frozen=True, slots=True)
class LevelLine:
    """A horizontal price level (entry, stop-loss, take-profit) in SVG coordinates."""

    name: str
    price: float
    y: float
    label: str


@dataclass(frozen=True, slots=True)
class PriceChart:
    """Everything the template draws; ``candles`` is empty when the store had none."""

    width: int
    height: int
    plot_left: float
    plot_right: float
    plot_top: float
    plot_bottom: float
    candles: tuple[CandleShape, ...]
    levels: tuple[LevelLine, ...]
    ticks: tuple[tuple[float, str], ...]  # (y, price label)
    decision_x: float | None
    first_label: str
    last_label: str


def decision_levels(record: Mapping[str, Any]) -> dict[str, float]:
    """The prices a decision record marks: its reference price (entry for an order), and its
    stop-loss and take-profit when it set them (an entry or a reversal; null otherwise)."""
    levels: dict[str, float] = {}
    for name, key in (
        ("entry", "price"),
        ("stop-loss", "stop_loss"),
        ("take-profit", "take_profit"),
    ):
        value = record.get(key)
        if isinstance(value, int | float) and math.isfinite(value):
            levels[name] = float(value)
    return levels


def read_candles(settings: Settings, symbol: str, ts: datetime) -> list[ChartCandle]:
    """The symbol's candles from ``BARS_BEFORE`` bars before the decision's bar (the bar that
    closed at ``ts``) to ``BARS_AFTER`` bars after it; bars without a candle are left out."""
    bar = timeframe_to_timedelta(settings.timeframe)
    decided_open = ts - bar
    bars = closed_bars(
        settings, [symbol], decided_open - BARS_BEFORE * bar, decided_open + BARS_AFTER * bar
    )
    return [
        ChartCandle(b.bar_open, c.open, c.high, c.low, c.close)
        for b in bars
        if (c := b.candles.get(symbol)) is not None
    ]


def build_chart(
    candles: Sequence[ChartCandle],
    levels: Mapping[str, float],
    decided_at: datetime,
    bar: timedelta,
) -> PriceChart:
    """Lay out ``candles`` (oldest first) and the horizontal ``levels``; the decision's bar (the
    one closing at ``decided_at``) gets a vertical marker."""
    plot_left, plot_right = float(LEFT), float(WIDTH - RIGHT)
    plot_top, plot_bottom = float(TOP), float(HEIGHT - BOTTOM)
    prices = [p for c in candles for p in (c.high, c.low)] + list(levels.values())
    if not prices:
        return PriceChart(
            WIDTH, HEIGHT, plot_left, plot_right, plot_top, plot_bottom, (), (), (), None, "", ""
        )
    low, high = min(prices), max(prices)
    pad = (high - low) * 0.04 or abs(high) * 0.01 or 1.0
    low, high = low - pad, high + pad

    def y_of(price: float) -> float:
        return round(plot_bottom - (price - low) / (high - low) * (plot_bottom - plot_top), 2)

    slot = (plot_right - plot_left) / max(len(candles), 1)
    body = max(1.0, slot * 0.6)
    decided_open = decided_at - bar
    shapes = []
    decision_x: float | None = None
    for i, c in enumerate(candles):
        x = round(plot_left + slot * (i + 0.5), 2)
        if c.bar_open == decided_open:
            decision_x = x
        top, bottom = y_of(max(c.open, c.close)), y_of(min(c.open, c.close))
        shapes.append(
            CandleShape(
                x=x,
                high_y=y_of(c.high),
                low_y=y_of(c.low),
                body_x=round(x - body / 2, 2),
                body_y=top,
                body_width=round(body, 2),
                body_height=round(max(bottom - top, 1.0), 2),
                rising=c.close >= c.open,
                after=c.bar_open > decided_open,
                title=(
                    f"{c.bar_open:%Y-%m-%d %H:%M} UTC  O {c.open:g}  H {c.high:g}  "
                    f"L {c.low:g}  C {c.close:g}"
                ),
            )
        )
    lines = tuple(
        LevelLine(name, price, y_of(price), f"{name} {price:,.6g}")
        for name, price in levels.items()
    )
    ticks = tuple(
        (y_of(value), f"{value:,.6g}") for value in (low + (high - low) * k / 4 for k in range(5))
    )
    return PriceChart(
        WIDTH,
        HEIGHT,
        plot_left,
        plot_right,
        plot_top,
        plot_bottom,
        tuple(shapes),
        lines,
        ticks,
        decision_x,
        f"{candles[0].bar_open:%Y-%m-%d %H:%M}" if candles else "",
        f"{candles[-1].bar_open:%Y-%m-%d %H:%M} UTC" if candles else "",
    )
