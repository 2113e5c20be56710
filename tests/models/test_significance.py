"""Significance tests: exact AUC arithmetic, false-pass rate under no skill, power with skill."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.signal import lfilter
from sklearn.metrics import roc_auc_score

from models.significance import (
    TestResult,
    auc_difference_test,
    default_block,
    diebold_mariano_test,
    weighted_auc,
)
from sextant.errors import ConfigError, DataValidationError

HORIZON = 4  # label horizon in bars, as the direction labels use
N_SYMBOLS = 2
REPS = 200
NOMINAL = 0.05
# a false-pass rate above this is a failure: nominal + 3 binomial standard errors at REPS
TOLERANCE = NOMINAL + 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / REPS)


def no_skill_rows(
    rng: np.random.Generator, n_times: int, skill: float = 0.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Labels, two scores and decision-time groups, shaped like pooled out-of-fold direction rows.

    Labels are the sign of the sum of the next HORIZON returns (overlapping, so serially
    dependent) of two symbols whose returns correlate 0.7, stacked time-major. Scores are
    persistent AR(0.95) noise independent of the labels; ``skill`` shifts score A up on up rows.
    """
    z = rng.normal(size=(n_times + HORIZON, N_SYMBOLS))
    z[:, 1] = 0.7 * z[:, 0] + math.sqrt(1 - 0.7**2) * z[:, 1]
    cumulative = np.cumsum(z, axis=0)
    y = (cumulative[HORIZON:] - cumulative[:-HORIZON] > 0).astype(np.int64)
    a, b = (
        lfilter(
            [math.sqrt(1 - 0.95**2)], [1.0, -0.95], rng.normal(size=(n_times, N_SYMBOLS)), axis=0
        )
        for _ in range(2)
    )
    a = a + skill * y
    groups = np.repeat(np.arange(n_times), N_SYMBOLS)
    return y.ravel(), a.ravel(), b.ravel(), groups


def ma_losses(rng: np.random.Generator, n: int) -> np.ndarray:
    """Squared 4-term moving sums: chi-square-like losses autocorrelated over 3 lags."""
    e = rng.normal(size=n + HORIZON - 1)
    return np.convolve(e, np.ones(HORIZON) / 2.0, mode="valid") ** 2


# --- AUC arithmetic -----------------------------------------------------------------------------


def test_weighted_auc_matches_sklearn_with_ties() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 500)
    sign_score = rng.integers(-1, 2, 500).astype(float)  # three levels: most pairs tie
    rounded_score = np.round(rng.normal(size=500) + 0.3 * y, 1)

    assert weighted_auc(y, sign_score) == pytest.approx(roc_auc_score(y, sign_score), abs=1e-12)
    assert weighted_auc(y, rounded_score) == pytest.approx(
        roc_auc_score(y, rounded_score), abs=1e-12
    )


def test_integer_weights_equal_repeated_rows() -> None:
    rng = np.random.default_rng(2)
    y = rng.integers(0, 2, 400)
    score = rng.integers(-1, 2, 400).astype(float) + 0.2 * y
    weights = rng.integers(0, 4, 400)

    repeated = roc_auc_score(np.repeat(y, weights), np.repeat(score, weights))

    assert weighted_auc(y, score, weights) == pytest.approx(repeated, abs=1e-12)


def test_estimate_is_the_full_sample_auc_difference() -> None:
    rng = np.random.default_rng(3)
    y, a, b, groups = no_skill_rows(rng, 500, skill=0.3)

    vs_half = auc_difference_test(y, a, None, groups=groups, horizon=HORIZON, n_boot=100)
    paired = auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, n_boot=100)

    assert vs_half.estimate == pytest.approx(roc_auc_score(y, a) - 0.5, abs=1e-12)
    assert paired.estimate == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b), abs=1e-12)
    assert vs_half.n == len(y) and vs_half.bound <= vs_half.estimate


def test_identical_scores_never_pass() -> None:
    rng = np.random.default_rng(4)
    y, a, _, groups = no_skill_rows(rng, 500, skill=1.0)

    result = auc_difference_test(y, a, a.copy(), groups=groups, horizon=HORIZON, n_boot=100)

    assert result.estimate == 0.0 and result.bound == 0.0
    assert not result.passed and result.p_value == 1.0


# --- AUC false-pass rate and power ------------------------------------------------------------


def test_auc_false_pass_rate_under_no_skill() -> None:
    # 200 repetitions of 1,000 decision times x 2 symbols, persistent scores, overlapping labels
    rng = np.random.default_rng(20240611)
    vs_half = paired = 0
    for rep in range(REPS):
        y, a, b, groups = no_skill_rows(rng, 1_000)
        vs_half += auc_difference_test(
            y, a, None, groups=groups, horizon=HORIZON, n_boot=200, seed=rep
        ).passed
        paired += auc_difference_test(
            y, a, b, groups=groups, horizon=HORIZON, n_boot=200, seed=rep
        ).passed

    assert vs_half / REPS <= TOLERANCE
    assert paired / REPS <= TOLERANCE


def test_auc_planted_signal_passes() -> None:
    # a shift of 0.21 sd on up rows gives AUC ~ 0.56 on 2,500 times x 2 symbols = 5,000 rows;
    # B is persistent no-skill noise, whose own AUC wanders by ~0.014 (sd), so the paired test
    # has less power than the test against 0.5
    rng = np.random.default_rng(7)
    reps = 50
    vs_half = paired = 0
    aucs = []
    for rep in range(reps):
        y, a, b, groups = no_skill_rows(rng, 2_500, skill=0.21)
        result = auc_difference_test(
            y, a, None, groups=groups, horizon=HORIZON, n_boot=300, seed=rep
        )
        vs_half += result.passed
        paired += auc_difference_test(
            y, a, b, groups=groups, horizon=HORIZON, n_boot=300, seed=rep
        ).passed
        aucs.append(result.estimate + 0.5)
        if rep == 0:
            assert result.passed and result.p_value < 0.05
            assert "lower95=" in result.detail() and result.as_dict()["passed"] is True

    assert 0.55 < float(np.mean(aucs)) < 0.57
    assert vs_half / reps >= 0.9
    assert paired / reps >= 0.6


# --- Diebold–Mariano ----------------------------------------------------------------------------


def test_dm_false_pass_rate_with_autocorrelated_losses() -> None:
    # equal expected losses: a shared miss plus independent MA(3) terms; 1,000 repetitions.
    # Newey-West gets 2,000 times: at 500-1,000 its rate is 0.06-0.07 (see the docstring)
    rng = np.random.default_rng(11)
    reps = 1_000
    tolerance = NOMINAL + 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / reps)
    passes = {"ewc": 0, "newey_west": 0, "stacked": 0}
    groups = np.repeat(np.arange(500), N_SYMBOLS)
    for _ in range(reps):
        common = ma_losses(rng, 500)
        passes["ewc"] += diebold_mariano_test(
            common + ma_losses(rng, 500), common + ma_losses(rng, 500), horizon=HORIZON
        ).passed
        common = ma_losses(rng, 2_000)
        passes["newey_west"] += diebold_mariano_test(
            common + ma_losses(rng, 2_000),
            common + ma_losses(rng, 2_000),
            horizon=HORIZON,
            long_run_variance="newey_west",
        ).passed
        stacked_a = np.column_stack([ma_losses(rng, 500) for _ in range(N_SYMBOLS)]).ravel()
        stacked_b = np.column_stack([ma_losses(rng, 500) for _ in range(N_SYMBOLS)]).ravel()
        passes["stacked"] += diebold_mariano_test(
            stacked_a, stacked_b, horizon=HORIZON, groups=groups
        ).passed

    assert {name: count / reps for name, count in passes.items()} == {
        name: pytest.approx(NOMINAL, abs=tolerance - NOMINAL) for name in passes
    }


def test_dm_ewc_false_pass_rate_with_persistent_qlike_differences() -> None:
    # two equally good variance forecasts whose log errors are AR(0.97): d is persistent
    rng = np.random.default_rng(13)
    reps = 500
    tolerance = NOMINAL + 3 * math.sqrt(NOMINAL * (1 - NOMINAL) / reps)
    passes = 0
    for _ in range(reps):
        log_error_a, log_error_b = (
            0.3 * lfilter([math.sqrt(1 - 0.97**2)], [1.0, -0.97], rng.normal(size=2_200))[200:]
            for _ in range(2)
        )
        realized = rng.standard_normal(2_000) ** 2  # true variance 1
        qlike_a = log_error_a + realized * np.exp(-log_error_a)
        qlike_b = log_error_b + realized * np.exp(-log_error_b)
        passes += diebold_mariano_test(qlike_a, qlike_b, horizon=1).passed

    assert passes / reps <= tolerance


@pytest.mark.parametrize("variance", ["ewc", "newey_west"])
def test_dm_clearly_lower_loss_passes(variance: str) -> None:
    rng = np.random.default_rng(12)
    passes = 0
    for rep in range(200):
        loss_b = ma_losses(rng, 2_000)
        loss_a = 0.7 * ma_losses(rng, 2_000)  # 30% lower expected loss
        result = diebold_mariano_test(loss_a, loss_b, horizon=HORIZON, long_run_variance=variance)
        passes += result.passed
        if rep == 0:
            assert result.passed and result.bound < 0 and result.p_value < 0.05
            assert result.estimate == pytest.approx(float(np.mean(loss_a - loss_b)))

    assert passes / 200 >= 0.9
    worse = diebold_mariano_test(loss_b, loss_a, horizon=HORIZON, long_run_variance=variance)
    assert not worse.passed and worse.p_value > 0.5


def test_dm_constant_difference() -> None:
    loss = np.linspace(1.0, 2.0, 100)

    assert not diebold_mariano_test(loss, loss, horizon=1).passed
    assert diebold_mariano_test(loss - 0.1, loss, horizon=1).passed


# --- bad input ----------------------------------------------------------------------------------


@pytest.fixture
def rows() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return no_skill_rows(np.random.default_rng(0), 500)


def test_auc_bad_data_raises(rows: tuple[np.ndarray, ...]) -> None:
    y, a, b, groups = rows
    with pytest.raises(DataValidationError, match="score_a"):
        auc_difference_test(y, a[:-1], b, groups=groups, horizon=HORIZON)
    with pytest.raises(DataValidationError, match="score_b"):
        auc_difference_test(y, a, b[:-1], groups=groups, horizon=HORIZON)
    with pytest.raises(DataValidationError, match="groups"):
        auc_difference_test(y, a, b, groups=groups[:-1], horizon=HORIZON)
    with pytest.raises(DataValidationError, match="groups"):
        auc_difference_test(y, a, b, groups=groups.astype(float), horizon=HORIZON)
    with pytest.raises(DataValidationError, match="single class"):
        auc_difference_test(np.ones_like(y), a, b, groups=groups, horizon=HORIZON)
    with pytest.raises(DataValidationError, match="y must hold only 0 and 1"):
        auc_difference_test(y * 2, a, b, groups=groups, horizon=HORIZON)
    nan_score = a.copy()
    nan_score[3] = np.nan
    with pytest.raises(DataValidationError, match="score_a"):
        auc_difference_test(y, nan_score, b, groups=groups, horizon=HORIZON)
    with pytest.raises(DataValidationError, match="groups"):  # 500 times < 10 blocks of 60
        auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, block=60)


def test_auc_bad_settings_raise(rows: tuple[np.ndarray, ...]) -> None:
    y, a, b, groups = rows
    with pytest.raises(ConfigError, match="block"):
        auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, block=0)
    with pytest.raises(ConfigError, match="block"):
        auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, block=HORIZON - 1)
    with pytest.raises(ConfigError, match="horizon"):
        auc_difference_test(y, a, b, groups=groups, horizon=0)
    with pytest.raises(ConfigError, match="n_boot"):
        auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, n_boot=10)
    for confidence in (0.0, 1.0, 1.5):
        with pytest.raises(ConfigError, match="confidence"):
            auc_difference_test(y, a, b, groups=groups, horizon=HORIZON, confidence=confidence)


def test_dm_bad_input_raises() -> None:
    loss = np.ones(100)
    with pytest.raises(DataValidationError, match="loss_b"):
        diebold_mariano_test(loss, loss[:-1], horizon=1)
    with pytest.raises(DataValidationError, match="loss_a"):
        diebold_mariano_test(np.r_[loss[:-1], np.inf], loss, horizon=1)
    with pytest.raises(DataValidationError, match="loss_a"):  # too short for the horizon
        diebold_mariano_test(loss[:8], loss[:8], horizon=4)
    with pytest.raises(DataValidationError, match="loss_a"):
        diebold_mariano_test(loss[:8], loss[:8], horizon=4, long_run_variance="newey_west")
    with pytest.raises(DataValidationError, match="groups"):
        diebold_mariano_test(loss, loss, horizon=1, groups=np.arange(99))
    with pytest.raises(ConfigError, match="horizon"):
        diebold_mariano_test(loss, loss, horizon=0)
    with pytest.raises(ConfigError, match="confidence"):
        diebold_mariano_test(loss, loss, horizon=1, confidence=1.0)
    with pytest.raises(ConfigError, match="long_run_variance"):
        diebold_mariano_test(loss, loss, horizon=1, long_run_variance="bartlett")


def test_weighted_auc_bad_weights_raise() -> None:
    y = np.array([0, 1, 0, 1])
    score = np.array([0.1, 0.2, 0.3, 0.4])
    with pytest.raises(DataValidationError, match="weights"):
        weighted_auc(y, score, [1, 1, -1, 1])
    with pytest.raises(DataValidationError, match="weights"):
        weighted_auc(y, score, [1, 0, 1, 0])


def test_result_reporting() -> None:
    result = TestResult("diebold_mariano", -0.01, -0.002, 0.01, 0.95, 500, True)

    assert result.detail() == (
        "diebold_mariano: estimate=-0.01000 upper95=-0.00200 p=0.0100 n=500 (passed)"
    )
    assert result.as_dict()["p_value"] == 0.01
    assert default_block(8_000, HORIZON) == 40 and default_block(10**6, 1) == 100
