"""Known-answer tests of the backtest metrics: hand-computed figures on hand-built series."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kurtosis, norm, skew

from sextant.backtest.metrics import (
    METRIC_NAMES,
    drawdown,
    expected_max_sharpe,
    performance_metrics,
    probabilistic_sharpe_ratio,
)
from sextant.errors import ConfigError, DataValidationError

EULER_GAMMA = 0.5772156649015329


def _daily(values: list[float], start: str = "2024-01-01") -> pd.Series:
    index = pd.date_range(start, periods=len(values), freq="1D", tz="UTC")
    return pd.Series(values, index=index, dtype=np.float64)


def _metrics(equity: pd.Series, **options: object) -> dict[str, float]:
    arguments: dict[str, object] = {"trades": None, "positions": None, "bars_per_year": 4.0}
    arguments.update(options)
    return performance_metrics(equity, **arguments)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def btc_equity(shared_data: Path) -> pd.Series:
    """Buy-and-hold of one BTC over 2,000 real hourly bars of 2021 (a volatile, trending stretch)."""
    path = shared_data / "roshan7869_algotrading" / "binance" / "BTC_USDT-1h.feather"
    frame = pd.read_feather(path).iloc[30_000:32_000]
    return pd.Series(frame["close"].to_numpy(np.float64), index=pd.DatetimeIndex(frame["date"]))


# returns +10%, -10%, +10%, +10%: mean 0.05, std (ddof=1) 0.1, downside deviation 0.05
TINY = [100.0, 110.0, 99.0, 108.9, 119.79]


def test_sharpe_volatility_and_returns_of_a_tiny_series() -> None:
    # Arrange: 4 bars per year, so the 4 returns span exactly one year
    equity = _daily(TINY)
    # Act
    result = _metrics(equity)
    # Assert: per-bar Sharpe 0.05 / 0.1 = 0.5, annualized x sqrt(4)
    assert result["sharpe"] == pytest.approx(1.0)
    assert result["annualized_volatility"] == pytest.approx(0.2)
    assert result["total_return"] == pytest.approx(0.1979)
    assert result["annualized_return"] == pytest.approx(0.1979)
    assert result["n_bars"] == 5


def test_sortino_uses_the_downside_deviation_over_all_returns() -> None:
    # Arrange: downside deviation sqrt((0 + 0.01 + 0 + 0) / 4) = 0.05
    equity = _daily(TINY)
    # Act
    result = _metrics(equity)
    # Assert: 0.05 / 0.05 * sqrt(4)
    assert result["sortino"] == pytest.approx(2.0)


def test_calmar_is_cagr_over_the_max_drawdown() -> None:
    # Arrange: two years of the same path (8 bars per year would make it half a year)
    equity = _daily(TINY)
    # Act
    result = _metrics(equity, bars_per_year=2.0)
    # Assert: CAGR over 2 years = sqrt(1.1979) - 1; drawdown 110 -> 99 = -10%
    assert result["max_drawdown"] == pytest.approx(-0.1)
    assert result["calmar"] == pytest.approx((math.sqrt(1.1979) - 1.0) / 0.1)


def test_max_drawdown_and_its_duration_on_a_hand_built_path() -> None:
    # Arrange: spells under water 120 -> (90, 60) -> 130 [3 bars], 130 -> 125 -> 140 [2 bars],
    # 140 -> 100 to the end [1 bar]; a 6-day gap makes the second spell the longest in days
    days = [0, 1, 2, 3, 4, 10, 20, 21]
    index = pd.DatetimeIndex(
        [pd.Timestamp("2024-03-01", tz="UTC") + pd.Timedelta(days=d) for d in days]
    )
    equity = pd.Series([100.0, 120.0, 90.0, 60.0, 130.0, 125.0, 140.0, 100.0], index=index)
    # Act
    result = _metrics(equity)
    # Assert: deepest fall 60 / 120 - 1; bars and days are each the longest of the spells
    assert result["max_drawdown"] == pytest.approx(-0.5)
    assert result["max_drawdown_duration_bars"] == 3
    assert result["max_drawdown_duration_days"] == pytest.approx(16.0)


def test_an_unrecovered_drawdown_lasts_until_the_last_bar() -> None:
    # Arrange
    equity = _daily([100.0, 90.0, 80.0, 95.0])
    # Act
    result = _metrics(equity)
    # Assert
    assert result["max_drawdown"] == pytest.approx(-0.2)
    assert result["max_drawdown_duration_bars"] == 3
    assert result["max_drawdown_duration_days"] == pytest.approx(3.0)


def test_drawdown_series_is_equity_over_its_running_peak() -> None:
    # Arrange
    equity = _daily([100.0, 120.0, 90.0, 130.0])
    # Act
    under_water = drawdown(equity)
    # Assert
    np.testing.assert_allclose(under_water.to_numpy(), [0.0, 0.0, -0.25, 0.0])
    assert under_water.index.equals(equity.index)


def test_a_rising_curve_has_no_drawdown_and_an_infinite_calmar() -> None:
    # Arrange
    equity = _daily([100.0, 101.0, 103.0, 104.0])
    # Act
    result = _metrics(equity)
    # Assert
    assert result["max_drawdown"] == 0.0
    assert result["max_drawdown_duration_bars"] == 0
    assert result["calmar"] == math.inf
    assert result["sortino"] == math.inf


def test_flat_equity_gives_nan_ratios_not_made_up_numbers() -> None:
    # Arrange
    equity = _daily([100.0] * 6)
    # Act
    result = _metrics(equity)
    # Assert
    assert result["total_return"] == 0.0
    assert result["annualized_volatility"] == 0.0
    assert result["max_drawdown"] == 0.0
    for name in ("sharpe", "sortino", "calmar", "psr", "dsr", "sharpe_ci_low", "sharpe_ci_high"):
        assert math.isnan(result[name]), name


def test_a_huge_gain_over_few_bars_annualizes_to_infinity_without_raising() -> None:
    # Arrange: x4 in two hourly bars compounds past float range over a year
    equity = _daily([1.0, 2.0, 4.0])
    # Act
    result = _metrics(equity, bars_per_year=8760.0)
    # Assert
    assert result["annualized_return"] == math.inf
    assert result["total_return"] == pytest.approx(3.0)


def test_every_metric_is_reported_in_order() -> None:
    # Arrange
    equity = _daily(TINY)
    # Act
    result = _metrics(equity)
    # Assert
    assert tuple(result) == METRIC_NAMES
    assert all(isinstance(value, float) for value in result.values())


# --- trades -----------------------------------------------------------------------------


def test_win_rate_and_profit_factor_of_hand_built_trades() -> None:
    # Arrange: a zero-pnl trade is not a win
    trades = pd.DataFrame({"pnl": [10.0, -5.0, 20.0, -15.0, 0.0]})
    # Act
    result = _metrics(_daily(TINY), trades=trades)
    # Assert
    assert result["n_trades"] == 5
    assert result["win_rate"] == pytest.approx(0.4)
    assert result["profit_factor"] == pytest.approx(30.0 / 20.0)


def test_only_winning_trades_give_an_infinite_profit_factor() -> None:
    # Arrange
    trades = pd.DataFrame({"pnl": [1.0, 2.5]})
    # Act
    result = _metrics(_daily(TINY), trades=trades)
    # Assert
    assert result["win_rate"] == 1.0
    assert result["profit_factor"] == math.inf


@pytest.mark.parametrize(
    ("pnl", "n_trades"), [([], 0.0), ([0.0, 0.0], 2.0)], ids=["no-trades", "all-flat"]
)
def test_no_winning_or_losing_trades_give_nan_profit_factor(
    pnl: list[float], n_trades: float
) -> None:
    # Arrange
    trades = pd.DataFrame({"pnl": pd.Series(pnl, dtype=np.float64)})
    # Act
    result = _metrics(_daily(TINY), trades=trades)
    # Assert
    assert result["n_trades"] == n_trades
    assert math.isnan(result["profit_factor"])
    assert math.isnan(result["win_rate"]) is (n_trades == 0)


def test_trades_without_pnl_are_refused_naming_the_column() -> None:
    # Arrange
    trades = pd.DataFrame({"profit": [1.0]})
    # Act / Assert
    with pytest.raises(DataValidationError, match="pnl"):
        _metrics(_daily(TINY), trades=trades)


# --- positions --------------------------------------------------------------------------


def test_turnover_and_exposure_of_notional_positions() -> None:
    # Arrange: |changes| BTC 0+500+0+1000+500, ETH 0+0+200+0+200 = 2,400 over mean equity 1,000,
    # in 4 returns = half a year at 8 bars per year; 3 of 5 bars hold something
    equity = _daily([1000.0] * 5)
    positions = pd.DataFrame(
        {"BTC": [0.0, 500.0, 500.0, -500.0, 0.0], "ETH": [0.0, 0.0, 200.0, 200.0, 0.0]},
        index=equity.index,
    )
    # Act
    result = _metrics(equity, positions=positions, bars_per_year=8.0)
    # Assert
    assert result["turnover"] == pytest.approx(2.4 / 0.5)
    assert result["exposure"] == pytest.approx(0.6)


def test_turnover_of_fractional_positions_counts_the_opening_trade() -> None:
    # Arrange: weights 0.5 from flat, +0.5, -1.0 -> 2.0 traded over one year
    equity = _daily([100.0, 101.0, 102.0, 101.0, 103.0])
    weights = pd.Series([0.5, 0.5, 1.0, 0.0, 0.0], index=equity.index)
    # Act
    result = _metrics(equity, positions=weights, position_unit="fraction")
    # Assert
    assert result["turnover"] == pytest.approx(2.0)
    assert result["exposure"] == pytest.approx(0.6)


def test_positions_on_another_index_are_refused() -> None:
    # Arrange
    equity = _daily(TINY)
    positions = pd.Series(1.0, index=equity.index[:-1])
    # Act / Assert
    with pytest.raises(DataValidationError, match="positions"):
        _metrics(equity, positions=positions)


def test_a_nan_position_is_refused_naming_symbol_and_timestamp() -> None:
    # Arrange
    equity = _daily(TINY)
    positions = pd.DataFrame({"SOL": [0.0, 1.0, math.nan, 1.0, 0.0]}, index=equity.index)
    # Act / Assert
    with pytest.raises(DataValidationError, match=r"2024-01-03.*field=SOL"):
        _metrics(equity, positions=positions)


# --- probabilistic and deflated Sharpe ------------------------------------------------------

SMALL = [100.0, 102.0, 101.0, 104.0, 103.5, 107.0, 106.0, 109.0, 108.0, 112.0, 111.0]


def _psr_by_hand(returns: np.ndarray, benchmark: float) -> float:
    """Bailey & López de Prado (2012), eq. for PSR, written out with scipy."""
    sr = returns.mean() / returns.std(ddof=1)
    g3 = skew(returns, bias=True)
    g4 = kurtosis(returns, fisher=False, bias=True)
    n = len(returns)
    return float(
        norm.cdf(
            (sr - benchmark) * math.sqrt(n - 1) / math.sqrt(1 - g3 * sr + (g4 - 1) / 4 * sr**2)
        )
    )


def _expected_max_by_hand(n_trials: int, variance: float) -> float:
    """Bailey & López de Prado (2014), expected maximum Sharpe of N trials of true Sharpe 0."""
    return math.sqrt(variance) * float(
        (1 - EULER_GAMMA) * norm.ppf(1 - 1 / n_trials)
        + EULER_GAMMA * norm.ppf(1 - 1 / (n_trials * math.e))
    )


def test_psr_of_a_small_series_matches_the_papers_formula() -> None:
    # Arrange
    equity = _daily(SMALL)
    returns = np.diff(SMALL) / np.array(SMALL[:-1])
    # Act
    result = _metrics(equity, bars_per_year=365.0)
    # Assert
    assert result["psr"] == pytest.approx(_psr_by_hand(returns, 0.0), rel=1e-12)
    assert result["dsr"] == result["psr"]  # one trial: SR* = 0
    assert result["dsr_benchmark_sharpe"] == 0.0


def test_dsr_uses_the_variance_of_the_trial_sharpes() -> None:
    # Arrange: 10 configurations tried, 4 of them recorded (annualized Sharpes)
    equity = _daily(SMALL)
    returns = np.diff(SMALL) / np.array(SMALL[:-1])
    trial_sharpes = [0.5, 1.0, 1.5, 2.0]
    variance = float(np.var(trial_sharpes, ddof=1)) / 365.0
    benchmark = _expected_max_by_hand(10, variance)
    # Act
    result = _metrics(equity, bars_per_year=365.0, n_trials=10, trial_sharpes=trial_sharpes)
    # Assert
    assert result["dsr_benchmark_sharpe"] == pytest.approx(benchmark * math.sqrt(365.0), rel=1e-12)
    assert result["dsr"] == pytest.approx(_psr_by_hand(returns, benchmark), rel=1e-12)
    assert result["dsr"] < result["psr"]


def test_dsr_without_trial_sharpes_assumes_this_runs_sampling_variance() -> None:
    # Arrange
    equity = _daily(SMALL)
    returns = np.diff(SMALL) / np.array(SMALL[:-1])
    sr = returns.mean() / returns.std(ddof=1)
    g3 = skew(returns, bias=True)
    g4 = kurtosis(returns, fisher=False, bias=True)
    variance = (1 - g3 * sr + (g4 - 1) / 4 * sr**2) / (len(returns) - 1)
    # Act
    result = _metrics(equity, bars_per_year=365.0, n_trials=50)
    # Assert
    assert result["dsr"] == pytest.approx(
        _psr_by_hand(returns, _expected_max_by_hand(50, variance)), rel=1e-12
    )


def test_the_deflated_sharpe_papers_worked_example() -> None:
    # Arrange: Bailey & López de Prado (2014): 100 trials whose annualized Sharpes vary by 0.5,
    # best annualized Sharpe 2.5 over 1,250 daily returns, skewness -3, kurtosis 10
    per_day = 250
    # Act
    benchmark = expected_max_sharpe(100, 0.5 / per_day)
    dsr = probabilistic_sharpe_ratio(2.5 / math.sqrt(per_day), 1250, -3.0, 10.0, benchmark)
    # Assert: the paper reports SR* = 0.1132 and DSR = 0.9004
    assert benchmark == pytest.approx(0.1132, abs=5e-5)
    assert dsr == pytest.approx(0.9004, abs=5e-5)


def test_psr_and_dsr_on_real_bitcoin_returns(btc_equity: pd.Series) -> None:
    # Arrange
    values = btc_equity.to_numpy()
    returns = values[1:] / values[:-1] - 1.0
    # Act
    result = performance_metrics(
        btc_equity, trades=None, positions=None, bars_per_year=8760.0, n_trials=20
    )
    # Assert
    assert result["psr"] == pytest.approx(_psr_by_hand(returns, 0.0), rel=1e-10)
    assert 0.0 < result["dsr"] < result["psr"] < 1.0
    assert result["sharpe"] == pytest.approx(
        returns.mean() / returns.std(ddof=1) * math.sqrt(8760.0), rel=1e-12
    )


def test_more_trial_sharpes_than_trials_is_a_config_error() -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match="n_trials=1"):
        _metrics(_daily(SMALL), trial_sharpes=[0.1, 0.2, 0.3])


# --- bootstrap ----------------------------------------------------------------------------


def test_bootstrap_interval_is_deterministic_and_contains_the_estimate(
    btc_equity: pd.Series,
) -> None:
    # Arrange
    options = {"trades": None, "positions": None, "bars_per_year": 8760.0}
    # Act
    first = performance_metrics(btc_equity, **options, seed=11)  # type: ignore[arg-type]
    again = performance_metrics(btc_equity, **options, seed=11)  # type: ignore[arg-type]
    other = performance_metrics(btc_equity, **options, seed=12)  # type: ignore[arg-type]
    # Assert
    assert (first["sharpe_ci_low"], first["sharpe_ci_high"]) == (
        again["sharpe_ci_low"],
        again["sharpe_ci_high"],
    )
    assert first["sharpe_ci_low"] != other["sharpe_ci_low"]
    assert first["sharpe_ci_low"] < first["sharpe"] < first["sharpe_ci_high"]


def test_bootstrap_interval_width_matches_the_sharpe_standard_error_on_iid_returns() -> None:
    # Arrange: iid normal returns, per-bar Sharpe 0.05 over 4,000 bars; the standard error of
    # the Sharpe is sqrt((1 + SR^2 / 2) / n), so a 95% interval is about 2 * 1.96 of it wide
    rng = np.random.default_rng(3)
    returns = rng.normal(0.0005, 0.01, size=4_000)
    equity = pd.Series(
        100.0 * np.cumprod(np.concatenate([[1.0], 1.0 + returns])),
        index=pd.date_range("2020-01-01", periods=4_001, freq="1h", tz="UTC"),
    )
    sr = returns.mean() / returns.std(ddof=1)
    expected_width = 2 * 1.96 * math.sqrt((1 + sr**2 / 2) / len(returns)) * math.sqrt(8760.0)
    # Act
    result = performance_metrics(equity, trades=None, positions=None, bars_per_year=8760.0)
    # Assert
    width = result["sharpe_ci_high"] - result["sharpe_ci_low"]
    assert width == pytest.approx(expected_width, rel=0.2)


def test_bootstrap_blocks_keep_serial_dependence_in_the_interval() -> None:
    # Arrange: AR(1) returns with phi = 0.5 inflate the Sharpe's standard error by
    # sqrt((1 + phi) / (1 - phi)) = 1.73 over the iid figure; an iid bootstrap would miss it
    rng = np.random.default_rng(5)
    noise = rng.normal(0.0, 0.01, size=4_000)
    returns = np.empty_like(noise)
    returns[0] = noise[0]
    for t in range(1, len(noise)):
        returns[t] = 0.5 * returns[t - 1] + noise[t]
    returns += 0.0005
    equity = pd.Series(
        100.0 * np.cumprod(np.concatenate([[1.0], 1.0 + returns])),
        index=pd.date_range("2020-01-01", periods=4_001, freq="1h", tz="UTC"),
    )
    iid_width = 2 * 1.96 * math.sqrt(1 / len(returns)) * math.sqrt(8760.0)
    # Act
    result = performance_metrics(equity, trades=None, positions=None, bars_per_year=8760.0)
    # Assert
    width = result["sharpe_ci_high"] - result["sharpe_ci_low"]
    assert width > 1.4 * iid_width


def test_bootstrap_can_be_switched_off() -> None:
    # Act
    result = _metrics(_daily(SMALL), bootstrap=0)
    # Assert
    assert math.isnan(result["sharpe_ci_low"])
    assert math.isnan(result["sharpe_ci_high"])
    assert not math.isnan(result["sharpe"])


# --- input checks -------------------------------------------------------------------------


def test_a_naive_index_is_refused() -> None:
    # Arrange
    equity = pd.Series(TINY, index=pd.date_range("2024-01-01", periods=5, freq="1D"))
    # Act / Assert
    with pytest.raises(DataValidationError, match="UTC"):
        _metrics(equity)


def test_non_positive_equity_is_refused_naming_the_timestamp() -> None:
    # Arrange
    equity = _daily([100.0, 50.0, 0.0, 10.0])
    # Act / Assert
    with pytest.raises(DataValidationError, match="2024-01-03"):
        _metrics(equity)


def test_a_single_bar_is_refused() -> None:
    # Act / Assert
    with pytest.raises(DataValidationError, match="at least 2 bars"):
        _metrics(_daily([100.0]))


@pytest.mark.parametrize(
    ("option", "value"),
    [("bars_per_year", 0.0), ("n_trials", 0), ("bootstrap", -1), ("position_unit", "shares")],
)
def test_bad_options_are_config_errors_naming_the_option(option: str, value: object) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=option):
        _metrics(_daily(TINY), **{option: value})
