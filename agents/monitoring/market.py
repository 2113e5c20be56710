"""Market detectors: unusual returns, volumes, price gaps, missing bars and funding rates.

Each detector is a pure function over one symbol's frames (candles: ``event_ts, open, high, low,
close, volume``, sorted, one row per bar; funding: ``event_ts, funding_rate``) that returns the
`Finding` of every evaluated bar whose statistic crossed its threshold. What a detector reports
for bar t uses only data at or before t: every reference statistic (a GARCH variance, a trailing
median, a trailing volatility) is computed from bars strictly before t. ``since`` evaluates only
bars at or after it while the earlier history still feeds the trailing windows, so the monitor
can check the newest bar of a long history cheaply. Evidence windows are capped at
`EVIDENCE_CAP` values (the most recent ones before the bar); the full window is in the store.

Statistics and thresholds (docs/monitoring.md "Market detectors"):

- ``garch_residual``: |z_t|, z_t = (r_t - mu) / sigma_t of the log return under GARCH(1,1) with
  Student-t innovations (`models.garch`), vs the two-sided quantile of the standardized t.
- ``volume_spike``: robust z of log volume vs the trailing window's median and 1.4826 * MAD.
- ``price_gap``: |log(open_t / close_{t-1})| in units of the trailing close-to-close volatility.
- ``missing_bar``: a hole in the timeframe grid, or a series whose newest bar is overdue at ``now``.
- ``funding_extreme``: robust z of a funding settlement vs the trailing settlements.
"""

from __future__ import annotations

import contextvars
import functools
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import model_validator

from agents.monitoring.findings import Category, Finding, Severity
from models.garch import (
    GarchConfig,
    GarchModel,
    GarchParams,
    arch_backcast,
    standardized_quantile,
)
from sextant.config import PositiveFloat, PositiveInt, SextantConfig, int_range, interval
from sextant.errors import ConfigError, DataValidationError
from sextant.timeframes import timeframe_ms

__all__ = [
    "CANDLE_COLUMNS",
    "EVIDENCE_CAP",
    "FUNDING_COLUMNS",
    "MAD_SCALE",
    "FundingConfig",
    "GapConfig",
    "GarchReference",
    "GarchResidualConfig",
    "MissingBarConfig",
    "VolumeConfig",
    "checked_once",
    "fit_garch_reference",
    "funding_extreme",
    "garch_residual",
    "grid_holes",
    "log_returns",
    "missing_bar",
    "price_gap",
    "volume_spike",
]

CANDLE_COLUMNS = ("event_ts", "open", "high", "low", "close", "volume")
FUNDING_COLUMNS = ("event_ts", "funding_rate")
EVIDENCE_CAP = 50  # values of a trailing window kept in a finding's evidence (the latest ones)
MAD_SCALE = 1.4826  # MAD * 1.4826 estimates a normal standard deviation
# frames already validated inside a `checked_once` block: id -> (frame, symbol)
_CHECKED: contextvars.ContextVar[dict[int, tuple[pd.DataFrame, str]] | None] = (
    contextvars.ContextVar("sextant_checked_candles", default=None)
)


@contextmanager
def checked_once() -> Iterator[None]:
    """Within the block, a candles frame handed to several detectors is validated by the first
    (the caller must not change it in between: the monitor runs the five detectors over each
    symbol's frame in one block). Outside one, every call validates its input."""
    token = _CHECKED.set({})
    try:
        yield
    finally:
        _CHECKED.reset(token)


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Level = Annotated[float, interval(0.5, 1.0, lo_open=True, hi_open=True)]
Threshold = Annotated[float, interval(0.0, lo_open=True)]
Multiple = Annotated[float, interval(1.0)]


# -- settings --------------------------------------------------------------------------------


class GarchResidualConfig(SextantConfig):
    """``garch_residual``: two-sided tail level of the standardized Student-t residual.

    ``level`` 0.999 flags a bar whose |z| exceeds the 0.9995 quantile: under the model, one bar
    in a thousand (about nine a year on 1h bars). Critical at ``critical_multiple`` times that
    line: a tail quantile is no use there, since hourly crypto fits have nu near 2.5, where the
    99.999 % line sits beyond 50 sigmas (the sample's BTC fit: warning 8.1, critical 16.3).
    ``warmup_bars`` returns at the start of the frame seed the variance (arch's backcast of the
    first 75) and are never evaluated, so no bar's variance depends on later returns.
    """

    level: Level = 0.999
    critical_multiple: Multiple = 2.0
    warmup_bars: Annotated[int, int_range(75)] = 100
    fit: GarchConfig = GarchConfig()  # used by `fit_garch_reference` when no champion exists

    @model_validator(mode="after")
    def _student_t(self) -> GarchResidualConfig:
        if self.fit.dist != "t":
            raise ConfigError("GarchResidualConfig.fit.dist must be 't' (Student-t innovations)")
        return self


class VolumeConfig(SextantConfig):
    """``volume_spike``: robust z of log volume over the trailing ``window`` bars (bar excluded);
    warning at ``threshold``, critical at ``critical_multiple`` times it. ``min_volume`` replaces
    zero volumes before the log (a bar with no trades must not make the reference infinite)."""

    window: Annotated[int, int_range(10)] = 168  # one week of 1h bars
    threshold: Threshold = 4.0
    critical_multiple: Multiple = 2.0
    min_volume: PositiveFloat = 1e-12


class GapConfig(SextantConfig):
    """``price_gap``: |log(open_t / close_{t-1})| over sigma * sqrt(max(1, m)), sigma the standard
    deviation of the trailing ``window`` close-to-close log returns, m the bars elapsed between
    that close and this open (0 when contiguous, the hole's length across missing bars)."""

    window: Annotated[int, int_range(10)] = 168
    threshold: Threshold = 3.0
    critical_multiple: Multiple = 2.0


class MissingBarConfig(SextantConfig):
    """``missing_bar``: any hole in the grid is a finding (critical from ``critical_bars``
    missing bars); the series is stale when its newest bar closed more than ``stale_bars`` bars
    before ``now`` (critical from ``critical_bars`` overdue bars)."""

    stale_bars: PositiveFloat = 2.0
    critical_bars: PositiveInt = 12


class FundingConfig(SextantConfig):
    """``funding_extreme``: robust z of a settlement vs the trailing ``window`` settlements'
    median and 1.4826 * MAD, the scale floored at ``scale_floor`` (a funding rate sits at the
    0.01 % base rate for days, where the MAD is 0); warning at ``threshold``, critical at
    ``critical_multiple`` times it."""

    window: Annotated[int, int_range(10)] = 90  # 30 days of 8-hourly settlements
    threshold: Threshold = 8.0
    critical_multiple: Multiple = 2.0
    scale_floor: PositiveFloat = 5e-5  # half the 0.01 % base rate


# -- the GARCH reference ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GarchReference:
    """The parameters ``garch_residual`` filters with, and where they came from.

    ``source`` is ``"champion"`` (the registered GARCH champion's fit for this symbol, with
    ``version`` its model version) or ``"fit"`` (`fit_garch_reference` on returns strictly
    before ``fitted_through``'s next bar); it goes into every finding's evidence.
    """

    params: GarchParams
    source: Literal["champion", "fit"]
    version: str | None = None
    fitted_through: datetime | None = None

    def __post_init__(self) -> None:
        p = self.params
        if not (p.omega > 0 and min(p.alpha, p.beta, p.gamma) >= 0 and p.nu > 2 and p.beta < 1):
            raise DataValidationError(
                f"GARCH parameters are not admissible (omega > 0, alpha, beta, gamma >= 0, "
                f"beta < 1, nu > 2): {p.as_dict()}",
                field="params",
            )

    def as_evidence(self) -> dict[str, Any]:
        """The parameters and their provenance, JSON-ready."""
        return {
            "source": self.source,
            "version": self.version,
            "fitted_through": None
            if self.fitted_through is None
            else self.fitted_through.astimezone(UTC).isoformat(),
            **{k: _num(v) for k, v in self.params.as_dict().items()},
        }


def fit_garch_reference(
    candles: pd.DataFrame,
    *,
    symbol: str,
    before: datetime,
    config: GarchResidualConfig | None = None,
) -> GarchReference:
    """Fit GARCH(1,1)-t with arch on the log returns of bars strictly before ``before``.

    The monitor uses this only when no GARCH champion exists; ``before`` is the first bar it
    will evaluate, so the parameters never saw the returns they judge.
    """
    cfg = config or GarchResidualConfig()
    frame = _checked_candles(candles, symbol)
    cutoff = _utc(before, "before")
    returns = log_returns(frame)
    training = returns[returns.index < pd.Timestamp(cutoff)]
    fit = GarchModel(cfg.fit).fit(training, origin=f"{symbol} returns before {cutoff.isoformat()}")
    return GarchReference(
        params=fit.params,
        source="fit",
        fitted_through=None if fit.end is None else fit.end.to_pydatetime(),
    )


def log_returns(candles: pd.DataFrame) -> pd.Series:
    """Close-to-close log returns indexed by the bar they end at (the first bar has none)."""
    close = candles["close"].to_numpy(dtype=np.float64)
    index = pd.DatetimeIndex(candles["event_ts"].iloc[1:])
    return pd.Series(np.diff(np.log(close)), index=index, name="log_return")


# -- detectors -------------------------------------------------------------------------------


def garch_residual(
    candles: pd.DataFrame,
    reference: GarchReference,
    *,
    symbol: str,
    config: GarchResidualConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Bars whose standardized GARCH residual lies beyond the two-sided Student-t quantile.

    sigma_t^2 is the one-step variance filtered through returns before t only (seeded by arch's
    backcast of the frame's first 75 returns, inside the un-evaluated warm-up), and
    z_t = (r_t - mu) / sigma_t; the threshold is the standardized t's (0.5 + level / 2)
    quantile with the reference's nu. Returns across a hole in the grid are evaluated like any
    other (the jump over the hole is a real move; ``missing_bar`` reports the hole itself).
    """
    cfg = config or GarchResidualConfig()
    frame = _checked_candles(candles, symbol)
    ts = frame["event_ts"]
    close = frame["close"].to_numpy(dtype=np.float64)
    r = np.diff(np.log(close))  # r[i] ends at bar i + 1
    if r.size <= cfg.warmup_bars:
        return []
    p = reference.params
    variance = _garch_variance(p, r)
    first = max(cfg.warmup_bars, _first_at_or_after(ts.iloc[1:], since))
    z = (r[first:] - p.mu) / np.sqrt(variance[first:])
    threshold = _standardized_line(p, 0.5 + cfg.level / 2)
    critical = threshold * cfg.critical_multiple
    hits = np.flatnonzero(np.abs(z) > threshold)
    findings = []
    for h in hits:
        i = first + int(h)  # index into r
        bar = ts.iloc[i + 1].to_pydatetime()
        value = float(z[h])
        findings.append(
            Finding(
                kind="garch_residual",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=bar,
                severity=_severity(abs(value), critical),
                statistic="garch_standardized_residual_abs",
                value=abs(value),
                threshold=threshold,
                detail=(
                    f"{symbol} return {r[i]:+.4%} at {bar.isoformat()} is {value:+.2f} conditional "
                    f"sigmas (GARCH-t, nu={p.nu:.2f}); the two-sided {cfg.level:.3%} line is "
                    f"{threshold:.2f}"
                ),
                evidence={
                    "log_return": float(r[i]),
                    "z": value,
                    "sigma": math.sqrt(float(variance[i])),
                    "level": cfg.level,
                    "critical_threshold": critical,
                    "params": reference.as_evidence(),
                    "previous_close": float(close[i]),
                    "close": float(close[i + 1]),
                    "returns_before": _tail(r[:i]),
                    "sigmas_before": _tail(np.sqrt(variance[:i])),
                },
            )
        )
    return findings


def volume_spike(
    candles: pd.DataFrame,
    *,
    symbol: str,
    config: VolumeConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Bars whose log volume is ``threshold`` robust sigmas above the trailing window's median.

    z_t = (log v_t - median(log v_{t-w..t-1})) / (1.4826 * MAD of the same window); upward only
    (a collapse in volume is a data question, not a spike). A window with MAD 0 (every volume
    equal) is skipped rather than reported as infinite.
    """
    cfg = config or VolumeConfig()
    frame = _checked_candles(candles, symbol)
    ts = frame["event_ts"]
    volume = frame["volume"].to_numpy(dtype=np.float64)
    x = np.log(np.maximum(volume, cfg.min_volume))
    idx = _evaluated(ts, since, cfg.window)
    if idx.size == 0:
        return []
    median, scale, windows = _robust_reference(x, idx, cfg.window)
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (x[idx] - median) / scale
    threshold = cfg.threshold
    findings = []
    for k in np.flatnonzero((scale > 0) & (z > threshold)):
        i = int(idx[k])
        bar = ts.iloc[i].to_pydatetime()
        value = float(z[k])
        typical = math.exp(float(median[k]))
        findings.append(
            Finding(
                kind="volume_spike",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=bar,
                severity=_severity(value, threshold * cfg.critical_multiple),
                statistic="log_volume_robust_z",
                value=value,
                threshold=threshold,
                detail=(
                    f"{symbol} volume {volume[i]:.6g} at {bar.isoformat()} is "
                    f"{volume[i] / typical:.1f}x the trailing {cfg.window}-bar median "
                    f"({typical:.6g}): robust z {value:.2f} >= {threshold:g}"
                ),
                evidence={
                    "volume": float(volume[i]),
                    "window": cfg.window,
                    "median_volume": typical,
                    "median_log_volume": float(median[k]),
                    "robust_sigma_log_volume": float(scale[k]),
                    "critical_threshold": threshold * cfg.critical_multiple,
                    "volumes_before": _tail(np.exp(windows[k])),
                },
            )
        )
    return findings


def price_gap(
    candles: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    config: GapConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Bars whose open jumped away from the previous bar's close.

    g_t = |log(open_t / close_{t-1})| / (sigma_t * sqrt(max(1, m))), sigma_t the standard
    deviation of the ``window`` close-to-close log returns ending at bar t - 1 and m the bars
    missing between the two. On a continuous market the open is the previous close to a few
    hundredths of a sigma (sample BTC/USDT 1h: at most 0.05 sigma), so a gap of several sigmas
    is a halt, a re-listing or bad data.
    """
    cfg = config or GapConfig()
    frame = _checked_candles(candles, symbol)
    step = timeframe_ms(timeframe)
    ts = frame["event_ts"]
    close = frame["close"].to_numpy(dtype=np.float64)
    open_ = frame["open"].to_numpy(dtype=np.float64)
    r = np.diff(np.log(close))  # r[j] ends at bar j + 1
    # bar t needs the window returns r[t-1-window .. t-2] (ending at bar t - 1)
    idx = _evaluated(ts, since, cfg.window + 1)
    if idx.size == 0:
        return []
    windows = np.lib.stride_tricks.sliding_window_view(r, cfg.window)[idx - 1 - cfg.window]
    sigma = windows.std(axis=1, ddof=1)
    ms = _epoch_ms(ts)
    missing = (ms[idx] - ms[idx - 1]) // step - 1
    gap = np.log(open_[idx] / close[idx - 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.abs(gap) / (sigma * np.sqrt(np.maximum(1, missing)))
    threshold = cfg.threshold
    findings = []
    for k in np.flatnonzero((sigma > 0) & (g > threshold)):
        i = int(idx[k])
        bar = ts.iloc[i].to_pydatetime()
        value = float(g[k])
        findings.append(
            Finding(
                kind="price_gap",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=bar,
                severity=_severity(value, threshold * cfg.critical_multiple),
                statistic="open_gap_sigmas",
                value=value,
                threshold=threshold,
                detail=(
                    f"{symbol} opened at {open_[i]:.8g} at {bar.isoformat()}, {gap[k]:+.4%} from "
                    f"the previous close {close[i - 1]:.8g}: {value:.2f} trailing sigmas "
                    f"(> {threshold:g})"
                ),
                evidence={
                    "open": float(open_[i]),
                    "previous_close": float(close[i - 1]),
                    "previous_bar": ts.iloc[i - 1].to_pydatetime().isoformat(),
                    "log_gap": float(gap[k]),
                    "missing_bars_between": int(missing[k]),
                    "window": cfg.window,
                    "sigma": float(sigma[k]),
                    "critical_threshold": threshold * cfg.critical_multiple,
                    "returns_before": _tail(windows[k]),
                },
            )
        )
    return findings


def missing_bar(
    candles: pd.DataFrame,
    *,
    symbol: str,
    timeframe: str,
    now: datetime,
    config: MissingBarConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Holes in the bar grid, and a newest bar overdue at ``now``; one finding per hole.

    A hole is reported at its first missing bar's open with its length in bars. It becomes known
    when the bar after it arrives, so ``since`` selects holes by that bar (evidence
    ``next_bar``), not by the missing bar. A series whose newest bar L closed (at L + one bar)
    more than ``stale_bars`` bars before ``now`` is an open hole: reported at L + one bar, the
    first bar that should exist, with the bars due so far. Both share the id (kind, symbol, first
    missing bar), so the stale report and the hole it becomes once the data resumes are stored
    once.
    """
    cfg = config or MissingBarConfig()
    frame = _checked_candles(candles, symbol)
    step = timeframe_ms(timeframe)
    current = _utc(now, "now")
    ts = frame["event_ts"]
    if ts.empty:
        return []
    ms = _epoch_ms(ts)
    off = np.flatnonzero(ms % step != ms[0] % step)
    if off.size:
        raise DataValidationError(
            f"{symbol}: bar {ts.iloc[int(off[0])].isoformat()} is off the {timeframe} grid",
            field="event_ts",
        )
    findings = []
    for i, n_missing in grid_holes(ms, step, start=_first_at_or_after(ts, since)):
        first_missing = ts.iloc[i - 1] + pd.Timedelta(milliseconds=step)
        findings.append(
            Finding(
                kind="missing_bar",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=first_missing.to_pydatetime(),
                severity=_severity(n_missing, cfg.critical_bars),
                statistic="missing_bars",
                value=float(n_missing),
                threshold=1.0,
                detail=(
                    f"{symbol} {timeframe}: {n_missing} bar(s) missing from "
                    f"{first_missing.isoformat()} (between {ts.iloc[i - 1].isoformat()} and "
                    f"{ts.iloc[i].isoformat()})"
                ),
                evidence={
                    "timeframe": timeframe,
                    "previous_bar": ts.iloc[i - 1].to_pydatetime().isoformat(),
                    "next_bar": ts.iloc[i].to_pydatetime().isoformat(),
                    "missing_bars": n_missing,
                    "open": False,
                    "critical_bars": cfg.critical_bars,
                },
            )
        )
    last = ts.iloc[-1]
    last_close_ms = int(ms[-1]) + step
    overdue = (current.timestamp() * 1000 - last_close_ms) / step
    if overdue > cfg.stale_bars:
        due = int((current.timestamp() * 1000 - last_close_ms) // step)  # closed bars not stored
        first_missing = last + pd.Timedelta(milliseconds=step)
        findings.append(
            Finding(
                kind="missing_bar",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=first_missing.to_pydatetime(),
                severity=_severity(overdue, cfg.critical_bars),
                statistic="bars_overdue",
                value=overdue,
                threshold=cfg.stale_bars,
                detail=(
                    f"{symbol} {timeframe} is stale: its newest bar {last.isoformat()} closed "
                    f"{overdue:.1f} bars before {current.isoformat()} ({due} closed bar(s) not "
                    f"stored; stale after {cfg.stale_bars:g})"
                ),
                evidence={
                    "timeframe": timeframe,
                    "previous_bar": last.to_pydatetime().isoformat(),
                    "next_bar": None,
                    "now": current.isoformat(),
                    "missing_bars": due,
                    "open": True,
                    "critical_bars": cfg.critical_bars,
                },
            )
        )
    return findings


def funding_extreme(
    funding: pd.DataFrame,
    *,
    symbol: str,
    config: FundingConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Funding settlements ``threshold`` robust sigmas away from the trailing settlements.

    z_t = (f_t - median(f_{t-w..t-1})) / max(1.4826 * MAD, scale_floor), two-sided: an extreme
    negative rate (shorts paying longs) is as telling as a positive one.
    """
    cfg = config or FundingConfig()
    frame = _checked_frame(funding, FUNDING_COLUMNS, symbol, "funding")
    ts = frame["event_ts"]
    rate = frame["funding_rate"].to_numpy(dtype=np.float64)
    _finite(rate, ts, "funding_rate", symbol)
    idx = _evaluated(ts, since, cfg.window)
    if idx.size == 0:
        return []
    median, scale, windows = _robust_reference(rate, idx, cfg.window)
    scale = np.maximum(scale, cfg.scale_floor)
    z = (rate[idx] - median) / scale
    threshold = cfg.threshold
    findings = []
    for k in np.flatnonzero(np.abs(z) > threshold):
        i = int(idx[k])
        bar = ts.iloc[i].to_pydatetime()
        value = float(z[k])
        findings.append(
            Finding(
                kind="funding_extreme",
                category=Category.MARKET,
                symbol=symbol,
                bar_ts=bar,
                severity=_severity(abs(value), threshold * cfg.critical_multiple),
                statistic="funding_rate_robust_z_abs",
                value=abs(value),
                threshold=threshold,
                detail=(
                    f"{symbol} funding {rate[i]:+.4%} at {bar.isoformat()} vs the trailing "
                    f"{cfg.window}-settlement median {median[k]:+.4%}: robust z {value:+.2f}"
                ),
                evidence={
                    "funding_rate": float(rate[i]),
                    "z": value,
                    "window": cfg.window,
                    "median": float(median[k]),
                    "robust_sigma": float(scale[k]),
                    "scale_floor": cfg.scale_floor,
                    "critical_threshold": threshold * cfg.critical_multiple,
                    "rates_before": _tail(windows[k]),
                },
            )
        )
    return findings


# -- shared helpers ---------------------------------------------------------------------------


def grid_holes(ms: IntArray, step: int, *, start: int = 0) -> list[tuple[int, int]]:
    """(position of the bar after the hole, missing bars) of every hole in sorted epoch-ms
    timestamps on a ``step`` grid, for holes closed by a bar at position >= ``start``."""
    first = max(1, start)
    if ms.size <= first:
        return []
    steps = np.diff(ms[first - 1 :])
    return [(first + int(k), int(steps[k] // step) - 1) for k in np.flatnonzero(steps > step)]


def _garch_variance(p: GarchParams, r: FloatArray) -> FloatArray:
    """sigma2[i] of return r[i] from returns before i: arch's backcast seed, then the recursion."""
    from scipy import signal

    backcast = arch_backcast(r[: min(75, r.size)])
    seed = np.empty(r.size, dtype=np.float64)
    seed[0] = p.omega + (p.alpha + 0.5 * p.gamma + p.beta) * backcast
    eps = r[:-1] - p.mu
    seed[1:] = p.omega + np.where(eps < 0, p.alpha + p.gamma, p.alpha) * (eps * eps)
    variance: FloatArray = np.asarray(signal.lfilter([1.0], [1.0, -p.beta], seed), np.float64)
    return variance


def _robust_reference(
    x: FloatArray, idx: IntArray, window: int
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Median, 1.4826 * MAD and the windows of the ``window`` values before each index."""
    windows = np.lib.stride_tricks.sliding_window_view(x, window)[idx - window]
    median = np.median(windows, axis=1)
    mad = np.median(np.abs(windows - median[:, None]), axis=1)
    return median, MAD_SCALE * mad, windows


def _evaluated(ts: pd.Series, since: datetime | None, history: int) -> IntArray:
    """Positions at or after ``since`` with at least ``history`` rows before them."""
    first = max(history, _first_at_or_after(ts, since))
    return np.arange(first, len(ts), dtype=np.int64)


def _first_at_or_after(ts: pd.Series, since: datetime | None) -> int:
    if since is None:
        return 0
    cutoff_ms = int(_utc(since, "since").timestamp() * 1000)
    return int(np.searchsorted(_epoch_ms(ts), cutoff_ms, side="left"))


def _severity(value: float, critical: float) -> Severity:
    return Severity.CRITICAL if value >= critical else Severity.WARNING


def _tail(values: Sequence[float] | FloatArray) -> list[float | None]:
    return [_num(v) for v in np.asarray(values, dtype=np.float64)[-EVIDENCE_CAP:]]


def _num(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


def _utc(value: datetime, what: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DataValidationError(
            f"{what} must be a tz-aware UTC datetime, got {value!r}", field=what
        )
    return value.astimezone(UTC)


@functools.lru_cache(maxsize=4096)
def _standardized_line(params: GarchParams, level: float) -> float:
    """`standardized_quantile`, kept per (parameters, level): a t quantile costs ~0.5 ms."""
    return standardized_quantile(params, level)


def _epoch_ms(ts: pd.Series) -> IntArray:
    """Epoch milliseconds of a tz-aware series, whatever its unit (pandas ns, DuckDB us)."""
    values = np.asarray(ts.array.tz_convert(None)).astype("datetime64[ms]")
    as_ms: IntArray = values.view(np.int64)
    return as_ms


def _checked_frame(
    frame: pd.DataFrame, columns: Sequence[str], symbol: str, what: str
) -> pd.DataFrame:
    """The frame if it has ``columns``, a tz-aware ``event_ts`` strictly increasing, one symbol."""
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{symbol}: {what} must be a DataFrame", field=what)
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(
            f"{symbol}: {what} frame lacks column(s) {', '.join(missing)}", field=missing[0]
        )
    ts = frame["event_ts"]
    if not isinstance(ts.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"{symbol}: {what} event_ts must be tz-aware UTC datetimes, got dtype {ts.dtype}",
            field="event_ts",
        )
    if ts.array.isna().any():  # on the array: a series' isna costs 5x as much
        raise DataValidationError(f"{symbol}: {what} event_ts has missing values", field="event_ts")
    steps = np.diff(_epoch_ms(ts))
    if (steps == 0).any():
        at = ts.iloc[int(np.flatnonzero(steps == 0)[0]) + 1]
        raise DataValidationError(
            f"{symbol}: {what} event_ts has a duplicated timestamp {at.isoformat()}",
            field="event_ts",
        )
    if (steps < 0).any():
        at = ts.iloc[int(np.flatnonzero(steps < 0)[0]) + 1]
        raise DataValidationError(
            f"{symbol}: {what} event_ts is not sorted (at {at.isoformat()})", field="event_ts"
        )
    names = frame["symbol"].to_numpy() if "symbol" in frame.columns else None
    if names is not None and len(names) and (names != names[0]).any():
        raise DataValidationError(
            f"{what} frame holds several symbols ({sorted(frame['symbol'].unique())[:3]}...), "
            f"expected only {symbol}",
            field="symbol",
        )
    return frame


def _checked_candles(candles: pd.DataFrame, symbol: str) -> pd.DataFrame:
    memo = _CHECKED.get()
    if memo is not None:
        seen = memo.get(id(candles))
        if seen is not None and seen[0] is candles and seen[1] == symbol:
            return candles
    frame = _validated_candles(candles, symbol)
    if memo is not None:
        memo[id(candles)] = (candles, symbol)  # kept alive: the id is not reused in the block
    return frame


def _validated_candles(candles: pd.DataFrame, symbol: str) -> pd.DataFrame:
    frame = _checked_frame(candles, CANDLE_COLUMNS, symbol, "candles")
    ts = frame["event_ts"]
    prices = np.column_stack(
        [
            frame[name].to_numpy(dtype=np.float64)
            for name in ("open", "high", "low", "close", "volume")
        ]
    )
    bad = ~np.isfinite(prices) | (prices <= 0)
    bad[:, 4] = ~np.isfinite(prices[:, 4]) | (prices[:, 4] < 0)  # a volume may be 0
    if bad.any():
        row, col = (int(v) for v in np.argwhere(bad)[0])
        name = ("open", "high", "low", "close", "volume")[col]
        what = "non-finite" if not np.isfinite(prices[row, col]) else "non-positive"
        if col == 4 and what == "non-positive":
            what = "negative"
        raise DataValidationError(
            f"{symbol}: {what} {name} {prices[row, col]!r} at {ts.iloc[row].isoformat()}",
            field=name,
        )
    return frame


def _finite(values: FloatArray, ts: pd.Series, name: str, symbol: str) -> None:
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataValidationError(
            f"{symbol}: non-finite {name} at {ts.iloc[int(bad[0])].isoformat()}", field=name
        )
