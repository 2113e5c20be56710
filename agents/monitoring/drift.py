"""Model drift: are the champion's inputs, outputs, calibration and decisions still what they were?

Four detectors (``Category.MODEL``), pure functions over frames plus the champion's training
reference (`models.drift_reference`, read here by `load_drift_reference`). Each evaluates the
trailing window that ends at a bar close; by default only the latest bar close of the frame,
with ``since`` every bar close at or after it (the history before ``since`` still fills the
windows). Nothing after the evaluated bar close is read: rows later than it are ignored, so a
frame truncated after that bar gives the same finding.

* `feature_drift` — per symbol, the last ``window_bars`` feature rows against the training
  rows of that symbol. Per feature: PSI over the reference's decile bins (+ a NaN bin), the
  two-sample KS test against the reference sample with its p-value recomputed for the window's
  serial correlation, and the share of the window outside the training support (its 0.5 % and
  99.5 % quantiles). A feature drifts when its PSI >= ``psi_warning`` and either the KS test
  rejects at the Bonferroni level ``family_alpha / n_features`` or at least ``support_share``
  of the window lies outside the support. One finding per symbol and bar when any feature
  drifts; critical when a drifting feature's PSI >= ``psi_critical``.
* `prediction_drift` — PSI of the champion's P(up) over the window vs its reported-span
  out-of-fold distribution; warning at ``psi_warning``, critical at ``psi_critical``.
* `calibration_decay` — Brier score and log loss over the last ``window`` decisions whose label
  was known at the bar close, vs the reported-span figures: a one-sided z test of "no worse"
  with effective sample sizes ``n / label_horizon`` (overlapping labels) and a minimum relative
  excess ``relative_margin``.
* `decision_mix_drift` — share of flat decisions and of each risk reason code in the last
  ``window_hours`` vs the ``reference_hours`` before it: chi-square test of homogeneity and PSI
  over the categories; both must cross.

Why each threshold, and the measured false-alarm rates and powers: docs/monitoring.md,
"Model drift".
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import special, stats

from agents.monitoring.findings import Category, Finding, Severity
from models.drift_reference import (
    Distribution,
    DriftReference,
    brier_losses,
    log_losses,
    population_stability_index,
    psi_rows,
)
from sextant.config import (
    OpenFraction,
    PositiveFloat,
    PositiveInt,
    SextantConfig,
    int_range,
    interval,
)
from sextant.contracts import CHAMPION, REGISTERED_MODELS, ModelTag
from sextant.errors import DataValidationError, ModelUnavailableError

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = [
    "CalibrationDecayConfig",
    "DecisionMixConfig",
    "FeatureDriftConfig",
    "PredictionDriftConfig",
    "calibration_decay",
    "decision_categories",
    "decision_mix_drift",
    "effective_size",
    "feature_drift",
    "ks_two_sample",
    "load_drift_reference",
    "population_stability_index",
    "prediction_drift",
    "psi_lines",
]

FloatArray = npt.NDArray[np.float64]
FEATURE_TS = "available_at"  # a feature row's time: the bar close it is known at
DECISION_TS = "ts"  # a decision's (and its prediction's) time: the bar close it was made at
EVIDENCE_CAP = 50  # values of a window kept in a finding's evidence (the latest ones)
FLAT, POSITIONED = "FLAT", "POSITIONED"  # decision categories without a failed risk check

Alpha = Annotated[float, interval(0.0, 0.5, lo_open=True, hi_open=True)]


# --- settings ------------------------------------------------------------------------------------


class FeatureDriftConfig(SextantConfig):
    """`feature_drift` thresholds (docs/monitoring.md, "Model drift")."""

    window_bars: PositiveInt = 168  # one week of 1h bars
    min_rows: Annotated[int, int_range(20)] = 48  # fewer rows in the window: not evaluated
    psi_warning: PositiveFloat = 0.25
    psi_critical: PositiveFloat = 1.0
    family_alpha: Alpha = 0.01  # over all features at once (Bonferroni)
    support_share: OpenFraction = 0.5  # window share outside the training support
    min_finite: Annotated[int, int_range(2)] = 20  # finite values a KS test needs on each side
    evidence_features: PositiveInt = 5  # features whose bins the evidence keeps
    # judge each feature against the PSI its own training windows reach (`psi_lines`); off: the
    # fixed ``psi_warning`` for every feature
    calibrated_lines: bool = True


class PredictionDriftConfig(SextantConfig):
    """`prediction_drift` thresholds."""

    window_bars: PositiveInt = 168
    min_rows: Annotated[int, int_range(20)] = 48
    psi_warning: PositiveFloat = 0.25
    psi_critical: PositiveFloat = 1.0


class CalibrationDecayConfig(SextantConfig):
    """`calibration_decay` thresholds: one-sided z levels and the smallest excess that counts."""

    window: PositiveInt = 336  # matured decisions per symbol (two weeks of 1h bars)
    min_pairs: Annotated[int, int_range(10)] = 96
    z_warning: PositiveFloat = 2.326  # one-sided 1 %
    z_critical: PositiveFloat = 3.090  # one-sided 0.1 %
    relative_margin: Annotated[float, interval(0.0, 1.0)] = 0.02


class DecisionMixConfig(SextantConfig):
    """`decision_mix_drift` windows (hours) and thresholds."""

    window_hours: PositiveInt = 168
    reference_hours: PositiveInt = 720
    min_decisions: Annotated[int, int_range(10)] = 48  # in each window
    alpha: Alpha = 0.01
    psi_warning: PositiveFloat = 0.25
    psi_critical: PositiveFloat = 1.0


# --- statistics ----------------------------------------------------------------------------------


def _f32(value: float) -> float:
    return float(np.float32(value))


def effective_size(values: npt.ArrayLike) -> float:
    """How many independent draws a serially correlated window is worth: ``n / s``.

    ``s = 1 + 2 * sum_k (1 - k / (K + 1)) * rho_k`` over lags ``k = 1 .. K = n // 4`` (Bartlett
    weights, the long-run variance of a mean), floored at 1, so ``n_eff`` is in ``[1, n]``. Hourly
    features persist for days (funding is constant for 8 bars and its regimes last weeks), which
    a lag-1 AR(1) approximation underrates.
    """
    x = np.asarray(values, dtype=np.float64)
    n = len(x)
    if n < 8:
        return float(n)
    centred = x - x.mean()
    spectrum = np.fft.rfft(centred, 2 * n)
    autocovariance = np.fft.irfft(spectrum * np.conj(spectrum))[: n // 4 + 1]
    if autocovariance[0] <= 0.0:
        return float(n)
    lags = len(autocovariance) - 1
    rho = autocovariance[1:] / autocovariance[0]
    weights = 1.0 - np.arange(1, lags + 1) / (lags + 1)
    inflation = max(1.0 + 2.0 * float(np.dot(weights, rho)), 1.0)
    return max(n / inflation, 1.0)


def ks_two_sample(window: npt.ArrayLike, sample: npt.ArrayLike) -> float:
    """The two-sample Kolmogorov–Smirnov statistic ``sup |F_window - F_sample|``.

    The statistic of ``scipy.stats.ks_2samp`` (two-sided), computed here with two sorted
    searches: scipy's wrapper costs about 1 ms a call, 50 ms for a symbol's 50 features.
    """
    return _ks_sorted(
        np.sort(np.asarray(window, dtype=np.float64)),
        np.sort(np.asarray(sample, dtype=np.float64)),
    )


def _ks_sorted(a: FloatArray, b: FloatArray) -> float:
    """`ks_two_sample` of two sorted samples."""
    points = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, points, side="right") / len(a)
    cdf_b = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(cdf_a - cdf_b)))


def _ks(
    window: FloatArray, sample: Sequence[float], min_finite: int, ordered: FloatArray | None = None
) -> tuple[float, float, float]:
    """KS statistic, its asymptotic p-value, and the p-value at the window's effective size.

    p-values from the limiting Kolmogorov distribution (``scipy.special.kolmogorov``, what
    ``ks_2samp(method="asymp")`` approaches) at ``sqrt(n m / (n + m)) * D``. An hourly feature is
    serially correlated, so a week is fewer than 168 independent draws: the adjusted p-value
    uses the window's `effective_size`. NaN when either side has fewer than ``min_finite`` finite
    values. ``ordered``: the sample as compared (float32 values), sorted, when the caller holds it.
    """
    finite = window[np.isfinite(window)]
    if len(finite) < min_finite or len(sample) < min_finite:
        return math.nan, math.nan, math.nan
    reference = _reference_sample(sample) if ordered is None else ordered
    statistic = _ks_sorted(np.sort(finite), reference)
    m, n = float(len(reference)), float(len(finite))
    n_eff = effective_size(finite)
    p_value = float(special.kolmogorov(statistic * math.sqrt(m * n / (m + n))))
    adjusted = float(special.kolmogorov(statistic * math.sqrt(m * n_eff / (m + n_eff))))
    return statistic, p_value, adjusted


def _reference_sample(sample: Sequence[float]) -> FloatArray:
    """A reference sample as the KS test compares it: float32 values (the model's input type),
    sorted."""
    return np.sort(np.asarray(sample, dtype=np.float64).astype(np.float32).astype(np.float64))


# --- shared helpers ------------------------------------------------------------------------------


def _require(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(f"{what} must be a DataFrame, got {type(frame).__name__}")
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataValidationError(f"{what} lacks columns {missing}", field=missing[0])


def _checked_times(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    """``frame[column]``, refused unless every value is a tz-aware time."""
    times = frame[column]
    if not isinstance(times.dtype, pd.DatetimeTZDtype):
        raise DataValidationError(
            f"{what}.{column} must be tz-aware UTC datetimes, got {times.dtype}", field=column
        )
    if times.array.isna().any():  # on the array: a series' isna costs 5x as much
        raise DataValidationError(f"{what}.{column} has missing times", field=column)
    return times


def _utc_times(frame: pd.DataFrame, column: str, what: str) -> pd.Series:
    utc: pd.Series = _checked_times(frame, column, what).dt.tz_convert("UTC").dt.as_unit("ns")
    return utc


def _utc_ns(frame: pd.DataFrame, column: str, what: str) -> npt.NDArray[np.int64]:
    """`_ns` of `_utc_times` (the same checks and values), without building the series."""
    stamps = _checked_times(frame, column, what).array
    return np.asarray(stamps.as_unit("ns").asi8, dtype=np.int64)  # UTC instants, any zone


def _ns(times: pd.Series) -> npt.NDArray[np.int64]:
    """UTC nanoseconds of a `_utc_times` series (fast comparisons and searches)."""
    return np.asarray(times.astype("int64"), dtype=np.int64)


def _evaluation_times(times: pd.Series, since: datetime | None) -> list[pd.Timestamp]:
    """The bar closes to evaluate: the latest one, or every one at or after ``since``."""
    if times.empty:
        return []
    if since is None:
        return [times.max()]
    if since.tzinfo is None:
        raise DataValidationError(f"since must be timezone-aware, got {since!r}", field="since")
    return sorted(pd.Timestamp(t) for t in times[times >= pd.Timestamp(since)].unique())


def _span(times: pd.Series) -> dict[str, Any]:
    return {"first": times.min().isoformat(), "last": times.max().isoformat(), "n": len(times)}


def _round(value: float, digits: int = 6) -> float | None:
    return None if not math.isfinite(value) else float(f"{value:.{digits}g}")


def _shares(values: FloatArray) -> list[float | None]:
    return [_round(float(v), 4) for v in values]


def _severity(value: float, critical: float) -> Severity:
    return Severity.CRITICAL if value >= critical else Severity.WARNING


def _symbols(frame: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    for symbol, rows in frame.groupby("symbol", sort=True):
        yield str(symbol), rows


# --- feature drift -------------------------------------------------------------------------------


def feature_drift(
    features: pd.DataFrame,
    reference: DriftReference,
    *,
    config: FeatureDriftConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Drift of the model's inputs: per symbol, the last ``window_bars`` rows vs training.

    ``features``: ``symbol``, ``available_at`` (bar close, UTC) and every feature of
    ``reference.features`` (raw values, NaN allowed). Evidence: per feature PSI, share outside the
    support and, where the PSI reaches its warning line (elsewhere the test cannot change the
    verdict: null), the KS statistic with its raw and serial-correlation-adjusted p-values; for the
    ``evidence_features`` worst features the bin edges and live vs reference shares; the
    window's span.
    """
    config = config or FeatureDriftConfig()
    _require(features, ("symbol", FEATURE_TS, *reference.features), "features")
    times = _utc_ns(features, FEATURE_TS, "features")
    names = features["symbol"].to_numpy()
    # float32, the model's input type, in which the reference's edges and sample are kept
    values = features[list(reference.features)].to_numpy(dtype=np.float32).astype(np.float64)
    order = np.lexsort((times, names))  # by symbol, then time (stable)
    names, times, values = names[order], times[order], values[order]
    cutoff = None
    if since is not None:
        if since.tzinfo is None:
            raise DataValidationError(f"since must be timezone-aware, got {since!r}", field="since")
        cutoff = pd.Timestamp(since).as_unit("ns").value
    bounds = np.flatnonzero(np.r_[True, names[1:] != names[:-1], True]) if len(names) else ()
    findings: list[Finding] = []
    for lo, hi in itertools.pairwise(bounds):
        symbol = str(names[lo])
        compiled = _compiled(reference, symbol)
        rows = values[lo:hi]
        if np.isinf(rows).any():
            raise DataValidationError(f"features of {symbol}: infinite values", field="features")
        stamps_ns = times[lo:hi]
        ends = (
            [int(stamps_ns[-1])]
            if cutoff is None
            else np.unique(stamps_ns[stamps_ns >= cutoff]).tolist()
        )
        for at_ns in ends:
            end = int(np.searchsorted(stamps_ns, at_ns, side="right"))
            start = max(0, end - config.window_bars)
            if end - start < config.min_rows:
                continue
            finding = _feature_window(
                symbol,
                pd.Timestamp(at_ns, tz="UTC"),
                rows[start:end],
                stamps_ns[start:end],
                reference,
                compiled,
                config,
            )
            if finding is not None:
                findings.append(finding)
    return findings


@dataclass(frozen=True)
class _Compiled:
    """A symbol's feature distributions as arrays, for all features at once."""

    distributions: Mapping[str, Distribution]
    edges: npt.NDArray[np.float32]  # (features, most edges), padded with +inf
    n_edges: npt.NDArray[np.intp]
    lower: FloatArray  # support bounds, float32 values (NaN: none)
    upper: FloatArray
    # per bin count: the features with that many bins and their reference shares
    # (one PSI computation per group, `_window_psi_values`)
    groups: tuple[tuple[npt.NDArray[np.intp], FloatArray], ...]
    samples: tuple[FloatArray, ...]  # each feature's reference sample as `_ks` compares it


_COMPILED: dict[int, tuple[Mapping[str, Distribution], tuple[str, ...], _Compiled]] = {}


def _compiled(reference: DriftReference, symbol: str) -> _Compiled:
    """`_Compiled` of the symbol's distributions, kept per distributions object (a reference is
    immutable; the object is held, so its id is not reused while kept)."""
    distributions = reference.for_symbol(symbol)
    held = _COMPILED.get(id(distributions))
    if held is not None and held[0] is distributions and held[1] == reference.features:
        return held[2]
    dists = [distributions[name] for name in reference.features]
    width = max((len(d.edges) for d in dists), default=0)
    edges = np.full((len(dists), width), np.inf, dtype=np.float32)
    for j, dist in enumerate(dists):
        edges[j, : len(dist.edges)] = np.asarray(dist.edges, dtype=np.float32)
    bound = [
        (np.nan, np.nan) if d.lower is None or d.upper is None else (_f32(d.lower), _f32(d.upper))
        for d in dists
    ]
    proportions = [np.asarray(d.proportions, dtype=np.float64) for d in dists]
    counts = np.array([len(p) for p in proportions], dtype=np.intp)
    groups = tuple(
        (members, np.stack([proportions[j] for j in members]))
        for count in np.unique(counts)
        for members in [np.flatnonzero(counts == count)]
    )
    compiled = _Compiled(
        distributions,
        edges,
        np.array([len(d.edges) for d in dists], dtype=np.intp),
        np.array([b[0] for b in bound], dtype=np.float32),
        np.array([b[1] for b in bound], dtype=np.float32),
        groups,
        tuple(_reference_sample(d.sample) for d in dists),
    )
    if len(_COMPILED) >= 256:
        _COMPILED.clear()
    _COMPILED[id(distributions)] = (distributions, reference.features, compiled)
    return compiled


def _window_psi_values(shares: Sequence[FloatArray], compiled: _Compiled) -> FloatArray:
    """Each feature's `population_stability_index` of its window shares against its
    reference, the features with the same number of bins at once (`psi_rows`: the same floats
    as one call per feature)."""
    psi = np.empty(len(shares), dtype=np.float64)
    for members, reference in compiled.groups:
        psi[members] = psi_rows(np.stack([shares[j] for j in members]), reference)
    return psi


def _window_bins(window: FloatArray, compiled: _Compiled) -> npt.NDArray[np.intp]:
    """Each value's bin (`Distribution.shares`' bins for every column at once: right-closed
    bins compared in float32, NaN in the last bin)."""
    as32 = window.astype(np.float32)
    # searchsorted(side="left") on sorted edges = how many edges lie below the value
    index = (as32[:, :, None] > compiled.edges[None, :, :]).sum(axis=2)
    bins: npt.NDArray[np.intp] = np.where(
        np.isnan(window), compiled.n_edges[None, :] + 1, index
    ).astype(np.intp)
    return bins


@dataclass(frozen=True)
class _HeldBins:
    """A window's rows and their bins, as `_bins_of_window` last computed them."""

    compiled: _Compiled
    stamps_ns: npt.NDArray[np.int64]
    bits: npt.NDArray[np.uint64]  # the rows' values, bit for bit
    bins: npt.NDArray[np.intp]


_HELD_BINS: dict[tuple[int, str], _HeldBins] = {}  # (id of the compiled reference, symbol)


def _bins_of_window(
    symbol: str, window: FloatArray, stamps_ns: npt.NDArray[np.int64], compiled: _Compiled
) -> npt.NDArray[np.intp]:
    """`_window_bins`, reusing the bins of the rows the symbol's previous window held with the
    same time and the same values bit for bit (a bin is a function of the value alone: a row
    rewritten, added late or new is binned again). The window moves one bar per bar, so a
    monitor kept warm bins one new row per symbol instead of the whole window."""
    bits = np.ascontiguousarray(window).view(np.uint64)
    key = (id(compiled), symbol)
    held = _HELD_BINS.get(key)
    if (
        held is None
        or held.compiled is not compiled
        or held.bits.shape[1:] != bits.shape[1:]
        or not len(held.stamps_ns)
        or not len(window)
    ):
        bins = _window_bins(window, compiled)
    else:
        at = np.minimum(np.searchsorted(held.stamps_ns, stamps_ns), len(held.stamps_ns) - 1)
        same = (held.stamps_ns[at] == stamps_ns) & (held.bits[at] == bits).all(axis=1)
        bins = np.empty(window.shape, dtype=np.intp)
        bins[same] = held.bins[at[same]]
        fresh = ~same
        if fresh.any():
            bins[fresh] = _window_bins(window[fresh], compiled)
    if len(_HELD_BINS) >= 1024:
        _HELD_BINS.clear()
    _HELD_BINS[key] = _HeldBins(compiled, stamps_ns.copy(), bits.copy(), bins)
    return bins


def _window_shares(bins: npt.NDArray[np.intp], compiled: _Compiled) -> list[FloatArray]:
    """Each feature's bin shares over a window from its values' `_window_bins`
    (`Distribution.shares` of every column at once)."""
    n, n_features = bins.shape
    width = compiled.edges.shape[1] + 2
    flat = bins + np.arange(n_features)[None, :] * width
    counts: FloatArray = (
        np.bincount(flat.ravel(), minlength=n_features * width)
        .reshape(n_features, width)
        .astype(np.float64)
    )
    if n:
        counts = counts / float(n)  # `_shares`: counts over their total, every row counted
    return [counts[j, : compiled.n_edges[j] + 2] for j in range(n_features)]


def _feature_window(
    symbol: str,
    at: pd.Timestamp,
    window: FloatArray,
    stamps_ns: npt.NDArray[np.int64],
    reference: DriftReference,
    compiled: _Compiled,
    config: FeatureDriftConfig,
) -> Finding | None:
    n_features = len(reference.features)
    distributions = compiled.distributions
    ks_level = config.family_alpha / n_features
    shares = _window_shares(_bins_of_window(symbol, window, stamps_ns, compiled), compiled)
    live_shares = dict(zip(reference.features, shares, strict=True))
    psi_by_feature = dict(
        zip(reference.features, _window_psi_values(shares, compiled).tolist(), strict=True)
    )
    if max(psi_by_feature.values(), default=0.0) < config.psi_warning:
        return None  # no feature can drift (both routes need the PSI): skip the KS tests
    lines = psi_lines(reference, distributions, config)
    finite = np.isfinite(window)
    n_finite = finite.sum(axis=0)
    beyond = ((window < compiled.lower) | (window > compiled.upper)) & finite
    with np.errstate(divide="ignore", invalid="ignore"):
        outside_share = np.where(
            (n_finite > 0) & ~np.isnan(compiled.lower), beyond.sum(axis=0) / n_finite, np.nan
        )
    thresholds: dict[str, float] = {}  # a drifting feature's line, by the route that fired
    criticals: dict[str, float] = {}
    tests: dict[str, tuple[float, float, float]] = {}
    for j, name in enumerate(reference.features):
        psi = psi_by_feature[name]
        # the shape route needs the PSI at its line: below it the KS test cannot change anything
        if psi >= lines[name]:
            tests[name] = _ks(
                window[:, j], distributions[name].sample, config.min_finite, compiled.samples[j]
            )
        ks_p_adjusted = tests[name][2] if name in tests else math.nan
        outside = float(outside_share[j])
        # values training never saw drift at the fixed line, whatever the regime; a different
        # shape within the support drifts past the feature's own (calibrated) line
        if psi >= config.psi_warning and outside >= config.support_share:
            thresholds[name] = config.psi_warning
            criticals[name] = config.psi_critical
        elif psi >= lines[name] and ks_p_adjusted < ks_level:  # NaN: no test
            thresholds[name] = lines[name]
            criticals[name] = lines[name] * config.psi_critical / config.psi_warning
    if not thresholds:
        return None  # nothing drifts: no evidence to build
    per_feature: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(reference.features):
        ks_stat, ks_p, ks_p_adjusted = tests.get(name, (math.nan, math.nan, math.nan))
        per_feature[name] = {
            "psi": _round(psi_by_feature[name], 4),
            "psi_line": _round(lines[name]),
            "ks": _round(ks_stat, 4),
            "ks_p": _round(ks_p, 3),
            "ks_p_adjusted": _round(ks_p_adjusted, 3),
            "outside_support": _round(float(outside_share[j]), 4),
        }
    drifting = list(thresholds)
    if not drifting:
        return None
    # the drifting feature furthest past its line
    worst = max(drifting, key=lambda f: psi_by_feature[f] / thresholds[f])
    value = float(per_feature[worst]["psi"] or 0.0)
    critical = criticals[worst]
    ranked = sorted(per_feature, key=lambda f: per_feature[f]["psi"] or 0.0, reverse=True)
    bins = {
        name: {
            "edges": list(distributions[name].edges),
            "live": _shares(live_shares[name]),
            "reference": list(distributions[name].proportions),
        }
        for name in ranked[: config.evidence_features]
    }
    first = pd.Timestamp(int(stamps_ns[0]), tz="UTC")
    last = pd.Timestamp(int(stamps_ns[-1]), tz="UTC")
    return Finding(
        kind="feature_drift",
        category=Category.MODEL,
        symbol=symbol,
        bar_ts=at.to_pydatetime(),
        severity=_severity(value, critical),
        statistic="max_psi",
        value=value,
        threshold=thresholds[worst],
        detail=(
            f"{len(drifting)} of {n_features} {reference.family} inputs of {symbol} drifted "
            f"from training over the last {len(window)} bars; worst {worst} (PSI {value:.3g})"
        ),
        evidence={
            "family": reference.family,
            "window": {"first": first.isoformat(), "last": last.isoformat(), "n": len(window)},
            "drifting": drifting,
            "ks_level": ks_level,
            "critical_threshold": _round(critical, 4),
            "features": per_feature,
            "bins": bins,
            "reference_range": reference.data_range,
        },
    )


def psi_lines(
    reference: DriftReference,
    distributions: Mapping[str, Distribution],
    config: FeatureDriftConfig,
) -> dict[str, float]:
    """Each feature's PSI line: ``psi_warning``, raised to the PSI its training windows reach
    (`Distribution.window_psi`) when the reference was built for windows of ``window_bars``;
    a reference without window lines (schema 1, or another window) gets the fixed line."""
    calibrated = config.calibrated_lines and reference.window_rows == config.window_bars
    lines = {}
    for name in reference.features:
        natural = distributions[name].window_psi if calibrated else None
        lines[name] = max(config.psi_warning, natural or 0.0)
    return lines


# --- prediction drift ----------------------------------------------------------------------------


def prediction_drift(
    predictions: pd.DataFrame,
    reference: DriftReference,
    *,
    config: PredictionDriftConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Drift of the champion's output: PSI of P(up) over the window vs the reported span.

    ``predictions``: ``symbol``, ``ts`` (decision bar close, UTC), ``p_up`` (NaN rows, when the
    model was unavailable, are left out and counted in the evidence). Evidence: the window's
    span, its bins' live vs reference shares, the latest ``EVIDENCE_CAP`` predictions.
    """
    config = config or PredictionDriftConfig()
    _require(predictions, ("symbol", DECISION_TS, "p_up"), "predictions")
    times = _utc_times(predictions, DECISION_TS, "predictions")
    frame = predictions.assign(**{DECISION_TS: times}).sort_values(["symbol", DECISION_TS])
    p_all = frame["p_up"].to_numpy(dtype=np.float64)
    if not ((p_all >= 0.0) & (p_all <= 1.0) | np.isnan(p_all)).all():
        raise DataValidationError("predictions.p_up must be in [0, 1]", field="p_up")
    findings: list[Finding] = []
    for symbol, rows in _symbols(frame):
        dist = _output_reference(reference, symbol)
        stamps = rows[DECISION_TS].reset_index(drop=True)
        stamps_ns = _ns(stamps)
        p_up = rows["p_up"].to_numpy(dtype=np.float64)
        for at in _evaluation_times(stamps, since):
            end = int(np.searchsorted(stamps_ns, at.value, side="right"))
            start = max(0, end - config.window_bars)
            window = p_up[start:end]
            present = window[np.isfinite(window)]
            if len(present) < config.min_rows:
                continue
            shares = dist.shares(present)
            psi = population_stability_index(shares, dist.proportions)
            if psi < config.psi_warning:
                continue
            findings.append(
                Finding(
                    kind="prediction_drift",
                    category=Category.MODEL,
                    symbol=symbol,
                    bar_ts=at.to_pydatetime(),
                    severity=_severity(psi, config.psi_critical),
                    statistic="psi",
                    value=psi,
                    threshold=config.psi_warning,
                    detail=(
                        f"{reference.family} P(up) of {symbol} over the last {len(present)} bars "
                        f"(mean {present.mean():.3f}) differs from its {reference.output_span} "
                        f"out-of-fold distribution (mean {dist.mean}): PSI {psi:.3g}"
                    ),
                    evidence={
                        "family": reference.family,
                        "window": _span(stamps.iloc[start:end]),
                        "missing": int(len(window) - len(present)),
                        "live_mean": _round(float(present.mean())),
                        "reference_mean": dist.mean,
                        "edges": list(dist.edges),
                        "live": _shares(shares),
                        "reference": list(dist.proportions),
                        "reference_span": reference.output_span,
                        "latest_p_up": [_round(float(v)) for v in present[-EVIDENCE_CAP:]],
                    },
                )
            )
    return findings


def _output_reference(reference: DriftReference, symbol: str) -> Distribution:
    reference.for_symbol(symbol)  # the typed error for a symbol not trained on
    return reference.output[symbol]


# --- calibration decay ---------------------------------------------------------------------------


def calibration_decay(
    predictions: pd.DataFrame,
    outcomes: pd.DataFrame,
    reference: DriftReference,
    *,
    config: CalibrationDecayConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """Brier and log loss on matured labels over the window vs the reported-span figures.

    ``predictions``: ``symbol``, ``ts`` (decision bar close), ``p_up``; ``outcomes``: ``symbol``,
    ``ts`` (the decision time the label belongs to), ``label_up`` (0/1) and ``known_at`` (when
    the label became known: the decision time plus the label horizon, `features.labels`). At a
    bar close ``t`` only pairs with ``known_at <= t`` count, the latest ``window`` of them.

    Statistic: the larger of the two one-sided z scores ``(live - ref) / se``, with
    ``se = sd_ref * sqrt(1 / n_live_eff + 1 / n_ref_eff)`` and ``n_eff = n / label_horizon``
    (consecutive labels share ``horizon - 1`` bars of their forward return). A metric alarms
    when its z >= ``z_warning`` and it is at least ``relative_margin`` above the reference.
    """
    config = config or CalibrationDecayConfig()
    _require(predictions, ("symbol", DECISION_TS, "p_up"), "predictions")
    _require(outcomes, ("symbol", DECISION_TS, "label_up", "known_at"), "outcomes")
    prediction_ts = _utc_times(predictions, DECISION_TS, "predictions")
    outcome_ts = _utc_times(outcomes, DECISION_TS, "outcomes")
    known_at = _utc_times(outcomes, "known_at", "outcomes")
    if (known_at < outcome_ts).any():
        raise DataValidationError("outcomes.known_at is before the decision time", field="known_at")
    labels = outcomes["label_up"]
    if labels.isna().any() or not labels.isin((0, 1)).all():
        raise DataValidationError("outcomes.label_up must be 0 or 1", field="label_up")
    pairs = predictions.assign(**{DECISION_TS: prediction_ts})[["symbol", DECISION_TS, "p_up"]]
    pairs = pairs.merge(
        outcomes.assign(**{DECISION_TS: outcome_ts, "known_at": known_at})[
            ["symbol", DECISION_TS, "label_up", "known_at"]
        ],
        on=["symbol", DECISION_TS],
        how="inner",
        validate="one_to_one",
    )
    pairs = pairs[pairs["p_up"].notna()]
    p_all = pairs["p_up"].to_numpy(dtype=np.float64)
    if not ((p_all >= 0.0) & (p_all <= 1.0)).all():
        raise DataValidationError("predictions.p_up must be in [0, 1]", field="p_up")
    pairs = pairs.sort_values(["symbol", "known_at", DECISION_TS])
    horizon = float(reference.label_horizon)
    findings: list[Finding] = []
    for symbol, rows in _symbols(pairs):
        reference.for_symbol(symbol)
        ref = reference.calibration[symbol]
        known = _ns(rows["known_at"])
        y = rows["label_up"].to_numpy(dtype=np.float64)
        p = rows["p_up"].to_numpy(dtype=np.float64)
        decided = rows[DECISION_TS].reset_index(drop=True)
        symbol_times = prediction_ts[predictions["symbol"] == symbol]
        for at in _evaluation_times(symbol_times, since):
            end = int(np.searchsorted(known, at.value, side="right"))
            start = max(0, end - config.window)
            n = end - start
            if n < config.min_pairs:
                continue
            brier = float(brier_losses(y[start:end], p[start:end]).mean())
            log_loss = float(log_losses(y[start:end], p[start:end]).mean())
            n_live, n_ref = max(n / horizon, 1.0), max(ref.n / horizon, 1.0)
            scale = math.sqrt(1.0 / n_live + 1.0 / n_ref)
            scores = {
                "brier": (brier, ref.brier, (brier - ref.brier) / (ref.brier_sd * scale)),
                "log_loss": (
                    log_loss,
                    ref.log_loss,
                    (log_loss - ref.log_loss) / (ref.log_loss_sd * scale),
                ),
            }
            alarming = {
                k: z
                for k, (live, base, z) in scores.items()
                if z >= config.z_warning and live >= base * (1.0 + config.relative_margin)
            }
            if not alarming:
                continue
            metric = max(alarming, key=lambda k: alarming[k])
            z = alarming[metric]
            live, base, _ = scores[metric]
            findings.append(
                Finding(
                    kind="calibration_decay",
                    category=Category.MODEL,
                    symbol=symbol,
                    bar_ts=at.to_pydatetime(),
                    severity=_severity(z, config.z_critical),
                    statistic=f"{metric}_excess_z",
                    value=z,
                    threshold=config.z_warning,
                    detail=(
                        f"{reference.family} {metric} of {symbol} over the last {n} matured "
                        f"decisions is {live:.4f}, {(live / base - 1.0):+.1%} vs {base:.4f} on "
                        f"the {reference.output_span} span (z {z:.2f})"
                    ),
                    evidence={
                        "family": reference.family,
                        "window": _span(decided.iloc[start:end]),
                        "labels_known_by": at.isoformat(),
                        "label_horizon": reference.label_horizon,
                        "metrics": {
                            k: {"live": _round(v[0]), "reference": v[1], "z": _round(v[2], 4)}
                            for k, v in scores.items()
                        },
                        "reference_n": ref.n,
                        "reference_span": reference.output_span,
                        "live_base_rate": _round(float(y[start:end].mean())),
                        "reference_base_rate": ref.base_rate,
                        "latest_p_up": [_round(float(v)) for v in p[start:end][-EVIDENCE_CAP:]],
                        "latest_label_up": [int(v) for v in y[start:end][-EVIDENCE_CAP:]],
                    },
                )
            )
    return findings


# --- decision mix drift --------------------------------------------------------------------------


def decision_categories(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Decision records (`Decision.as_record` form) as ``ts``, ``symbol``, ``category``.

    The category is the reason code of the first failed risk check (the gate's own order), else
    ``FLAT`` for a zero target position and ``POSITIONED`` otherwise: each decision is in
    exactly one category, as a test of homogeneity needs.
    """
    rows = []
    for record in records:
        try:
            failed = [c["reason_code"] for c in record["risk_checks"] if not c["passed"]]
            target = float(record["target_fraction"])
            rows.append(
                {
                    DECISION_TS: pd.Timestamp(record["ts"]),
                    "symbol": str(record["symbol"]),
                    "category": str(failed[0])
                    if failed
                    else (FLAT if target == 0.0 else POSITIONED),
                }
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataValidationError(
                f"decision record lacks or has a malformed {exc}", field="decision"
            ) from None
    frame = pd.DataFrame(rows, columns=[DECISION_TS, "symbol", "category"])
    if frame.empty:
        frame[DECISION_TS] = pd.Series([], dtype="datetime64[ns, UTC]")
        return frame
    frame[DECISION_TS] = pd.to_datetime(frame[DECISION_TS], utc=True)
    return frame


def decision_mix_drift(
    decisions: pd.DataFrame,
    *,
    config: DecisionMixConfig | None = None,
    since: datetime | None = None,
) -> list[Finding]:
    """The mix of decision categories in the last ``window_hours`` vs the ``reference_hours``
    before: chi-square test of homogeneity (scipy) and PSI over the categories.

    ``decisions``: ``ts`` (bar close, UTC) and ``category`` (`decision_categories`), all the
    account's symbols together (the finding has no symbol). Alarms when p < ``alpha`` and
    PSI >= ``psi_warning`` (decisions persist from bar to bar, so the test alone overstates
    its evidence; the PSI floor asks for a shift large enough to matter); critical at
    ``psi_critical``. Evidence: both windows' spans, counts and shares per category.
    """
    config = config or DecisionMixConfig()
    _require(decisions, (DECISION_TS, "category"), "decisions")
    times = _utc_times(decisions, DECISION_TS, "decisions")
    if decisions["category"].isna().any():
        raise DataValidationError("decisions.category has missing values", field="category")
    frame = decisions.assign(**{DECISION_TS: times}).sort_values(DECISION_TS)
    stamps = _ns(frame[DECISION_TS])
    categories = frame["category"].astype(str).to_numpy()
    window = pd.Timedelta(hours=config.window_hours).value
    before = pd.Timedelta(hours=config.reference_hours).value
    findings: list[Finding] = []
    for at in _evaluation_times(frame[DECISION_TS], since):
        t = at.value
        recent = (stamps > t - window) & (stamps <= t)
        past = (stamps > t - window - before) & (stamps <= t - window)
        if recent.sum() < config.min_decisions or past.sum() < config.min_decisions:
            continue
        names = sorted(set(categories[recent | past].tolist()))
        live = np.array([np.sum(categories[recent] == c) for c in names], dtype=np.float64)
        ref = np.array([np.sum(categories[past] == c) for c in names], dtype=np.float64)
        psi = population_stability_index(live / live.sum(), ref / ref.sum())
        if len(names) < 2:
            continue  # one category in both windows: nothing has moved
        chi2, p_value, _, _ = stats.chi2_contingency(np.vstack([live, ref]), correction=False)
        if not (p_value < config.alpha and psi >= config.psi_warning):
            continue
        findings.append(
            Finding(
                kind="decision_mix_drift",
                category=Category.MODEL,
                symbol=None,
                bar_ts=at.to_pydatetime(),
                severity=_severity(psi, config.psi_critical),
                statistic="psi",
                value=psi,
                threshold=config.psi_warning,
                detail=(
                    f"decision mix of the last {config.window_hours} h differs from the "
                    f"{config.reference_hours} h before (PSI {psi:.3g}, chi-square p {p_value:.2g}); "
                    + ", ".join(
                        f"{c} {a / live.sum():.0%} vs {b / ref.sum():.0%}"
                        for c, a, b in zip(names, live, ref, strict=True)
                    )
                ),
                evidence={
                    "window": _span(frame[DECISION_TS][recent]),
                    "reference_window": _span(frame[DECISION_TS][past]),
                    "categories": names,
                    "live_counts": [int(v) for v in live],
                    "reference_counts": [int(v) for v in ref],
                    "live_shares": _shares(live / live.sum()),
                    "reference_shares": _shares(ref / ref.sum()),
                    "chi2": _round(float(chi2), 6),
                    "p_value": _round(float(p_value), 4),
                    "alpha": config.alpha,
                },
            )
        )
    return findings


# --- the champion's reference --------------------------------------------------------------------


def load_drift_reference(
    client: MlflowClient, family: str, *, version: str | None = None
) -> DriftReference | None:
    """The drift reference of ``family``'s champion (or of ``version``), read through ``client``.

    ``client`` is an ``MlflowClient`` bound to explicit URIs (`serving.champions.registry_client`),
    so no process-wide MLflow state is read. None when there is no champion, or when the version
    was registered without a reference (before references were recorded: retrain it);
    ``ModelUnavailableError`` when the tag names an artifact that cannot be read.
    """
    from mlflow.exceptions import MlflowException

    model = REGISTERED_MODELS[family]
    try:
        found = (
            client.get_model_version(model, version)
            if version is not None
            else client.get_model_version_by_alias(model, CHAMPION)
        )
    except MlflowException:
        return None
    path = (found.tags or {}).get(ModelTag.DRIFT_REFERENCE)
    if not path:
        return None
    label = f"{model} version {found.version}"
    if not found.run_id:
        raise ModelUnavailableError(f"{label} has no run to read its drift reference from")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(client.download_artifacts(found.run_id, path, tmp))
            content = json.loads(local.read_text(encoding="utf-8"))
    except (MlflowException, OSError, ValueError) as exc:
        raise ModelUnavailableError(
            f"{label}: cannot read its drift reference {path!r} in run {found.run_id}: {exc}"
        ) from exc
    reference = DriftReference.from_json(content)
    if reference.family != family:
        raise DataValidationError(
            f"{label}: drift reference is for {reference.family!r}", field="family"
        )
    return reference
