"""The review page's chart layout (`serving.web.chart`): candles, levels and the decision marker."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from serving.web.chart import ChartCandle, build_chart, decision_levels

HOUR = timedelta(hours=1)
T0 = datetime(2024, 1, 10, tzinfo=UTC)


def candles(n: int) -> list[ChartCandle]:
    """``n`` hourly candles opening at T0, each rising by 10 from 100 (wicks of 5)."""
    return [
        ChartCandle(
            T0 + i * HOUR, 100.0 + 10 * i, 105.0 + 10 * i + 5, 95.0 + 10 * i, 105.0 + 10 * i
        )
        for i in range(n)
    ]


def test_levels_are_those_the_record_set() -> None:
    entry = {"price": 150.0, "stop_loss": 140.0, "take_profit": 175.0}
    hold = {"price": 150.0, "stop_loss": None, "take_profit": math.nan}

    assert decision_levels(entry) == {"entry": 150.0, "stop-loss": 140.0, "take-profit": 175.0}
    assert decision_levels(hold) == {"entry": 150.0}


def test_the_chart_marks_the_decision_bar_and_orders_the_levels() -> None:
    bars = candles(8)
    decided_at = T0 + 6 * HOUR  # the close of the bar opening at T0 + 5 h

    chart = build_chart(
        bars, {"entry": 155.0, "stop-loss": 140.0, "take-profit": 240.0}, decided_at, HOUR
    )

    assert len(chart.candles) == 8
    assert chart.decision_x == chart.candles[5].x
    assert [c.after for c in chart.candles] == [False] * 6 + [True] * 2
    ys = {level.name: level.y for level in chart.levels}
    assert ys["take-profit"] < ys["entry"] < ys["stop-loss"]  # SVG y grows downwards
    every_y = [y for c in chart.candles for y in (c.high_y, c.low_y)] + list(ys.values())
    assert all(chart.plot_top <= y <= chart.plot_bottom for y in every_y)
    assert chart.candles[0].low_y > chart.candles[-1].high_y  # rising prices go up
    assert all(c.rising for c in chart.candles)
    tick_ys = [y for y, _ in chart.ticks]
    assert tick_ys == sorted(tick_ys, reverse=True)  # lowest price at the bottom
    assert chart.first_label == "2024-01-10 00:00" and chart.last_label == "2024-01-10 07:00 UTC"


def test_a_decision_bar_without_a_candle_has_no_marker_and_no_candles_no_plot() -> None:
    bars = [c for c in candles(8) if c.bar_open != T0 + 5 * HOUR]

    gap = build_chart(bars, {"entry": 155.0}, T0 + 6 * HOUR, HOUR)
    empty = build_chart([], {}, T0, HOUR)

    assert gap.decision_x is None and len(gap.candles) == 7
    assert [c.after for c in gap.candles] == [False] * 5 + [True] * 2
    assert empty.candles == () and empty.levels == () and empty.decision_x is None
