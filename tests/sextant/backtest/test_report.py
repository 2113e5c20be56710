"""The backtest report: files, contents, escaping, and a verdict that says what the numbers say."""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import matplotlib.image
import numpy as np
import pandas as pd
import pytest

from sextant.backtest.metrics import METRIC_NAMES, performance_metrics
from sextant.backtest.report import format_metric, metrics_table, verdict, write_report
from sextant.errors import ConfigError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
PERIODS = {"selection": "2020-09-01 .. 2020-09-30", "reported": "2020-10-01 .. 2020-10-31"}


@dataclass(frozen=True)
class Result:
    """The three things the report reads of a strategy (the engine's result has more)."""

    equity: pd.Series
    positions: pd.DataFrame
    metrics: Mapping[str, float]


def _result(close: pd.Series, weight: float, symbol: str = "BTC/USDT") -> Result:
    """A constant-weight strategy on real closes, rebalanced every bar, from 10,000 of cash."""
    growth = 1.0 + weight * close.pct_change().fillna(0.0).to_numpy()
    equity = pd.Series(10_000.0 * np.cumprod(growth), index=close.index)
    positions = pd.DataFrame({symbol: np.full(len(close), weight)}, index=close.index)
    metrics = performance_metrics(
        equity,
        trades=None,
        positions=positions,
        bars_per_year=8760.0,
        position_unit="fraction",
        bootstrap=200,
    )
    return Result(equity, positions, metrics)


@pytest.fixture(scope="module")
def strategies(shared_data: Path) -> dict[str, Result]:
    """October 2020 on real BTC hours (+26%): long wins, a half-size short loses, cash is flat."""
    path = shared_data / "roshan7869_algotrading" / "binance" / "BTC_USDT-1h.feather"
    frame = pd.read_feather(path).iloc[24_000:24_720]
    close = pd.Series(frame["close"].to_numpy(np.float64), index=pd.DatetimeIndex(frame["date"]))
    return {
        "fused": _result(close, -0.5),
        "buy_and_hold": _result(close, 1.0),
        "ta_only": _result(close, 0.0),
    }


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory, strategies: dict[str, Result]) -> Path:
    out_dir = tmp_path_factory.mktemp("report") / "backtest"
    paths = write_report(
        out_dir,
        title="BTC <October> & co",
        strategies=strategies,
        rejections={"MAX_POSITION": 7, "LOW_CONFIDENCE": 12, "VAR_LIMIT": 1},
        periods=PERIODS,
        notes=["fees 0.1% taker", "<script>alert(1)</script>"],
    )
    assert paths.html == out_dir / "report.html"
    return out_dir


def test_report_writes_html_and_four_valid_pngs(report: Path) -> None:
    # Arrange
    names = ("equity.png", "drawdown.png", "positions.png", "rejections.png")
    # Act
    images = [report / name for name in names]
    # Assert
    assert (report / "report.html").is_file()
    for path in images:
        assert path.read_bytes()[:8] == PNG_MAGIC, path.name
        pixels = matplotlib.image.imread(path)
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_html_embeds_the_pngs_and_is_self_contained(report: Path) -> None:
    # Arrange
    page = (report / "report.html").read_text(encoding="utf-8")
    # Act
    embedded = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    # Assert: the four charts, byte for byte, and no reference to another file
    assert len(embedded) == 4
    on_disk = {(report / name).read_bytes() for name in ("equity.png", "drawdown.png")}
    assert on_disk <= {base64.b64decode(data) for data in embedded}
    assert 'src="http' not in page and '.png"' not in page


def test_html_lists_every_strategy_metric_period_and_rejection(
    report: Path, strategies: dict[str, Result]
) -> None:
    # Act
    page = (report / "report.html").read_text(encoding="utf-8")
    # Assert
    for name in strategies:
        assert f"<th>{name}</th>" in page
    for metric in METRIC_NAMES:
        assert f"<td>{metric}</td>" in page
    sharpe = format_metric("sharpe", strategies["buy_and_hold"].metrics["sharpe"])
    assert f"<td>{sharpe}</td>" in page
    for use, span in PERIODS.items():
        assert f"<td>{use}</td><td>{span}</td>" in page
    assert "<td>LOW_CONFIDENCE</td><td>12</td>" in page
    assert "n/a" in page  # the flat strategy's Sharpe is undefined, and shown as such


def test_html_escapes_title_and_notes(report: Path) -> None:
    # Act
    page = (report / "report.html").read_text(encoding="utf-8")
    # Assert
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<title>BTC &lt;October&gt; &amp; co</title>" in page


def test_the_report_calls_a_losing_strategy_a_loss(
    report: Path, strategies: dict[str, Result]
) -> None:
    # Arrange: shorting a rising month loses, while holding gains
    fused = strategies["fused"].metrics["total_return"]
    held = strategies["buy_and_hold"].metrics["total_return"]
    assert fused < 0 < held
    # Act
    page = (report / "report.html").read_text(encoding="utf-8")
    sentence = re.search(r'<p class="verdict">(.*?)</p>', page)
    # Assert
    assert sentence is not None
    assert sentence.group(1).startswith(f"fused lost {abs(fused):.2%}")
    assert f"and underperformed buy_and_hold ({held:+.2%}" in sentence.group(1)
    assert "(2020-10-01 .. 2020-10-31)" in sentence.group(1)


@pytest.mark.parametrize(
    ("fused", "held", "expected"),
    [
        (-0.10, 0.20, "fused lost 10.00% (Sharpe -1.000) and underperformed buy_and_hold (+20.00%"),
        (0.05, 0.20, "fused gained 5.00% (Sharpe 0.500) but underperformed buy_and_hold (+20.00%"),
        (-0.05, -0.20, "fused lost 5.00% (Sharpe -0.500) but outperformed buy_and_hold (-20.00%"),
        (0.30, 0.20, "fused gained 30.00% (Sharpe 3.000) and outperformed buy_and_hold (+20.00%"),
        (0.0, 0.0, "fused was flat (Sharpe 0.000) and matched buy_and_hold (+0.00%"),
    ],
)
def test_verdict_follows_the_numbers(fused: float, held: float, expected: str) -> None:
    # Arrange: Sharpe = 10 x return, so each case carries its own figures
    metrics = {
        "fused": {"total_return": fused, "sharpe": 10 * fused, "dsr": 0.42},
        "buy_and_hold": {"total_return": held, "sharpe": 10 * held},
    }
    # Act
    sentence = verdict(metrics, primary="fused", benchmark="buy_and_hold", period="2023 H2")
    # Assert
    assert sentence.startswith(expected)
    assert sentence.endswith(
        "on the reported period (2023 H2); deflated Sharpe ratio 0.42: not significant at the 95% level."
    )


def test_verdict_calls_a_deflated_sharpe_above_95_percent_significant() -> None:
    # Act
    sentence = verdict(
        {"fused": {"total_return": 0.5, "sharpe": 2.0, "dsr": 0.97}},
        primary="fused",
        benchmark=None,
        period=None,
    )
    # Assert
    assert sentence == (
        "fused gained 50.00% (Sharpe 2.000) on the reported period; "
        "deflated Sharpe ratio 0.97: significant at the 95% level."
    )


def test_metrics_table_has_one_row_per_strategy_and_every_metric(
    strategies: dict[str, Result],
) -> None:
    # Act
    table = metrics_table(strategies)
    # Assert
    assert list(table.index) == list(strategies)
    assert tuple(table.columns) == METRIC_NAMES
    assert (
        table.at["buy_and_hold", "total_return"]
        == strategies["buy_and_hold"].metrics["total_return"]
    )
    assert math.isnan(table.to_numpy()[2, METRIC_NAMES.index("sharpe")])


def test_report_without_rejections_or_positions_still_draws_every_chart(
    tmp_path: Path, strategies: dict[str, Result]
) -> None:
    # Arrange: a fused strategy that never held anything, and no risk rejections at all
    flat = strategies["ta_only"]
    no_positions = Result(flat.equity, pd.DataFrame(index=flat.equity.index), flat.metrics)
    # Act
    paths = write_report(
        tmp_path,
        title="empty",
        strategies={"fused": no_positions},
        rejections={},
        periods={},
        notes=[],
        benchmark=None,
    )
    # Assert
    assert [path.name for path in paths.png] == [
        "equity.png",
        "drawdown.png",
        "positions.png",
        "rejections.png",
    ]
    assert all(path.read_bytes()[:8] == PNG_MAGIC for path in paths.png)
    page = paths.html.read_text(encoding="utf-8")
    assert "fused was flat (Sharpe n/a) on the reported period.</p>" in page
    assert "<p>none</p>" in page  # the rejections table says there were none


def test_an_unknown_benchmark_is_a_config_error_naming_it(
    tmp_path: Path, strategies: dict[str, Result]
) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match="'hodl'"):
        write_report(
            tmp_path,
            title="t",
            strategies=strategies,
            rejections={},
            periods=PERIODS,
            notes=[],
            benchmark="hodl",
        )
