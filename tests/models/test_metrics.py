"""Metrics against hand-computed answers on tiny arrays, and sanity on simulated data."""

from __future__ import annotations

import math

import numpy as np
import pytest

from models.metrics import (
    calibration_table,
    christoffersen_conditional_coverage,
    christoffersen_independence,
    direction_metrics,
    expected_calibration_error,
    kupiec_pof,
    mse,
    qlike,
    var_exceedances,
    volatility_metrics,
)
from sextant.errors import ConfigError, DataValidationError

# --- direction ----------------------------------------------------------------------------------


def test_direction_metrics_known_answers() -> None:
    y = [0, 0, 1, 1]
    p = [0.1, 0.4, 0.35, 0.8]
    ret = [-0.02, -0.01, 0.01, 0.03]

    m = direction_metrics(y, p, ret)

    assert m["auc"] == pytest.approx(0.75)  # 3 of 4 (up, down) pairs ordered correctly
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.9, 0.6, 0.35, 0.8])))
    assert m["brier"] == pytest.approx((0.01 + 0.16 + 0.4225 + 0.04) / 4)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["ic"] == pytest.approx(0.8)  # ranks (1,3,2,4) vs (1,2,3,4): 1 - 6*2/60
    assert m["ece"] == pytest.approx((0.1 + 0.4 + 0.65 + 0.2) / 4)  # one row per bin
    assert m["n"] == 4 and m["base_rate"] == 0.5


def test_perfect_probabilities_are_perfectly_scored() -> None:
    y = np.array([0, 1, 0, 1, 1])

    m = direction_metrics(y, y.astype(float), [-0.01, 0.02, -0.03, 0.01, 0.04])

    assert m["auc"] == 1.0 and m["accuracy"] == 1.0
    assert m["brier"] == 0.0 and m["ece"] == 0.0
    assert m["log_loss"] < 1e-10


def test_constant_probability_has_undefined_ic() -> None:
    m = direction_metrics([0, 1, 1, 0], [0.5] * 4, [-0.01, 0.02, 0.01, -0.02])

    assert math.isnan(m["ic"])
    assert m["auc"] == 0.5 and m["accuracy"] == 0.5  # a tie at 0.5 predicts down


def test_single_class_labels_are_rejected_clearly() -> None:
    with pytest.raises(DataValidationError, match=r"both classes.*all 3 labels are 1"):
        direction_metrics([1, 1, 1], [0.6, 0.7, 0.8], [0.01, 0.02, 0.03])


@pytest.mark.parametrize(
    ("y", "p", "ret", "match"),
    [
        ([0, 1, 2], [0.1, 0.2, 0.3], [0.0, 0.0, 0.0], "only 0"),
        ([0, 1], [0.1, 1.2], [0.0, 0.0], r"p_up must lie in \[0, 1\]"),
        ([0, 1], [0.1, float("nan")], [0.0, 0.0], "non-finite values, first at position 1"),
        ([0, 1], [0.1, 0.9], [0.0], "fwd_return has 1 values but y_true has 2"),
    ],
)
def test_bad_direction_inputs(y: list[float], p: list[float], ret: list[float], match: str) -> None:
    with pytest.raises(DataValidationError, match=match):
        direction_metrics(y, p, ret)


def test_calibration_table_bins_and_empty_bins() -> None:
    y = [0, 1, 1, 1, 0]
    p = [0.05, 0.15, 0.95, 1.0, 0.1]  # 0.1 opens bin 1; 1.0 closes the last bin

    table = calibration_table(y, p, bins=10)

    assert table["count"].tolist() == [1, 2, 0, 0, 0, 0, 0, 0, 0, 2]
    assert table.loc[1, "mean_p"] == pytest.approx(0.125)
    assert table.loc[1, "frac_up"] == pytest.approx(0.5)
    assert table.loc[9, "frac_up"] == 1.0
    assert np.isnan(table.loc[5, "mean_p"]) and np.isnan(table.loc[5, "frac_up"])
    assert table["lower"].iloc[3] == pytest.approx(0.3) and table["upper"].iloc[-1] == 1.0


def test_ece_weights_bins_by_count() -> None:
    ece = expected_calibration_error([0, 1, 1, 1], [0.05, 0.15, 0.95, 0.95])

    assert ece == pytest.approx((0.05 + 0.85 + 2 * 0.05) / 4)


def test_ece_of_calibrated_simulation_is_small() -> None:
    rng = np.random.default_rng(3)
    p = rng.uniform(0, 1, 20_000)
    y = (rng.uniform(0, 1, p.size) < p).astype(int)

    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_calibration_needs_a_bin() -> None:
    with pytest.raises(ConfigError, match="at least 1 bin"):
        calibration_table([0, 1], [0.2, 0.8], bins=0)


# --- volatility losses --------------------------------------------------------------------------


def test_qlike_known_value_and_minimum_at_truth() -> None:
    rv = np.array([1e-4, 4e-4, 0.0, 2.5e-5])
    truth = np.array([1e-4, 4e-4, 1e-5, 2.5e-5])

    assert qlike([1e-4], [2e-4]) == pytest.approx(math.log(2e-4) + 0.5)
    assert math.isfinite(qlike(rv, truth))  # a zero return does not break it
    assert qlike(rv[[0, 1, 3]], truth[[0, 1, 3]]) < qlike(rv[[0, 1, 3]], 1.1 * truth[[0, 1, 3]])
    assert qlike(rv[[0, 1, 3]], truth[[0, 1, 3]]) < qlike(rv[[0, 1, 3]], 0.9 * truth[[0, 1, 3]])


def test_mse_known_value() -> None:
    assert mse([1.0, 2.0, 3.0], [1.0, 1.0, 1.0]) == pytest.approx(5 / 3)


def test_variance_losses_reject_non_positive_forecasts() -> None:
    with pytest.raises(DataValidationError, match="forecast_var must be positive"):
        qlike([1e-4, 1e-4], [1e-4, 0.0])


# --- VaR backtests ------------------------------------------------------------------------------


def _chi2_1_sf(x: float) -> float:
    """Survival function of chi2 with 1 degree of freedom: P(Z^2 > x) = erfc(sqrt(x / 2))."""
    return math.erfc(math.sqrt(x / 2))


def test_var_exceedance_is_a_loss_beyond_the_threshold() -> None:
    hits = var_exceedances([-0.05, -0.01, 0.02, -0.03], 0.03)

    assert hits.tolist() == [True, False, False, False]


def test_var_must_be_a_positive_loss() -> None:
    with pytest.raises(DataValidationError, match="non-negative loss"):
        var_exceedances([-0.05, 0.01], [-0.03, -0.03])


def test_kupiec_known_answer_250_days_5_exceedances() -> None:
    hits = np.zeros(250, dtype=bool)
    hits[[3, 50, 120, 180, 240]] = True
    manual = -2 * (245 * math.log(0.99) + 5 * math.log(0.01)) + 2 * (
        245 * math.log(0.98) + 5 * math.log(0.02)
    )

    stat, p = kupiec_pof(hits, 0.01)

    assert stat == pytest.approx(manual, rel=1e-12)
    assert stat == pytest.approx(1.9568, abs=1e-4)
    assert p == pytest.approx(0.16185, abs=1e-5)


def test_kupiec_with_no_exceedances() -> None:
    stat, p = kupiec_pof(np.zeros(250, dtype=bool), 0.01)

    assert stat == pytest.approx(-2 * 250 * math.log(0.99))  # pi = 0: only the null term remains
    assert p == pytest.approx(_chi2_1_sf(stat), rel=1e-9)  # 5.025 -> 0.02498


def test_christoffersen_independence_is_zero_when_transitions_match() -> None:
    # n00=4, n01=2, n10=2, n11=1: pi01 = pi11 = pi = 1/3
    hits = np.array([0, 1, 1, 0, 0, 0, 1, 0, 0, 0], dtype=bool)

    stat, p = christoffersen_independence(hits)

    assert stat == pytest.approx(0.0, abs=1e-12) and p == pytest.approx(1.0)


def test_christoffersen_independence_known_answer_for_a_cluster() -> None:
    # n00=5, n01=1, n10=1, n11=2
    hits = np.array([0, 0, 0, 0, 1, 1, 1, 0, 0, 0], dtype=bool)
    log = math.log
    null = 6 * log(2 / 3) + 3 * log(1 / 3)
    alternative = 5 * log(5 / 6) + log(1 / 6) + log(1 / 3) + 2 * log(2 / 3)
    manual = -2 * (null - alternative)

    stat, p = christoffersen_independence(hits)
    cc_stat, cc_p = christoffersen_conditional_coverage(hits, 0.05)

    assert stat == pytest.approx(manual, rel=1e-12)
    assert p == pytest.approx(_chi2_1_sf(manual), rel=1e-9)
    assert cc_stat == pytest.approx(kupiec_pof(hits, 0.05)[0] + manual, rel=1e-12)
    assert cc_p == pytest.approx(math.exp(-cc_stat / 2), rel=1e-9)  # chi2(2) survival


def test_backtests_reject_non_boolean_input() -> None:
    with pytest.raises(DataValidationError, match="boolean"):
        kupiec_pof(np.array([0, 1, 0]), 0.01)
    with pytest.raises(ConfigError, match="alpha"):
        kupiec_pof(np.array([False, True]), 1.5)


def test_volatility_metrics_on_simulated_returns() -> None:
    rng = np.random.default_rng(11)
    variance = 1e-4 * np.exp(rng.normal(0, 0.5, 20_000))
    returns = rng.normal(0, np.sqrt(variance))
    var_99 = 2.3263478740408408 * np.sqrt(variance)  # normal 99% quantile

    good = volatility_metrics(returns, variance, var_99)
    bad = volatility_metrics(returns, variance / 4, var_99 / 2)

    assert good["var99_exceedance_rate"] == pytest.approx(0.01, abs=0.002)
    assert good["kupiec_p"] > 0.05 and good["christoffersen_p"] > 0.05
    assert bad["kupiec_p"] < 1e-6
    assert good["qlike"] < bad["qlike"] and good["mse"] < bad["mse"]
    assert good["var99_exceedances"] == pytest.approx(good["var99_exceedance_rate"] * 20_000)
