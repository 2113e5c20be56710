"""Evaluation metrics: direction (classification + calibration) and volatility (loss + VaR backtests).

Conventions:

* ``p_up`` is the predicted probability that the forward return is positive; the predicted class
  is "up" when ``p_up > 0.5`` (a tie predicts "down", as scikit-learn's argmax does).
* Calibration bins are equal-width on [0, 1]; bin ``i`` is ``[i/bins, (i+1)/bins)``, the last one
  closed, and ECE is the count-weighted mean of ``|observed frequency - mean probability|``.
* A VaR is a positive loss threshold in return units (``var_99 = 0.03`` means a 3% loss); a return
  exceeds it when ``return < -var``. ``alpha`` is the expected exceedance rate (0.01 for a 99% VaR).
* Realized variance is the squared (not demeaned) return of the bar.
"""

# scipy and scikit-learn ship no type stubs and pyproject's mypy override does not list them yet
from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd
from scipy import stats
from scipy.special import xlogy

from sextant.errors import ConfigError, DataValidationError

__all__ = [
    "calibration_table",
    "christoffersen_conditional_coverage",
    "christoffersen_independence",
    "direction_metrics",
    "expected_calibration_error",
    "kupiec_pof",
    "mse",
    "qlike",
    "var_exceedances",
    "volatility_metrics",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]


# --- direction --------------------------------------------------------------------------------


def direction_metrics(
    y_true: npt.ArrayLike, p_up: npt.ArrayLike, fwd_return: npt.ArrayLike
) -> dict[str, float]:
    """AUC, log loss, Brier, accuracy, IC (Spearman of p_up vs forward return) and ECE."""
    # scikit-learn sets KMP_* environment variables when imported: only import on use
    from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score

    y, p = _labels_and_probabilities(y_true, p_up)
    ret = _finite(fwd_return, "fwd_return")
    if len(ret) != len(y):
        raise DataValidationError(
            f"fwd_return has {len(ret)} values but y_true has {len(y)}", field="fwd_return"
        )
    return {
        "n": float(len(y)),
        "base_rate": float(y.mean()),
        "auc": float(roc_auc_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "accuracy": float(accuracy_score(y, (p > 0.5).astype(np.int64))),
        "ic": _spearman(p, ret),
        "ece": expected_calibration_error(y, p),
    }


def calibration_table(y_true: npt.ArrayLike, p_up: npt.ArrayLike, bins: int = 10) -> pd.DataFrame:
    """Per equal-width probability bin: bounds, count, mean probability, observed up frequency."""
    if bins < 1:
        raise ConfigError(f"calibration needs at least 1 bin, got {bins}")
    y, p = _labels_and_probabilities(y_true, p_up)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):  # empty bins give NaN means, on purpose
        mean_p = np.bincount(which, weights=p, minlength=bins) / count
        frac_up = np.bincount(which, weights=y.astype(np.float64), minlength=bins) / count
    return pd.DataFrame(
        {
            "bin": np.arange(bins),
            "lower": edges[:-1],
            "upper": edges[1:],
            "count": count.astype(np.int64),
            "mean_p": mean_p,
            "frac_up": frac_up,
            "abs_gap": np.abs(frac_up - mean_p),
        }
    )


def expected_calibration_error(y_true: npt.ArrayLike, p_up: npt.ArrayLike, bins: int = 10) -> float:
    """Count-weighted mean absolute gap between observed frequency and mean probability per bin."""
    table = calibration_table(y_true, p_up, bins)
    filled = table[table["count"] > 0]
    weights = filled["count"].to_numpy(dtype=np.float64)
    return float(np.sum(weights * filled["abs_gap"].to_numpy()) / weights.sum())


# --- volatility -------------------------------------------------------------------------------


def qlike(realized_var: npt.ArrayLike, forecast_var: npt.ArrayLike) -> float:
    """Mean QLIKE loss ``log(f) + rv / f``; lower is better, minimized per row at ``f = rv``.

    This form differs from Patton's ``rv/f - log(rv/f) - 1`` by a term in ``rv`` only (same
    ranking of forecasts) and stays finite when a bar's return, hence ``rv``, is exactly zero.
    """
    rv, f = _variances(realized_var, forecast_var)
    return float(np.mean(np.log(f) + rv / f))


def mse(realized_var: npt.ArrayLike, forecast_var: npt.ArrayLike) -> float:
    """Mean squared error of the variance forecast."""
    rv, f = _variances(realized_var, forecast_var)
    return float(np.mean((rv - f) ** 2))


def var_exceedances(returns: npt.ArrayLike, var_level: npt.ArrayLike) -> BoolArray:
    """True where the return is a loss beyond the VaR (``return < -var``; VaR is a positive loss)."""
    r = _finite(returns, "returns")
    var = _finite(var_level, "var_level")
    if var.size not in (1, r.size):
        raise DataValidationError(
            f"var_level has {var.size} values but returns has {r.size}", field="var_level"
        )
    if np.any(var < 0):
        raise DataValidationError(
            "VaR must be a non-negative loss threshold (e.g. 0.03 for a 3% loss)", field="var_level"
        )
    hits: BoolArray = r < -var
    return hits


def kupiec_pof(exceedances: npt.ArrayLike, alpha: float) -> tuple[float, float]:
    """Kupiec proportion-of-failures LR test that the exceedance rate is ``alpha``: (stat, p)."""
    hits = _hits(exceedances, minimum=1)
    _check_alpha(alpha)
    n, x = len(hits), int(hits.sum())
    pi = x / n
    null = xlogy(n - x, 1 - alpha) + xlogy(x, alpha)
    alternative = xlogy(n - x, 1 - pi) + xlogy(x, pi)
    stat = max(float(-2.0 * (null - alternative)), 0.0)
    return stat, float(stats.chi2.sf(stat, df=1))


def christoffersen_independence(exceedances: npt.ArrayLike) -> tuple[float, float]:
    """Christoffersen LR test that exceedances do not cluster (first-order Markov): (stat, p)."""
    hits = _hits(exceedances, minimum=2)
    prev, curr = hits[:-1], hits[1:]
    n00 = int(np.sum(~prev & ~curr))
    n01 = int(np.sum(~prev & curr))
    n10 = int(np.sum(prev & ~curr))
    n11 = int(np.sum(prev & curr))
    pi01 = n01 / (n00 + n01) if n00 + n01 else 0.0
    pi11 = n11 / (n10 + n11) if n10 + n11 else 0.0
    pi = (n01 + n11) / (n00 + n01 + n10 + n11)
    null = xlogy(n00 + n10, 1 - pi) + xlogy(n01 + n11, pi)
    alternative = xlogy(n00, 1 - pi01) + xlogy(n01, pi01) + xlogy(n10, 1 - pi11) + xlogy(n11, pi11)
    stat = max(float(-2.0 * (null - alternative)), 0.0)
    return stat, float(stats.chi2.sf(stat, df=1))


def christoffersen_conditional_coverage(
    exceedances: npt.ArrayLike, alpha: float
) -> tuple[float, float]:
    """Christoffersen conditional coverage: Kupiec + independence statistics, chi2(2): (stat, p)."""
    pof, _ = kupiec_pof(exceedances, alpha)
    ind, _ = christoffersen_independence(exceedances)
    stat = pof + ind
    return stat, float(stats.chi2.sf(stat, df=2))


def volatility_metrics(
    returns: npt.ArrayLike, forecast_var: npt.ArrayLike, var_99: npt.ArrayLike
) -> dict[str, float]:
    """QLIKE and MSE against squared returns, and the 99% VaR backtests (Kupiec, Christoffersen)."""
    r = _finite(returns, "returns")
    f = _finite(forecast_var, "forecast_var")
    if len(f) != len(r):
        raise DataValidationError(
            f"forecast_var has {len(f)} values but returns has {len(r)}", field="forecast_var"
        )
    hits = var_exceedances(r, var_99)
    _, kupiec_p = kupiec_pof(hits, 0.01)
    _, independence_p = christoffersen_independence(hits)
    _, coverage_p = christoffersen_conditional_coverage(hits, 0.01)
    realized = r**2
    return {
        "n": float(len(r)),
        "qlike": qlike(realized, f),
        "mse": mse(realized, f),
        "var99_exceedances": float(hits.sum()),
        "var99_exceedance_rate": float(hits.mean()),
        "kupiec_p": kupiec_p,
        "christoffersen_p": coverage_p,
        "christoffersen_independence_p": independence_p,
    }


# --- input checks -----------------------------------------------------------------------------


def _finite(values: npt.ArrayLike, name: str) -> FloatArray:
    """A 1-D float array without NaN or infinities."""
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        array = array.reshape(1)
    if array.ndim != 1:
        raise DataValidationError(
            f"{name} must be one-dimensional, got shape {array.shape}", field=name
        )
    if array.size == 0:
        raise DataValidationError(f"{name} is empty", field=name)
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise DataValidationError(
            f"{name} has {bad.size} non-finite values, first at position {int(bad[0])}", field=name
        )
    return array


def _labels_and_probabilities(
    y_true: npt.ArrayLike, p_up: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], FloatArray]:
    """Binary labels holding both classes, and probabilities in [0, 1] of the same length."""
    y_float = _finite(y_true, "y_true")
    p = _finite(p_up, "p_up")
    if len(p) != len(y_float):
        raise DataValidationError(
            f"p_up has {len(p)} values but y_true has {len(y_float)}", field="p_up"
        )
    if not np.all((y_float == 0) | (y_float == 1)):
        raise DataValidationError("y_true must hold only 0 (down) and 1 (up)", field="y_true")
    classes = np.unique(y_float)
    if len(classes) < 2:
        raise DataValidationError(
            f"direction metrics need both classes in y_true, but all {len(y_float)} labels are "
            f"{int(classes[0])}: AUC, log loss and calibration are undefined",
            field="y_true",
        )
    if np.any((p < 0) | (p > 1)):
        raise DataValidationError("p_up must lie in [0, 1]", field="p_up")
    return y_float.astype(np.int64), p


def _spearman(a: FloatArray, b: FloatArray) -> float:
    """Spearman rank correlation; NaN when either side is constant (the correlation is undefined)."""
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return math.nan
    return float(stats.spearmanr(a, b).statistic)


def _variances(
    realized_var: npt.ArrayLike, forecast_var: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    rv = _finite(realized_var, "realized_var")
    f = _finite(forecast_var, "forecast_var")
    if len(rv) != len(f):
        raise DataValidationError(
            f"forecast_var has {len(f)} values but realized_var has {len(rv)}", field="forecast_var"
        )
    if np.any(rv < 0):
        raise DataValidationError("realized_var must not be negative", field="realized_var")
    if np.any(f <= 0):
        raise DataValidationError("forecast_var must be positive", field="forecast_var")
    return rv, f


def _hits(exceedances: npt.ArrayLike, *, minimum: int) -> BoolArray:
    hits = np.asarray(exceedances)
    if hits.ndim != 1 or hits.dtype != np.bool_:
        raise DataValidationError(
            f"exceedances must be a 1-D boolean array, got dtype {hits.dtype} shape {hits.shape}",
            field="exceedances",
        )
    if len(hits) < minimum:
        raise DataValidationError(
            f"the test needs at least {minimum} observations, got {len(hits)}", field="exceedances"
        )
    return hits


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha (expected exceedance rate) must lie in (0, 1), got {alpha}")
