"""GARCH: parameter recovery on simulated data, parity with arch, VaR coverage, real BTC smoke."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from models.garch import (
    GarchConfig,
    GarchModel,
    GarchParams,
    GarchState,
    filter_variance,
    value_at_risk,
)
from models.metrics import kupiec_pof, var_exceedances
from sextant.errors import ConfigError, DataValidationError, ModelUnavailableError
from tests.models.conftest import TRUE_GJR, TRUE_T, FittedSample, simulate_garch

# Recovery bands for 16,000 bars. Across simulation seeds 0-7 the estimates spread over
# alpha 0.070-0.086, beta 0.896-0.915, omega 0.72e-6-1.09e-6, nu 5.6-6.5, alpha+beta 0.977-0.985,
# gamma (GJR) 0.087-0.110: the bands are about twice those spreads around the true values.


def test_recovers_simulated_garch_t_parameters(sim_t: FittedSample) -> None:
    p = sim_t.fit.params

    assert p.alpha == pytest.approx(TRUE_T.alpha, abs=0.02)
    assert p.beta == pytest.approx(TRUE_T.beta, abs=0.03)
    assert p.persistence == pytest.approx(TRUE_T.persistence, abs=0.01)
    assert 0.5 * TRUE_T.omega < p.omega < 2 * TRUE_T.omega
    assert 4.5 < p.nu < 8.0
    assert p.mu == pytest.approx(TRUE_T.mu, abs=2e-4)
    assert p.gamma == 0.0
    assert sim_t.fit.n_obs == 16_000
    assert sim_t.fit.start == pd.Timestamp("2021-01-01", tz="UTC")


def test_gjr_recovers_the_asymmetry(sim_gjr: FittedSample) -> None:
    p = sim_gjr.fit.params

    assert p.gamma == pytest.approx(TRUE_GJR.gamma, abs=0.04)
    assert p.alpha == pytest.approx(TRUE_GJR.alpha, abs=0.02)
    assert p.beta == pytest.approx(TRUE_GJR.beta, abs=0.03)
    assert p.persistence == pytest.approx(TRUE_GJR.persistence, abs=0.01)


@pytest.mark.parametrize("sample", ["sim_t", "sim_gjr", "btc_hourly"])
def test_forecast_next_equals_arch_one_step_forecast(
    sample: str, request: pytest.FixtureRequest
) -> None:
    fitted: FittedSample = request.getfixturevalue(sample)
    fit = fitted.fit
    arch_next = fit.result.forecast(horizon=1, reindex=False).variance.iloc[-1, 0]

    ours = fit.forecast_next(fit.final_state.last_return, fit.final_state.last_variance)

    assert ours == pytest.approx(arch_next / fit.config.scale**2, rel=1e-9)


@pytest.mark.parametrize("sample", ["sim_t", "sim_gjr"])
def test_in_sample_variance_equals_arch_in_unscaled_units(
    sample: str, request: pytest.FixtureRequest
) -> None:
    fitted: FittedSample = request.getfixturevalue(sample)
    arch_variance = np.asarray(fitted.fit.result.conditional_volatility) ** 2 / 100.0**2

    ours = fitted.fit.conditional_variance(fitted.train)

    np.testing.assert_allclose(ours, arch_variance, rtol=1e-9, atol=0)
    assert fitted.fit.final_state.last_variance == pytest.approx(ours[-1], rel=1e-12)


def test_filter_variance_continues_from_a_state(sim_gjr: FittedSample) -> None:
    params = sim_gjr.fit.params
    returns = sim_gjr.returns.to_numpy()
    whole = filter_variance(params, returns)
    k = 12_345

    rest = filter_variance(params, returns[k:], state=GarchState(returns[k - 1], whole[k - 1]))

    np.testing.assert_allclose(rest, whole[k:], rtol=1e-12)
    assert rest[1] == pytest.approx(
        params.omega
        + (params.alpha + params.gamma * (returns[k] < params.mu)) * (returns[k] - params.mu) ** 2
        + params.beta * rest[0],
        rel=1e-14,
    )


def test_var_uses_the_unit_variance_student_t_quantile(sim_t: FittedSample) -> None:
    fit = sim_t.fit
    nu, mu = fit.params.nu, fit.params.mu
    variance = 4e-5

    var99 = fit.var(0.99, variance)

    expected = math.sqrt(variance) * stats.t.ppf(0.99, nu) * math.sqrt((nu - 2) / nu) - mu
    assert var99 == pytest.approx(expected, rel=1e-12)
    # heavier tails than the normal at 99%, for the same variance
    assert var99 + mu > math.sqrt(variance) * stats.norm.ppf(0.99) * 0.95
    assert value_at_risk(fit.params, 0.99, [variance, 4 * variance]) == pytest.approx(
        [var99, 2 * var99 + mu]
    )


def test_var_level_is_a_confidence() -> None:
    params = GarchParams(mu=0.0, omega=1e-6, alpha=0.05, gamma=0.0, beta=0.9, nu=math.inf)

    assert value_at_risk(params, 0.99, 1.0) == pytest.approx(stats.norm.ppf(0.99))
    with pytest.raises(ConfigError, match=r"confidence in \(0.5, 1\)"):
        value_at_risk(params, 0.01, 1.0)


def test_out_of_sample_var_exceedances_near_one_percent(sim_t: FittedSample) -> None:
    fit = sim_t.fit
    variance = filter_variance(fit.params, sim_t.test, state=fit.final_state)

    hits = var_exceedances(sim_t.test.to_numpy(), value_at_risk(fit.params, 0.99, variance))

    assert 0.005 <= hits.mean() <= 0.016  # 4,000 bars: 40 expected, sd about 6
    assert kupiec_pof(hits, 0.01)[1] > 0.01


def test_normal_innovations_fit_without_nu() -> None:
    returns = simulate_garch(TRUE_T, 3_000, seed=1)

    fit = GarchModel(GarchConfig(dist="normal")).fit(returns)

    assert math.isinf(fit.params.nu)
    assert 0 < fit.params.alpha < 0.3 and 0.5 < fit.params.beta < 1


def test_real_btc_hourly_smoke(btc_hourly: FittedSample) -> None:
    fit = btc_hourly.fit
    variance = filter_variance(fit.params, btc_hourly.test, state=fit.final_state)
    hits = var_exceedances(btc_hourly.test.to_numpy(), value_at_risk(fit.params, 0.99, variance))

    assert fit.params.nu > 2
    assert fit.params.alpha > 0 and fit.params.beta > 0
    # Hourly BTC sits on arch's stationarity bound alpha + beta <= 1 (an integrated GARCH,
    # 1 + 5e-6 here: SLSQP's constraint tolerance); one-step forecasts are still well defined.
    assert fit.params.alpha + fit.params.beta < 1 + 1e-5
    assert 0.002 < hits.mean() < 0.03  # 1,997 held-out hours
    assert (btc_hourly.fit.conditional_variance(btc_hourly.train) > 0).all()


def test_too_few_returns_are_refused() -> None:
    returns = simulate_garch(TRUE_T, 499, seed=2)

    with pytest.raises(
        DataValidationError, match=r"at least 500 returns, got 499.*input=BTC/USDT 1h"
    ):
        GarchModel().fit(returns, origin="BTC/USDT 1h")


def test_non_finite_returns_are_refused_with_their_timestamp() -> None:
    returns = simulate_garch(TRUE_T, 600, seed=3)
    returns.iloc[[100, 200]] = [np.nan, np.inf]

    with pytest.raises(
        DataValidationError, match=r"2 non-finite returns.*first at 2021-01-05 04:00:00"
    ):
        GarchModel().fit(returns)


def test_constant_returns_are_refused() -> None:
    returns = pd.Series(np.zeros(600))

    with pytest.raises(DataValidationError, match="all 600 returns are equal"):
        GarchModel().fit(returns)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"p": 2}, r"only GARCH\(1,1\).*p=2, q=1"),
        ({"scale": 0.0}, "scale"),
        ({"dist": "skewt"}, "dist"),
    ],
)
def test_config_is_strict(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        GarchConfig(**kwargs)  # type: ignore[arg-type]


def test_a_fit_that_does_not_converge_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from arch.univariate.base import ARCHModel

    real_fit = ARCHModel.fit

    def two_iterations(self: ARCHModel, *args: object, **kwargs: object) -> object:
        # every attempt, the restart included, gets two optimizer iterations
        return real_fit(self, *args, **{**kwargs, "options": {"maxiter": 2}})  # type: ignore[arg-type]

    monkeypatch.setattr(ARCHModel, "fit", two_iterations)

    with pytest.raises(ModelUnavailableError, match=r"did not converge on 1000 returns.*ETH/USDT"):
        GarchModel().fit(simulate_garch(TRUE_T, 1_000, seed=4), origin="ETH/USDT")


class _Stopped:
    """What `_stalled_at_admissible_optimum` reads of an arch result."""

    def __init__(self, flag: int, **params: float) -> None:
        self.convergence_flag = flag
        self.params = pd.Series(params)


@pytest.mark.parametrize(
    ("flag", "alpha", "beta", "nu", "accepted"),
    [
        (8, 0.0984447, 0.901658, 3.02, True),  # the stall make bench met: persistence 1.0001017
        (8, 0.10, 0.91, 5.0, False),  # persistence 1.01: explosive, refused
        (8, 0.05, 0.90, 2.0, False),  # Student t without a finite variance
        (9, 0.05, 0.90, 5.0, False),  # any other optimizer failure
    ],
)
def test_only_an_admissible_linesearch_stall_is_accepted(
    flag: int, alpha: float, beta: float, nu: float, accepted: bool
) -> None:
    from models.garch import _stalled_at_admissible_optimum

    stopped = _Stopped(flag, mu=0.0, omega=0.003, **{"alpha[1]": alpha, "beta[1]": beta}, nu=nu)
    assert _stalled_at_admissible_optimum(stopped, GarchConfig()) is accepted
