"""The promotion gate's tests on a selection span: noise cannot pass, a real edge does.

Regression for the old gate (pooled AUC > 0.5 + 0.002 over every out-of-fold row): a no-skill
model whose AUC happens to sit above 0.502 passed it, and so did a model whose only skill lay in
the reported span.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from models.registry import GateTest, PromotionPolicy, gate_tests

POLICY = PromotionPolicy(n_boot=300)


def _direction_frame(n_times: int, skill: float, baseline_skill: float, seed: int) -> pd.DataFrame:
    """Two symbols per decision time; 4-bar overlapping labels; scores with planted skill."""
    rng = np.random.default_rng(seed)
    returns = rng.normal(size=(n_times + 4, 2))
    forward = np.lib.stride_tricks.sliding_window_view(returns, 4, axis=0).sum(axis=2)[:n_times]
    y = (forward > 0).astype(np.int64)
    p_up = 1 / (1 + np.exp(-(skill * forward + rng.normal(size=forward.shape))))
    p_baseline = 1 / (1 + np.exp(-(baseline_skill * forward + rng.normal(size=forward.shape))))
    times = pd.date_range("2024-01-01", periods=n_times, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            "decision_ts": np.repeat(times, 2),
            "label_up": y.reshape(-1),
            "p_up": p_up.reshape(-1),
            "p_baseline": p_baseline.reshape(-1),
        }
    )


def _run(frame: pd.DataFrame, *, champion: bool = False) -> list[GateTest]:
    tests = []
    for test in gate_tests("xgb", frame, 4, POLICY, champion, "reversal_4"):
        tests.append(test)
        if not test.result.passed:
            break
    return tests


def test_no_skill_stops_at_the_no_skill_test_with_its_figures() -> None:
    from sklearn.metrics import roc_auc_score

    # a no-skill draw whose AUC exceeds 0.502 (the old margin let it through) by less than its
    # noise; the false-pass rate over many draws is measured in test_significance.py
    for seed in range(50):
        frame = _direction_frame(2000, 0.0, 0.0, seed)
        if 0.502 < roc_auc_score(frame["label_up"], frame["p_up"]) < 0.508:
            break
    else:
        pytest.fail("no draw with an AUC in (0.502, 0.508) among 50 seeds")
    tests = _run(frame)
    assert [t.reason for t in tests] == ["BELOW_BASELINE"]
    figures = tests[0].figures()
    assert figures["vs_no_skill_estimate"] > 0.002
    assert figures["vs_no_skill_bound"] <= 0 and figures["vs_no_skill_p_value"] > 0.05
    assert "estimate=" in tests[0].detail() and "p=" in tests[0].detail()


def test_a_real_edge_that_loses_to_the_simple_baseline_is_refused() -> None:
    frame = _direction_frame(3000, 0.6, 2.0, seed=1)
    tests = _run(frame)
    assert [t.reason for t in tests] == ["BELOW_BASELINE", "BELOW_SIMPLE_BASELINE"]
    assert tests[0].result.passed and not tests[1].result.passed
    assert "reversal_4" in tests[1].against


def test_a_planted_edge_over_the_baseline_passes_every_test() -> None:
    frame = _direction_frame(3000, 2.0, 0.3, seed=2)
    tests = _run(frame)
    assert [t.reason for t in tests] == ["BELOW_BASELINE", "BELOW_SIMPLE_BASELINE"]
    assert all(t.result.passed for t in tests)


def test_the_baseline_requirement_is_a_setting() -> None:
    frame = _direction_frame(3000, 0.6, 2.0, seed=1)
    policy = PromotionPolicy(n_boot=300, require_simple_baseline=False)
    tests = list(gate_tests("xgb", frame, 4, policy, False))
    assert [t.reason for t in tests] == ["BELOW_BASELINE"] and tests[0].result.passed


def test_an_identical_champion_is_not_beaten() -> None:
    frame = _direction_frame(3000, 2.0, 0.3, seed=3)
    frame["p_champion"] = frame["p_up"]
    tests = list(gate_tests("xgb", frame, 4, POLICY, True))
    assert tests[-1].reason == "NOT_BETTER" and not tests[-1].result.passed


def _garch_frame(n: int, edge: float, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    true_var = np.exp(rng.normal(-9, 0.5, size=n))
    ret = rng.normal(size=n) * np.sqrt(true_var)
    noisy = true_var * np.exp(rng.normal(0, 0.6, size=n))
    good = true_var * np.exp(rng.normal(0, 0.6 * (1 - edge), size=n))
    return pd.DataFrame(
        {
            "ts": pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "ret": ret,
            "forecast_var": good,
            "baseline_var": noisy,
        }
    )


def test_garch_must_beat_the_rolling_variance_by_a_diebold_mariano_test() -> None:
    same = list(gate_tests("garch", _garch_frame(3000, 0.0, 4), 1, POLICY, False))
    assert [t.reason for t in same] == ["BELOW_BASELINE"] and not same[0].result.passed
    better = list(gate_tests("garch", _garch_frame(3000, 0.8, 5), 1, POLICY, False))
    assert better[0].result.passed and better[0].result.estimate < 0
