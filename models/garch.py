"""GARCH(1,1) family (plain or GJR, normal or Student-t innovations) fitted with ``arch``.

Model, per bar t with return r_t (log return, unscaled):

    r_t = mu + eps_t,   eps_t = sigma_t * z_t,   z_t i.i.d. with unit variance
    sigma2_{t+1} = omega + (alpha + gamma * 1[eps_t < 0]) * eps_t^2 + beta * sigma2_t

The mean is a constant rather than zero: hourly crypto returns have a small drift that a zero mean
would push into the variance, and one extra parameter costs nothing at these sample sizes.
``arch`` fits on ``scale * r`` (percent by default) because its optimizer struggles with variances
around 1e-5; every number this module hands out is converted back to unscaled return units, so a
conditional variance can be stored as a feature and fed to the ONNX recursion as is.

Only GARCH(1,1) is supported: its next variance depends on the latest return and variance alone,
which is what serving keeps as state (higher orders would need more lags in the online store).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, Self

import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import model_validator
from scipy import signal, stats

from sextant.config import PositiveFloat, SextantConfig, int_range
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError

__all__ = [
    "GarchConfig",
    "GarchFit",
    "GarchModel",
    "GarchParams",
    "GarchState",
    "arch_backcast",
    "filter_variance",
    "standardized_quantile",
    "value_at_risk",
]

log = logging.getLogger(__name__)

Distribution = Literal["normal", "t"]
FloatArray = npt.NDArray[np.float64]

# arch's backcast: EWMA (lambda 0.94) of the first 75 squared residuals; kept identical so the
# in-sample variance we filter equals arch's own.
_BACKCAST_DECAY = 0.94
_BACKCAST_SPAN = 75


class GarchConfig(SextantConfig):
    """Model choice: orders (1, 1 only), innovation distribution, GJR asymmetry, fitting scale."""

    p: int = 1  # ARCH order (arch's ``p``)
    q: int = 1  # GARCH order (arch's ``q``)
    dist: Distribution = "t"
    gjr: bool = False
    scale: PositiveFloat = 100.0  # returns are multiplied by this for the optimizer only
    # fewer returns than this are refused: the fit would be noise
    min_obs: Annotated[int, int_range(100)] = 500

    @model_validator(mode="after")
    def _garch_11(self) -> Self:
        if (self.p, self.q) != (1, 1):
            raise ConfigError(
                f"GarchConfig: only GARCH(1,1) is supported (its next variance needs only the "
                f"latest return and variance), got p={self.p}, q={self.q}"
            )
        return self


@dataclass(frozen=True, slots=True)
class GarchParams:
    """Fitted parameters in unscaled return units (``nu`` is infinite for normal innovations)."""

    mu: float
    omega: float
    alpha: float
    gamma: float
    beta: float
    nu: float

    @property
    def persistence(self) -> float:
        """alpha + gamma/2 + beta: below 1 means the variance reverts (symmetric innovations)."""
        return self.alpha + 0.5 * self.gamma + self.beta

    @property
    def unconditional_variance(self) -> float:
        """Long-run variance omega / (1 - persistence); infinite if the process is not stationary."""
        gap = 1.0 - self.persistence
        return self.omega / gap if gap > 0 else math.inf

    def next_variance(self, last_return: npt.ArrayLike, last_variance: npt.ArrayLike) -> FloatArray:
        """The one-step recursion, elementwise, in the operation order the ONNX graph uses."""
        eps = np.asarray(last_return, dtype=np.float64) - self.mu
        coef = np.where(eps < 0, self.alpha + self.gamma, self.alpha)
        result: FloatArray = (
            self.omega
            + coef * (eps * eps)
            + self.beta * np.asarray(last_variance, dtype=np.float64)
        )
        return result

    def as_dict(self) -> dict[str, float]:
        """Parameters by name, for logging."""
        return {
            "mu": self.mu,
            "omega": self.omega,
            "alpha": self.alpha,
            "gamma": self.gamma,
            "beta": self.beta,
            "nu": self.nu,
        }


@dataclass(frozen=True, slots=True)
class GarchState:
    """What the recursion needs to go on: the latest return and its conditional variance."""

    last_return: float
    last_variance: float


@dataclass(frozen=True)
class GarchFit:
    """A fitted GARCH model: parameters, fit diagnostics and the state at the end of the sample."""

    config: GarchConfig
    params: GarchParams
    n_obs: int
    loglikelihood: float  # of the scaled returns, as arch reports it
    fit_seconds: float
    backcast: float  # initial variance seed of the in-sample recursion, unscaled
    final_state: GarchState  # last training return and its conditional variance
    start: pd.Timestamp | None  # first/last index label of the training returns, if timestamps
    end: pd.Timestamp | None
    result: Any = field(repr=False, compare=False)  # arch's ARCHModelResult (scaled units)

    def conditional_variance(self, returns: pd.Series | npt.ArrayLike) -> FloatArray:
        """Filtered variance of each return given the earlier ones, seeded as arch seeds it."""
        return filter_variance(self.params, returns)

    def forecast_next(self, last_return: float, last_variance: float) -> float:
        """Next bar's variance from the latest return and its variance (unscaled units)."""
        return float(self.params.next_variance(last_return, last_variance))

    def var(self, level: float, variance: float) -> float:
        """One-step VaR at confidence ``level`` (0.99) as a positive loss, for a given variance."""
        return float(value_at_risk(self.params, level, variance))


class GarchModel:
    """Fits a GARCH(1,1) family member on a return series."""

    def __init__(self, config: GarchConfig | None = None) -> None:
        self.config = config if config is not None else GarchConfig()

    def fit(self, returns: pd.Series, *, origin: str | None = None) -> GarchFit:
        """Maximum-likelihood fit on ``returns`` (log returns, one per bar, oldest first)."""
        # arch pulls in matplotlib, which writes a font cache: import on use, not at import time
        from arch import arch_model
        from arch.utility.exceptions import StartingValueWarning

        cfg = self.config
        values = _checked_returns(returns, minimum=cfg.min_obs, origin=origin)
        scaled = values * cfg.scale
        backcast = arch_backcast(scaled)
        model = arch_model(
            scaled,
            mean="Constant",
            vol="GARCH",
            p=1,
            o=1 if cfg.gjr else 0,
            q=1,
            dist="t" if cfg.dist == "t" else "normal",
            rescale=False,  # we scale ourselves (config.scale); arch would otherwise warn
        )
        started = time.perf_counter()
        result = model.fit(disp="off", show_warning=False, backcast=backcast)
        if result.convergence_flag != 0:
            # SLSQP can stop next to the optimum ("positive directional derivative for
            # linesearch"); one restart from where it stopped settles it or confirms the failure.
            with warnings.catch_warnings():
                # a stop just outside the constraints makes arch fall back to its own start: fine
                warnings.simplefilter("ignore", StartingValueWarning)
                result = model.fit(
                    disp="off",
                    show_warning=False,
                    backcast=backcast,
                    starting_values=result.params.to_numpy(),
                    options={"maxiter": 1000},
                )
        elapsed = time.perf_counter() - started
        if result.convergence_flag != 0 and not _stalled_at_admissible_optimum(result, cfg):
            message = getattr(result.optimization_result, "message", "unknown")
            raise ModelUnavailableError(
                f"GARCH fit did not converge on {len(values)} returns "
                f"(optimizer flag {result.convergence_flag}: {message}; stopped at "
                f"{', '.join(f'{k}={v:.6g}' for k, v in result.params.items())})"
                + (f" | input={origin}" if origin else "")
            )
        named = result.params
        s2 = cfg.scale**2
        params = GarchParams(
            mu=float(named["mu"]) / cfg.scale,
            omega=float(named["omega"]) / s2,
            alpha=float(named["alpha[1]"]),
            gamma=float(named["gamma[1]"]) if cfg.gjr else 0.0,
            beta=float(named["beta[1]"]),
            nu=float(named["nu"]) if cfg.dist == "t" else math.inf,
        )
        last_sigma = float(result.conditional_volatility[-1])
        index = returns.index
        timed = isinstance(index, pd.DatetimeIndex)
        return GarchFit(
            config=cfg,
            params=params,
            n_obs=len(values),
            loglikelihood=float(result.loglikelihood),
            fit_seconds=elapsed,
            backcast=backcast / s2,
            final_state=GarchState(float(values[-1]), last_sigma * last_sigma / s2),
            start=pd.Timestamp(index[0]) if timed else None,
            end=pd.Timestamp(index[-1]) if timed else None,
            result=result,
        )


_SLSQP_LINESEARCH_STALL = 8  # "Positive directional derivative for linesearch"
# how far past the integrated boundary (alpha + beta + gamma / 2 = 1) a stalled fit may stop: BTC
# hourly returns of 2022-2023 without the returns that span candle gaps stalled at 1.0001017
# (make bench, fold 3); a one-step forecast is unaffected by a persistence that close to 1
PERSISTENCE_TOLERANCE = 1e-3


def _stalled_at_admissible_optimum(result: Any, cfg: GarchConfig) -> bool:
    """SLSQP's mode 8 after a restart means no descent direction is left: accept it when the
    parameters are admissible (positive variance intercept, non-negative coefficients,
    persistence at most 1, Student-t with finite variance); any other failure is not accepted."""
    if result.convergence_flag != _SLSQP_LINESEARCH_STALL:
        return False
    named = result.params
    omega, alpha, beta = float(named["omega"]), float(named["alpha[1]"]), float(named["beta[1]"])
    gamma = float(named["gamma[1]"]) if cfg.gjr else 0.0
    nu_ok = cfg.dist != "t" or float(named["nu"]) > 2.05
    # hourly crypto returns sit on the integrated (IGARCH) boundary: persistence 1 within the
    # optimizer's tolerance is admissible for one-step forecasts
    admissible = (
        omega > 0
        and min(alpha, beta, gamma) >= 0
        and alpha + beta + gamma / 2 <= 1 + PERSISTENCE_TOLERANCE
        and nu_ok
    )
    if admissible:
        log.warning("GARCH optimizer stalled at an admissible point (SLSQP mode 8); accepting it")
    return admissible


def arch_backcast(returns: npt.ArrayLike) -> float:
    """arch's seed for the variance recursion: EWMA of the first 75 squared demeaned returns."""
    r = np.asarray(returns, dtype=np.float64)
    resid = r - r.mean()  # arch demeans with its starting values, i.e. the sample mean
    span = min(_BACKCAST_SPAN, len(resid))
    weights = _BACKCAST_DECAY ** np.arange(span)
    weights = weights / weights.sum()
    return float(np.sum(resid[:span] ** 2 * weights))


def filter_variance(
    params: GarchParams, returns: pd.Series | npt.ArrayLike, *, state: GarchState | None = None
) -> FloatArray:
    """Conditional variance of each return given the earlier ones, without refitting.

    ``state=None`` seeds the recursion as arch does in-sample (backcast of these returns), so on
    the training returns this equals arch's conditional variance. With ``state`` (e.g. the fit's
    ``final_state``) the recursion continues from it: element 0 is the forecast made from the
    state, element i uses returns up to i - 1. This is the out-of-sample walk-forward forecast.
    """
    r = _finite_array(returns, "returns")
    if r.size == 0:
        return np.empty(0, dtype=np.float64)
    p = params
    seed = np.empty(r.size, dtype=np.float64)
    if state is None:
        backcast = arch_backcast(r)
        seed[0] = p.omega + p.alpha * backcast + p.gamma * 0.5 * backcast + p.beta * backcast
    else:
        seed[0] = float(p.next_variance(state.last_return, state.last_variance))
    eps = r[:-1] - p.mu
    seed[1:] = p.omega + np.where(eps < 0, p.alpha + p.gamma, p.alpha) * (eps * eps)
    # sigma2[i] = seed[i] + beta * sigma2[i - 1]: a first-order linear filter
    variance: FloatArray = np.asarray(signal.lfilter([1.0], [1.0, -p.beta], seed), dtype=np.float64)
    return variance


def standardized_quantile(params: GarchParams, level: float) -> float:
    """Quantile of the unit-variance innovation: Student-t scaled by sqrt((nu - 2) / nu), or normal."""
    if not 0.5 < level < 1:
        raise ConfigError(f"VaR level is a confidence in (0.5, 1), e.g. 0.99; got {level}")
    if math.isinf(params.nu):
        return float(stats.norm.ppf(level))
    return float(stats.t.ppf(level, params.nu) * math.sqrt((params.nu - 2.0) / params.nu))


def value_at_risk(params: GarchParams, level: float, variance: npt.ArrayLike) -> FloatArray:
    """One-step VaR at confidence ``level`` as a positive loss: sigma * q_level - mu."""
    v = np.asarray(variance, dtype=np.float64)
    if np.any(~np.isfinite(v) | (v < 0)):
        raise DataValidationError("variance must be finite and non-negative", field="variance")
    loss: FloatArray = np.sqrt(v) * standardized_quantile(params, level) - params.mu
    return loss


def _checked_returns(returns: pd.Series, *, minimum: int, origin: str | None) -> FloatArray:
    """The returns as float64, refusing short or non-finite input with the offending labels."""
    if len(returns) < minimum:
        raise DataValidationError(
            f"GARCH needs at least {minimum} returns, got {len(returns)}",
            origin=origin,
            field="returns",
        )
    values = returns.to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        raise DataValidationError(
            f"{bad.size} non-finite returns (NaN or infinite), first at {returns.index[bad[0]]}",
            origin=origin,
            field="returns",
        )
    if np.ptp(values) == 0:
        raise DataValidationError(
            f"all {len(values)} returns are equal: no variance to model",
            origin=origin,
            field="returns",
        )
    return values


def _finite_array(values: pd.Series | npt.ArrayLike, name: str) -> FloatArray:
    array = (
        values.to_numpy(dtype=np.float64)
        if isinstance(values, pd.Series)
        else np.asarray(values, dtype=np.float64)
    )
    if array.ndim != 1:
        raise DataValidationError(
            f"{name} must be one-dimensional, got shape {array.shape}", field=name
        )
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise DataValidationError(
            f"{name} has {bad.size} non-finite values, first at position {int(bad[0])}", field=name
        )
    return array
