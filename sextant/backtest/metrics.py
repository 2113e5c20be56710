"""Performance metrics of a backtest: pure functions of an equity curve, its trades and positions.

Definitions (``r_t = E_t / E_{t-1} - 1`` are the per-bar simple returns of the equity ``E_0..E_n``,
``n`` returns; ``B`` = bars per year; ``years = n / B``):

- ``total_return`` = ``E_n / E_0 - 1``; ``annualized_return`` (CAGR) = ``(E_n / E_0) ** (1 / years) - 1``.
- ``annualized_volatility`` = ``std(r, ddof=1) * sqrt(B)``.
- ``sharpe`` = ``mean(r) / std(r, ddof=1) * sqrt(B)`` (risk-free rate 0).
- ``sortino`` = ``mean(r) / DD * sqrt(B)`` with the downside deviation
  ``DD = sqrt(mean(min(r_t, 0) ** 2))`` over all ``n`` returns (target 0, Sortino & Price).
- ``max_drawdown`` = ``min_t(E_t / max_{s<=t} E_s - 1)`` (a fraction <= 0; 0 if never under water).
- ``max_drawdown_duration_bars`` / ``_days``: the longest spell under water, from the peak bar to the
  first bar back at or above that peak, or to the last bar when it never recovers.
- ``calmar`` = ``annualized_return / |max_drawdown|``.
- ``win_rate`` = share of trades with ``pnl > 0``; ``profit_factor`` = gross profit / gross loss.
- ``turnover``: one-way, annualized: ``sum_t sum_symbols |p_t - p_{t-1}|`` (flat before the first
  bar, so the opening trade counts) per year; for notional positions divided by the mean equity,
  for fractional positions (weights) taken as is. ``exposure`` = share of bars with any position.
- ``psr``: probabilistic Sharpe ratio (Bailey & López de Prado 2012) against ``SR* = 0``:
  ``Phi((SR - SR*) * sqrt(n - 1) / sqrt(1 - g3 * SR + (g4 - 1) / 4 * SR ** 2))`` with the per-bar
  ``SR = mean / std(ddof=1)`` and the population skewness ``g3`` and (non-excess) kurtosis ``g4``.
- ``dsr``: deflated Sharpe ratio (Bailey & López de Prado 2014): the PSR against
  ``SR* = sqrt(V) * ((1 - gamma) * Phi^-1(1 - 1/N) + gamma * Phi^-1(1 - 1/(N e)))``, the expected
  maximum per-bar Sharpe of ``N = n_trials`` trials (``SR* = 0`` when ``N = 1``). ``V`` is the
  sample variance (ddof=1) of ``trial_sharpes`` (annualized, converted to per bar) when given;
  otherwise every trial is assumed to have a true Sharpe of 0 and this run's sampling variance,
  ``V = (1 - g3 * SR + (g4 - 1) / 4 * SR ** 2) / (n - 1)``. ``dsr_benchmark_sharpe`` is that ``SR*``,
  annualized.
- ``sharpe_ci_low`` / ``sharpe_ci_high``: 95% percentile interval of the annualized Sharpe over
  ``bootstrap`` stationary-bootstrap resamples (Politis & Romano 1994) of the returns, mean block
  length ``ceil(sqrt(n))`` so that serial dependence survives resampling; quantiles are order
  statistics (no interpolation). Resamples with no variance and no mean are left out; a resample
  variance below ``1e-9 * mean(r ** 2)`` counts as 0 (rounding of the prefix sums it is read from).

Degenerate cases, one rule for every ratio: ``x / 0`` is ``+-inf`` when ``x != 0`` and NaN when
``x == 0``. So flat equity gives NaN Sharpe, Sortino and Calmar; returns without a loss give an
infinite Sortino; trades without a loss give an infinite profit factor; no trades give NaN win
rate and profit factor. A standard deviation below ``1e-12 * max|r|`` is float noise and counts as
0. PSR, DSR and the bootstrap interval are NaN when the returns have no variance.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from statistics import NormalDist
from typing import Literal

import numpy as np
import pandas as pd
from numpy.typing import ArrayLike, NDArray

from sextant.errors import ConfigError, DataValidationError

__all__ = [
    "METRIC_DESCRIPTIONS",
    "METRIC_NAMES",
    "drawdown",
    "expected_max_sharpe",
    "performance_metrics",
    "probabilistic_sharpe_ratio",
]

FloatArray = NDArray[np.float64]

METRIC_DESCRIPTIONS: Mapping[str, str] = {
    "total_return": "final equity / initial equity - 1",
    "annualized_return": "compound annual growth rate (CAGR)",
    "annualized_volatility": "standard deviation of per-bar returns, annualized",
    "sharpe": "annualized Sharpe ratio (risk-free rate 0)",
    "sortino": "annualized mean return / downside deviation (target 0)",
    "calmar": "annualized return / |max drawdown|",
    "max_drawdown": "deepest fall from a running peak (fraction, <= 0)",
    "max_drawdown_duration_bars": "longest spell under water, peak to recovery, in bars",
    "max_drawdown_duration_days": "longest spell under water, peak to recovery, in days",
    "n_trades": "number of closed trades",
    "win_rate": "share of trades with pnl > 0",
    "profit_factor": "gross profit / gross loss of trades",
    "turnover": "one-way traded amount per year, in multiples of mean equity",
    "exposure": "share of bars holding any position",
    "psr": "probabilistic Sharpe ratio against SR* = 0",
    "dsr": "deflated Sharpe ratio (PSR against the expected max Sharpe of the trials)",
    "dsr_benchmark_sharpe": "SR* of the deflated Sharpe ratio, annualized",
    "sharpe_ci_low": "bootstrap 95% interval of the Sharpe ratio, low end",
    "sharpe_ci_high": "bootstrap 95% interval of the Sharpe ratio, high end",
    "n_bars": "number of equity bars",
}
METRIC_NAMES: tuple[str, ...] = tuple(METRIC_DESCRIPTIONS)

EULER_GAMMA = 0.5772156649015329
_NORMAL = NormalDist()
_NOISE = 1e-12  # relative size under which a standard deviation is float noise


def _ratio(numerator: float, denominator: float) -> float:
    """``numerator / denominator`` with the module's rule: x/0 is +-inf, 0/0 is NaN."""
    if denominator != 0.0:
        return numerator / denominator
    if numerator == 0.0 or math.isnan(numerator):
        return math.nan
    return math.copysign(math.inf, numerator)


def _positive_number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"performance_metrics: {name} must be a finite number > 0, got {value!r}")
    number = float(value)
    if not (math.isfinite(number) and number > 0.0):
        raise ConfigError(f"performance_metrics: {name} must be a finite number > 0, got {value!r}")
    return number


def _integer(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) < minimum:
        raise ConfigError(
            f"performance_metrics: {name} must be an integer >= {minimum}, got {value!r}"
        )
    return int(value)


def _checked_equity(equity: pd.Series) -> FloatArray:
    """The equity values, after checking the index is a sorted UTC grid and every value is > 0."""
    if not isinstance(equity, pd.Series):
        raise DataValidationError(
            f"expected a pandas Series, got {type(equity).__name__}", origin="equity"
        )
    index = equity.index
    if not isinstance(index, pd.DatetimeIndex) or index.tz is None or str(index.tz) != "UTC":
        raise DataValidationError(
            f"index must be tz-aware UTC timestamps, got {index.dtype}",
            origin="equity",
            field="index",
        )
    if len(equity) < 2:
        raise DataValidationError(
            f"needs at least 2 bars to measure returns, got {len(equity)}", origin="equity"
        )
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataValidationError(
            "index must be strictly increasing (sorted, no duplicate timestamps)",
            origin="equity",
            field="index",
        )
    values = equity.to_numpy(dtype=np.float64, copy=True)
    bad = ~(np.isfinite(values) & (values > 0.0))
    if bad.any():
        first = int(np.argmax(bad))
        raise DataValidationError(
            f"equity must be finite and > 0, got {values[first]!r} at {index[first].isoformat()}",
            origin="equity",
        )
    return values


def drawdown(equity: pd.Series) -> pd.Series:
    """Per-bar drawdown ``E_t / running max - 1`` (<= 0), on the equity's index."""
    values = _checked_equity(equity)
    return pd.Series(
        values / np.maximum.accumulate(values) - 1.0, index=equity.index, name="drawdown"
    )


def _drawdown_durations(values: FloatArray, index: pd.DatetimeIndex) -> tuple[float, float]:
    """Longest spell under water in bars and in days, peak to recovery (or to the last bar)."""
    positions = np.arange(len(values))
    underwater = values < np.maximum.accumulate(values)
    if not underwater.any():
        return 0.0, 0.0
    peak = np.maximum.accumulate(np.where(underwater, 0, positions))
    # a spell ends on the bar after its last underwater bar, or on the last bar of the series
    end = np.minimum(positions + 1, len(values) - 1)
    bars = (end - peak)[underwater]
    days = ((index[end] - index[peak]) / pd.Timedelta(days=1)).to_numpy()[underwater]
    return float(bars.max()), float(days.max())


def _moments(returns: FloatArray) -> tuple[float, float, float, float]:
    """Mean, sample std (ddof=1, 0 when float noise), population skewness and kurtosis."""
    mean = float(returns.mean())
    if len(returns) < 2:
        return mean, math.nan, math.nan, math.nan
    std = float(returns.std(ddof=1))
    if std <= _NOISE * float(np.abs(returns).max()):
        return mean, 0.0, math.nan, math.nan
    deviations = returns - mean
    m2 = float(np.mean(deviations**2))
    skew = float(np.mean(deviations**3)) / m2**1.5
    kurtosis = float(np.mean(deviations**4)) / m2**2
    return mean, std, skew, kurtosis


def probabilistic_sharpe_ratio(
    sharpe: float, n: int, skew: float, kurtosis: float, benchmark: float = 0.0
) -> float:
    """P(true Sharpe > benchmark) from a per-bar Sharpe over ``n`` returns (Bailey & López de Prado 2012)."""
    variance = 1.0 - skew * sharpe + (kurtosis - 1.0) / 4.0 * sharpe**2
    if n < 2 or not (math.isfinite(variance) and variance > 0.0):
        return math.nan
    return _NORMAL.cdf((sharpe - benchmark) * math.sqrt(n - 1) / math.sqrt(variance))


def expected_max_sharpe(n_trials: int, variance: float) -> float:
    """Expected maximum of ``n_trials`` Sharpe ratios of true value 0 and this variance (DSR's SR*)."""
    if n_trials <= 1:
        return 0.0
    return math.sqrt(variance) * (
        (1.0 - EULER_GAMMA) * _NORMAL.inv_cdf(1.0 - 1.0 / n_trials)
        + EULER_GAMMA * _NORMAL.inv_cdf(1.0 - 1.0 / (n_trials * math.e))
    )


def _trial_variance(trial_sharpes: ArrayLike, n_trials: int, bars_per_year: float) -> float:
    """Sample variance of the trials' annualized Sharpes, converted to per-bar units."""
    trials = np.asarray(trial_sharpes, dtype=np.float64).ravel()
    if len(trials) < 2 or not np.isfinite(trials).all():
        raise ConfigError(
            f"performance_metrics: trial_sharpes needs at least 2 finite values, got {trials.tolist()!r}"
        )
    if n_trials < len(trials):
        raise ConfigError(
            f"performance_metrics: n_trials={n_trials} is fewer than the {len(trials)} trial_sharpes given"
        )
    return float(trials.var(ddof=1)) / bars_per_year


def _bootstrap_sharpe_ci(
    returns: FloatArray, bars_per_year: float, resamples: int, seed: int
) -> tuple[float, float]:
    """95% stationary-bootstrap percentile interval of the annualized Sharpe.

    A resample is a run of blocks with uniform starts (wrapping around the end) and geometric
    lengths, cut to ``n`` returns. Only its sum and sum of squares matter, so each block is read
    from circular prefix sums: O(resamples * blocks) instead of O(resamples * n).
    """
    n = len(returns)
    rng = np.random.default_rng(seed)
    new_block_probability = 1.0 / math.ceil(math.sqrt(n))
    blocks = int(1.5 * n * new_block_probability) + 32
    lengths = rng.geometric(new_block_probability, size=(resamples, blocks))
    while (short := lengths.sum(axis=1) < n).any():  # rare: some resamples need more blocks
        more = rng.geometric(new_block_probability, size=(resamples, blocks))
        lengths = np.hstack([lengths, np.where(short[:, None], more, 0)])
    ends = np.minimum(np.cumsum(lengths, axis=1), n)
    lengths = np.diff(ends, axis=1, prepend=0)
    starts = rng.integers(0, n, size=lengths.shape)
    twice = np.concatenate([returns, returns])
    sums = np.concatenate([[0.0], np.cumsum(twice)])
    squares = np.concatenate([[0.0], np.cumsum(twice**2)])
    total = (sums[starts + lengths] - sums[starts]).sum(axis=1)
    total_squares = (squares[starts + lengths] - squares[starts]).sum(axis=1)
    mean = total / n
    variance = (total_squares - total * mean) / (n - 1)
    # prefix-sum differences round at ~1e-13 of the mean squared return: below that, no variance
    variance[variance <= 1e-9 * float(np.mean(returns**2))] = 0.0
    sharpes = np.array([_ratio(m, math.sqrt(v)) for m, v in zip(mean, variance, strict=True)])
    kept = sharpes[~np.isnan(sharpes)] * math.sqrt(bars_per_year)
    if len(kept) == 0:
        return math.nan, math.nan
    low, high = np.quantile(kept, [0.025, 0.975], method="inverted_cdf")
    return float(low), float(high)


def _trade_metrics(trades: pd.DataFrame | None) -> dict[str, float]:
    if trades is None:
        return {"n_trades": math.nan, "win_rate": math.nan, "profit_factor": math.nan}
    if "pnl" not in trades.columns:
        raise DataValidationError(
            f"trades need a 'pnl' column, got {list(trades.columns)}", origin="trades", field="pnl"
        )
    pnl = trades["pnl"].to_numpy(dtype=np.float64)
    if not np.isfinite(pnl).all():
        row = int(np.argmax(~np.isfinite(pnl)))
        raise DataValidationError(
            f"trade pnl must be finite, got {pnl[row]!r} in row {trades.index[row]!r}",
            origin="trades",
            field="pnl",
        )
    if len(pnl) == 0:
        return {"n_trades": 0.0, "win_rate": math.nan, "profit_factor": math.nan}
    gross_profit = float(pnl[pnl > 0].sum())
    gross_loss = float(-pnl[pnl < 0].sum())
    return {
        "n_trades": float(len(pnl)),
        "win_rate": float(np.mean(pnl > 0)),
        "profit_factor": _ratio(gross_profit, gross_loss),
    }


def _position_metrics(
    positions: pd.Series | pd.DataFrame | None,
    equity: pd.Series,
    years: float,
    unit: Literal["notional", "fraction"],
) -> dict[str, float]:
    if positions is None:
        return {"turnover": math.nan, "exposure": math.nan}
    if not positions.index.equals(equity.index):
        raise DataValidationError(
            f"positions must be on the equity's index ({len(equity)} bars from "
            f"{equity.index[0].isoformat()}), got {len(positions)} rows",
            origin="positions",
            field="index",
        )
    frame = positions.to_frame() if isinstance(positions, pd.Series) else positions
    held = frame.to_numpy(dtype=np.float64).reshape(len(frame), -1)
    if not np.isfinite(held).all():
        row, column = np.argwhere(~np.isfinite(held))[0]
        raise DataValidationError(
            f"position must be finite, got {held[row, column]!r} at {frame.index[row].isoformat()}",
            origin="positions",
            field=str(frame.columns[column]),
        )
    traded = float(np.abs(np.diff(held, axis=0, prepend=0.0)).sum())
    scale = float(equity.mean()) if unit == "notional" else 1.0
    return {
        "turnover": traded / scale / years,
        "exposure": float(np.mean(np.any(held != 0.0, axis=1))),
    }


def performance_metrics(
    equity: pd.Series,
    *,
    trades: pd.DataFrame | None,
    positions: pd.Series | pd.DataFrame | None,
    bars_per_year: float,
    position_unit: Literal["notional", "fraction"] = "notional",
    n_trials: int = 1,
    trial_sharpes: ArrayLike | None = None,
    bootstrap: int = 1000,
    seed: int = 7,
) -> dict[str, float]:
    """Every metric of ``METRIC_NAMES`` for one equity curve (definitions in the module docstring)."""
    periods = _positive_number("bars_per_year", bars_per_year)
    trials = _integer("n_trials", n_trials, 1)
    resamples = _integer("bootstrap", bootstrap, 0)
    seed = _integer("seed", seed, 0)
    if position_unit not in ("notional", "fraction"):
        raise ConfigError(
            f"performance_metrics: position_unit must be 'notional' or 'fraction', got {position_unit!r}"
        )
    values = _checked_equity(equity)
    returns = values[1:] / values[:-1] - 1.0
    n = len(returns)
    years = n / periods
    growth = float(values[-1] / values[0])
    mean, std, skew, kurtosis = _moments(returns)
    downside = math.sqrt(float(np.mean(np.minimum(returns, 0.0) ** 2)))
    try:
        annualized_return = growth ** (1.0 / years) - 1.0
    except OverflowError:  # a large gain over a few bars compounds past float range
        annualized_return = math.inf
    max_drawdown = float((values / np.maximum.accumulate(values) - 1.0).min())
    duration_bars, duration_days = _drawdown_durations(values, pd.DatetimeIndex(equity.index))

    sharpe_bar = _ratio(mean, std)
    if std > 0.0:
        variance = (
            _trial_variance(trial_sharpes, trials, periods)
            if trial_sharpes is not None
            else (1.0 - skew * sharpe_bar + (kurtosis - 1.0) / 4.0 * sharpe_bar**2) / (n - 1)
        )
        benchmark = expected_max_sharpe(trials, variance)
        psr = probabilistic_sharpe_ratio(sharpe_bar, n, skew, kurtosis)
        dsr = probabilistic_sharpe_ratio(sharpe_bar, n, skew, kurtosis, benchmark)
        ci_low, ci_high = (
            _bootstrap_sharpe_ci(returns, periods, resamples, seed)
            if resamples
            else (math.nan, math.nan)
        )
    else:
        benchmark = psr = dsr = ci_low = ci_high = math.nan

    metrics = {
        "total_return": growth - 1.0,
        "annualized_return": annualized_return,
        "annualized_volatility": std * math.sqrt(periods),
        "sharpe": sharpe_bar * math.sqrt(periods),
        "sortino": _ratio(mean, downside) * math.sqrt(periods),
        "calmar": _ratio(annualized_return, abs(max_drawdown)),
        "max_drawdown": max_drawdown,
        "max_drawdown_duration_bars": duration_bars,
        "max_drawdown_duration_days": duration_days,
        **_trade_metrics(trades),
        **_position_metrics(positions, equity, years, position_unit),
        "psr": psr,
        "dsr": dsr,
        "dsr_benchmark_sharpe": benchmark * math.sqrt(periods),
        "sharpe_ci_low": ci_low,
        "sharpe_ci_high": ci_high,
        "n_bars": float(len(values)),
    }
    return {name: float(metrics[name]) for name in METRIC_NAMES}
