"""Backtest report: PNG charts and one self-contained HTML page with metrics, periods and a verdict."""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from sextant.backtest.metrics import METRIC_DESCRIPTIONS, METRIC_NAMES, drawdown
from sextant.errors import ConfigError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "ReportPaths",
    "StrategyLike",
    "format_metric",
    "metrics_table",
    "verdict",
    "write_report",
]

_PERCENT = {
    "total_return",
    "annualized_return",
    "annualized_volatility",
    "max_drawdown",
    "win_rate",
    "exposure",
}
_COUNT = {"max_drawdown_duration_bars", "n_trades", "n_bars"}
_SIGNIFICANCE = 0.95  # DSR at or above this: the Sharpe survives deflation at the 95% level


class StrategyLike(Protocol):
    """What the report reads of one strategy's result."""

    @property
    def equity(self) -> pd.Series:
        """Equity per bar, tz-aware UTC index."""

    @property
    def positions(self) -> pd.DataFrame:
        """Signed position per bar, one column per symbol."""

    @property
    def metrics(self) -> Mapping[str, float]:
        """Metrics as returned by ``performance_metrics``."""


@dataclass(frozen=True)
class ReportPaths:
    """Where the report was written."""

    html: Path
    png: list[Path] = field(default_factory=list)


def format_metric(name: str, value: float) -> str:
    """A metric as text: percentages for fractions, integers for counts, 3 decimals otherwise."""
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if name in _PERCENT:
        return f"{value:.2%}"
    if name in _COUNT:
        return f"{value:,.0f}"
    return f"{value:.3f}"


def metrics_table(strategies: Mapping[str, StrategyLike]) -> pd.DataFrame:
    """Strategies (rows) × metrics (columns, ``METRIC_NAMES`` order first), float values."""
    names = list(METRIC_NAMES)
    for result in strategies.values():
        names.extend(name for name in result.metrics if name not in names)
    rows = {
        label: [float(result.metrics.get(name, math.nan)) for name in names]
        for label, result in strategies.items()
    }
    return pd.DataFrame.from_dict(rows, orient="index", columns=names, dtype=np.float64)


def verdict(
    metrics: Mapping[str, Mapping[str, float]],
    *,
    primary: str,
    benchmark: str | None,
    period: str | None,
) -> str:
    """One sentence saying what the numbers say: gain or loss, versus the benchmark, significance."""
    main = metrics[primary]
    total = float(main.get("total_return", math.nan))
    where = f"on the reported period ({period})" if period else "on the reported period"
    if math.isnan(total):
        return f"{primary}: no total return was measured {where}."
    outcome = "was flat" if total == 0 else f"{'gained' if total > 0 else 'lost'} {abs(total):.2%}"
    sentence = (
        f"{primary} {outcome} (Sharpe {format_metric('sharpe', main.get('sharpe', math.nan))})"
    )
    if benchmark is not None:
        other = metrics[benchmark]
        other_total = float(other.get("total_return", math.nan))
        if math.isnan(other_total):
            sentence += f"; {benchmark} has no measured return to compare"
        else:
            if total > other_total:
                relation = "outperformed"
            elif total < other_total:
                relation = "underperformed"
            else:
                relation = "matched"
            # "but" when the comparison contradicts the sign of the result, so neither hides the other
            contrary = (total > 0 and relation == "underperformed") or (
                total < 0 and relation == "outperformed"
            )
            other_sharpe = format_metric("sharpe", other.get("sharpe", math.nan))
            sentence += (
                f" {'but' if contrary else 'and'} {relation} {benchmark} "
                f"({other_total:+.2%}, Sharpe {other_sharpe})"
            )
    sentence += f" {where}"
    dsr = float(main.get("dsr", math.nan))
    if not math.isnan(dsr):
        significance = "significant" if dsr >= _SIGNIFICANCE else "not significant"
        sentence += f"; deflated Sharpe ratio {dsr:.2f}: {significance} at the 95% level"
    return sentence + "."


def _dates(index: pd.Index) -> NDArray[np.datetime64]:
    """UTC instants as datetime64 for matplotlib (which plots in UTC by default)."""
    return pd.DatetimeIndex(index).tz_convert("UTC").to_numpy(dtype="datetime64[ns]")


def _new_figure(title: str, ylabel: str) -> tuple[Figure, Axes]:
    # the Agg canvas is attached to this figure only: no pyplot, no process-wide backend switch
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    axes.set_title(title)
    axes.set_ylabel(ylabel)
    axes.grid(visible=True, alpha=0.3)
    return figure, axes


def _date_axis(axes: Axes) -> None:
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    # matplotlib ships these two classes without annotations on __init__
    locator = AutoDateLocator()  # type: ignore[no-untyped-call]
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator))  # type: ignore[no-untyped-call]


def _placeholder(axes: Axes, text: str) -> None:
    axes.text(0.5, 0.5, text, transform=axes.transAxes, ha="center", va="center")


def _save(figure: Figure, path: Path) -> Path:
    figure.savefig(path, format="png")
    return path


def _plot_equity(strategies: Mapping[str, StrategyLike], path: Path) -> Path:
    figure, axes = _new_figure("Equity", "equity")
    for label, result in strategies.items():
        axes.plot(_dates(result.equity.index), result.equity.to_numpy(np.float64), label=label)
    _date_axis(axes)
    axes.legend(loc="best")
    return _save(figure, path)


def _plot_drawdown(strategies: Mapping[str, StrategyLike], path: Path) -> Path:
    figure, axes = _new_figure("Drawdown", "drawdown (%)")
    for label, result in strategies.items():
        under_water = drawdown(result.equity)
        axes.plot(_dates(under_water.index), under_water.to_numpy(np.float64) * 100.0, label=label)
    _date_axis(axes)
    axes.legend(loc="best")
    return _save(figure, path)


def _plot_positions(label: str, positions: pd.DataFrame, path: Path) -> Path:
    figure, axes = _new_figure(f"Positions ({label})", "signed position")
    if positions.shape[1] == 0 or len(positions) == 0:
        _placeholder(axes, "no positions")
    else:
        dates = _dates(positions.index)
        for symbol in positions.columns:
            values = positions[symbol].to_numpy(np.float64)
            axes.step(dates, values, where="post", label=str(symbol))
        axes.axhline(0.0, color="black", linewidth=0.8)
        _date_axis(axes)
        axes.legend(loc="best")
    return _save(figure, path)


def _plot_rejections(rejections: Mapping[str, int], path: Path) -> Path:
    figure, axes = _new_figure("Risk rejections by reason", "orders")
    ranked = sorted(rejections.items(), key=lambda item: (-item[1], item[0]))
    if not ranked:
        _placeholder(axes, "no risk rejections")
    else:
        axes.bar([code for code, _ in ranked], [count for _, count in ranked])
        axes.tick_params(axis="x", labelrotation=30)
    return _save(figure, path)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _image(path: Path, caption: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    text = html.escape(caption)
    return (
        f'<figure><img src="data:image/png;base64,{encoded}" alt="{text}">'
        f"<figcaption>{text}</figcaption></figure>"
    )


_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.verdict { font-size: 1.1em; font-weight: bold; }
img { max-width: 100%; }
"""


def _page(
    title: str,
    sentence: str,
    table: pd.DataFrame,
    periods: Mapping[str, str],
    rejections: Mapping[str, int],
    notes: Sequence[str],
    images: Sequence[tuple[Path, str]],
) -> str:
    values = table.to_numpy(dtype=np.float64)
    metric_rows = [
        [str(name), METRIC_DESCRIPTIONS.get(str(name), "")]
        + [format_metric(str(name), float(value)) for value in values[:, column]]
        for column, name in enumerate(table.columns)
    ]
    rejection_rows = [[code, f"{count:,}"] for code, count in sorted(rejections.items())]
    sections = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="verdict">{html.escape(sentence)}</p>',
        "<h2>Periods</h2>",
        _table(["use", "period"], [[use, span] for use, span in periods.items()]),
        "<h2>Metrics</h2>",
        _table(["metric", "definition", *map(str, table.index)], metric_rows),
        "<h2>Charts</h2>",
        *(_image(path, caption) for path, caption in images),
        "<h2>Risk rejections</h2>",
        _table(["reason", "orders"], rejection_rows) if rejection_rows else "<p>none</p>",
        "<h2>Notes</h2>",
        "<ul>" + "".join(f"<li>{html.escape(note)}</li>" for note in notes) + "</ul>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n<body>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )


def write_report(
    out_dir: Path,
    *,
    title: str,
    strategies: Mapping[str, StrategyLike],
    rejections: Mapping[str, int],
    periods: Mapping[str, str],
    notes: Sequence[str],
    primary: str = "fused",
    benchmark: str | None = "buy_and_hold",
) -> ReportPaths:
    """Write equity, drawdown, positions and rejection PNGs and ``report.html`` into ``out_dir``."""
    if not strategies:
        raise ConfigError("write_report: no strategies to report")
    for role, name in (("primary", primary), ("benchmark", benchmark)):
        if name is not None and name not in strategies:
            raise ConfigError(
                f"write_report: {role} strategy {name!r} is not among {sorted(strategies)}"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    images = [
        (_plot_equity(strategies, out_dir / "equity.png"), "Equity of every strategy"),
        (_plot_drawdown(strategies, out_dir / "drawdown.png"), "Drawdown of every strategy"),
        (
            _plot_positions(primary, strategies[primary].positions, out_dir / "positions.png"),
            f"Positions of {primary}",
        ),
        (_plot_rejections(rejections, out_dir / "rejections.png"), "Risk rejections by reason"),
    ]
    table = metrics_table(strategies)
    sentence = verdict(
        {label: result.metrics for label, result in strategies.items()},
        primary=primary,
        benchmark=benchmark,
        period=periods.get("reported"),
    )
    page = out_dir / "report.html"
    page.write_text(
        _page(title, sentence, table, periods, rejections, notes, images), encoding="utf-8"
    )
    return ReportPaths(html=page, png=[path for path, _ in images])
