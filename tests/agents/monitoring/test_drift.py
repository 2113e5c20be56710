"""Model drift detectors on the bundled sample's real features: false alarms, power, maturity,
no look-ahead, evidence and typed errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from agents.monitoring.drift import (
    CalibrationDecayConfig,
    DecisionMixConfig,
    FeatureDriftConfig,
    calibration_decay,
    decision_categories,
    decision_mix_drift,
    feature_drift,
    population_stability_index,
    prediction_drift,
)
from agents.monitoring.findings import Category, Severity
from features.build import load_alt_data
from features.compute import compute_features
from features.definitions import service_features
from features.ingest.service import ingest_source
from features.ingest.sources.sample import SampleSource
from features.ingest.store import MarketStore
from models.drift_reference import DriftReference, build_drift_reference
from models.protocol import DirectionDataset
from sextant.errors import ConfigError, DataValidationError

SERVICE = "xgb_direction_v1"
FEATURES = service_features(SERVICE)
HORIZON = 4
WINDOW = 168  # one week of hourly bars, the detectors' default window
TRIALS = 100


@dataclass(frozen=True)
class Sample:
    features: pd.DataFrame  # both symbols, the bundled year, as features.compute gives them
    reference: DriftReference
    oof: pd.DataFrame  # the reported-span rows the output and calibration references use


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sample]:
    """The bundled sample's features and a reference built from them as training builds it.

    P(up) is a fixed logistic score of two real features (a stand-in for a fitted model, whose
    training would take minutes); labels are the real 4-bar forward returns' signs.
    """
    db = Path(tmp_path_factory.mktemp("drift-market")) / "market.duckdb"
    frames = []
    with MarketStore(db) as store:
        ingest_source(SampleSource(), store)
        for symbol in ("BTC/USDT", "ETH/USDT"):
            candles = store.candles(symbol, "1h", source="sample")
            frames.append(compute_features(candles, "1h", load_alt_data(store, symbol)))
    features = pd.concat(frames, ignore_index=True)
    rows = []
    for _, one in features.groupby("symbol", sort=True):
        forward = one["log_return_1"].rolling(HORIZON).sum().shift(-HORIZON)
        rows.append(one.assign(fwd_log_return=forward).dropna(subset=["fwd_log_return"]))
    labelled = pd.concat(rows, ignore_index=True)
    frame = pd.DataFrame(
        {
            "symbol": labelled["symbol"],
            "decision_ts": labelled["available_at"],
            "label_end_ts": labelled["available_at"] + pd.Timedelta(hours=HORIZON),
            "fwd_log_return": labelled["fwd_log_return"],
            "label_up": (labelled["fwd_log_return"] > 0).astype(np.int64),
        }
    )
    data = DirectionDataset(
        SERVICE,
        FEATURES,
        frame,
        labelled[list(FEATURES)].to_numpy(dtype=np.float32),
        frame["label_up"].to_numpy(dtype=np.int64),
    )
    score = 0.5 * (labelled["rsi_14"].fillna(50) - 50) / 15 - labelled["return_z_168"].fillna(0)
    oof = frame.assign(
        p_up=1.0 / (1.0 + np.exp(-0.1 * score.to_numpy())),
        span=np.where(frame["decision_ts"] >= frame["decision_ts"].quantile(0.5), "reported", "x"),
    )
    reference = build_drift_reference(family="xgb", data=data, oof=oof, label_horizon=HORIZON)
    yield Sample(features, reference, oof[oof["span"] == "reported"].reset_index(drop=True))


def _hours(n: int, start: str = "2030-01-01") -> pd.DatetimeIndex:
    return pd.date_range(start, periods=n, freq="h", tz="UTC")


def _draw(rows: pd.DataFrame, rng: np.random.Generator, n: int = WINDOW) -> pd.DataFrame:
    """``n`` rows drawn with replacement, stamped as consecutive bars."""
    window = rows.iloc[rng.integers(0, len(rows), n)].reset_index(drop=True)
    return window.assign(available_at=_hours(n))


# --- feature drift -------------------------------------------------------------------------------


def test_a_window_drawn_from_the_training_rows_rarely_alarms(sample: Sample) -> None:
    # Arrange: bootstrap windows of real BTC feature rows, all 50 features tested at once
    rng = np.random.default_rng(11)
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"]

    # Act
    alarms = sum(bool(feature_drift(_draw(btc, rng), sample.reference)) for _ in range(TRIALS))

    # Assert
    assert alarms <= 0.05 * TRIALS


def test_a_window_shifted_by_one_standard_deviation_alarms(sample: Sample) -> None:
    # Arrange: the same draws, every feature moved by its training standard deviation
    rng = np.random.default_rng(12)
    eth = sample.features[sample.features["symbol"] == "ETH/USDT"]
    sd = eth[list(FEATURES)].std().fillna(0.0)

    # Act
    alarms = 0
    for _ in range(TRIALS):
        window = _draw(eth, rng)
        window[list(FEATURES)] = window[list(FEATURES)] + sd
        alarms += bool(feature_drift(window, sample.reference))

    # Assert
    assert alarms >= 0.95 * TRIALS


def test_one_shifted_feature_is_named_with_its_figures(sample: Sample) -> None:
    # Arrange: only stoch_k_14 moves, by one standard deviation (a fast feature: ordinary
    # training weeks stay below its line, so the shift is beyond what training weeks did)
    rng = np.random.default_rng(13)
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"]
    window = _draw(btc, rng)
    window["stoch_k_14"] += btc["stoch_k_14"].std()

    # Act
    [finding] = feature_drift(window, sample.reference)

    # Assert
    evidence = finding.evidence
    assert finding.kind == "feature_drift" and finding.category is Category.MODEL
    assert finding.symbol == "BTC/USDT" and finding.bar_ts == window["available_at"].iloc[-1]
    assert evidence["drifting"] == ["stoch_k_14"]
    assert set(evidence["features"]) == set(FEATURES)
    figures = evidence["features"]["stoch_k_14"]
    assert finding.value == figures["psi"] >= finding.threshold == figures["psi_line"] >= 0.25
    assert figures["ks_p_adjusted"] < evidence["ks_level"]
    bins = evidence["bins"]["stoch_k_14"]
    assert len(bins["live"]) == len(bins["reference"]) == len(bins["edges"]) + 2
    assert evidence["window"]["n"] == WINDOW
    assert len(json.dumps(finding.as_record())) < 20_000  # small, and JSON-serialisable


def test_values_beyond_the_training_support_drift_even_when_serially_correlated(
    sample: Sample,
) -> None:
    # Arrange: a contiguous week of real rows (slow features barely move within it), with the
    # 7-day realised volatility three times its training maximum
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"].reset_index(drop=True)
    window = btc.iloc[4000 : 4000 + WINDOW].copy()
    before = feature_drift(window, sample.reference)
    window["realized_vol_7d"] = 3 * btc["realized_vol_7d"].max()

    # Act
    [finding] = feature_drift(window, sample.reference)

    # Assert
    assert "realized_vol_7d" in finding.evidence["drifting"]
    assert "realized_vol_7d" not in (before[0].evidence["drifting"] if before else [])
    assert finding.evidence["features"]["realized_vol_7d"]["outside_support"] == 1.0
    assert finding.severity is Severity.CRITICAL


def test_ordinary_training_weeks_rarely_alarm_against_their_own_lines(sample: Sample) -> None:
    # Arrange: contiguous real weeks of the training rows (one ending every 12 bars): slow
    # regime features sit in a narrow part of their range for a week at a time
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"].reset_index(drop=True)
    ends = range(WINDOW, len(btc), 12)

    # Act
    calibrated = sum(bool(feature_drift(btc.iloc[e - WINDOW : e], sample.reference)) for e in ends)
    fixed = sum(
        bool(
            feature_drift(
                btc.iloc[e - WINDOW : e],
                sample.reference,
                config=FeatureDriftConfig(calibrated_lines=False),
            )
        )
        for e in ends
    )

    # Assert: against each feature's own line (the PSI its training weeks reached) few weeks
    # alarm (measured 21 of 719 on BTC; the support route); one fixed line alarms on most
    assert calibrated <= 0.05 * len(ends)
    assert fixed >= 0.5 * len(ends)


def test_feature_drift_computes_each_features_figures_as_its_reference_does(
    sample: Sample,
) -> None:
    """All features are binned at once (one comparison against every edge): each feature's
    PSI, support share and bins equal what its `Distribution` and `population_stability_index`
    give for that window alone, NaN rows and rows beyond the training range included, at every
    bar of a rolling window (rows entering and leaving it)."""
    # Arrange: two symbols, several features shifted, NaNs and out-of-range values planted
    rng = np.random.default_rng(15)
    frames = []
    for symbol in ("BTC/USDT", "ETH/USDT"):
        rows = sample.features[sample.features["symbol"] == symbol]
        frame = _draw(rows, rng, WINDOW + 24).assign(symbol=symbol)
        for name in ("rsi_14", "stoch_k_14"):
            frame.loc[WINDOW // 4 :, name] += 1.5 * rows[name].std()
        frame.loc[::7, "return_z_168"] = np.nan
        frame.loc[::11, "realized_vol_7d"] = 5 * rows["realized_vol_7d"].max()
        frames.append(frame)
    features = pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=3)  # unordered
    since = frames[0]["available_at"].iloc[WINDOW - 1].to_pydatetime()

    # Act
    found = feature_drift(features, sample.reference, since=since)

    # Assert
    assert len(found) >= 10
    for finding in found:
        rows = features[features["symbol"] == finding.symbol].sort_values("available_at")
        window = rows[rows["available_at"] <= finding.bar_ts].iloc[-WINDOW:]
        distributions = sample.reference.for_symbol(str(finding.symbol))
        for name, figures in finding.evidence["features"].items():
            values = window[name].to_numpy(dtype=np.float32).astype(np.float64)
            dist = distributions[name]
            psi = population_stability_index(dist.shares(values), dist.proportions)
            assert figures["psi"] == float(f"{psi:.4g}")
            finite = values[np.isfinite(values)]
            if len(finite) == 0 or dist.lower is None or dist.upper is None:
                assert figures["outside_support"] is None
                continue
            beyond = (finite < np.float32(dist.lower)) | (finite > np.float32(dist.upper))
            assert figures["outside_support"] == float(f"{np.mean(beyond):.4g}")
        for name, bins in finding.evidence["bins"].items():
            values = window[name].to_numpy(dtype=np.float32).astype(np.float64)
            expected = [float(f"{v:.4g}") for v in distributions[name].shares(values)]
            assert bins["live"] == expected


def test_the_window_psi_of_all_features_equals_one_call_per_feature(sample: Sample) -> None:
    """The PSI of every feature at once (grouped by bin count) is the float
    `population_stability_index` gives per feature, to the last bit, on windows with NaNs,
    values beyond the training range and empty bins."""
    from agents.monitoring.drift import (
        _compiled,
        _window_bins,
        _window_psi_values,
        _window_shares,
    )

    rng = np.random.default_rng(21)
    reference = sample.reference
    distributions = reference.for_symbol("BTC/USDT")
    compiled = _compiled(reference, "BTC/USDT")
    assert len({len(d.edges) for d in distributions.values()}) > 1  # several group widths
    rows = sample.features[sample.features["symbol"] == "BTC/USDT"]
    for size in (WINDOW, 30, 1):
        window = _draw(rows, rng, size)[list(reference.features)].to_numpy(dtype=np.float32)
        window = window.astype(np.float64)
        window[rng.random(window.shape) < 0.05] = np.nan
        window[rng.random(window.shape) < 0.05] *= 50.0
        shares = _window_shares(_window_bins(window, compiled), compiled)
        expected = [
            population_stability_index(shares[j], distributions[name].proportions)
            for j, name in enumerate(reference.features)
        ]
        assert _window_psi_values(shares, compiled).tolist() == expected


def test_held_bins_equal_a_fresh_binning_as_the_window_moves(sample: Sample) -> None:
    """The bins `feature_drift` reuses from a symbol's previous window (rows of the same time
    and the same values) equal binning the window afresh, to the bin: the window moved on, a
    row rewritten, a late row inserted, a hole, NaN, -0.0 for 0.0, another compiled reference;
    and the findings equal those of a monitor with nothing held."""
    from agents.monitoring import drift
    from agents.monitoring.drift import _bins_of_window, _compiled, _window_bins

    rng = np.random.default_rng(22)
    reference = sample.reference
    compiled = _compiled(reference, "BTC/USDT")
    rows = sample.features[sample.features["symbol"] == "BTC/USDT"].iloc[:400]
    values = rows[list(reference.features)].to_numpy(dtype=np.float32).astype(np.float64)
    values[rng.random(values.shape) < 0.05] = np.nan
    stamps = rows["available_at"].astype("int64").to_numpy()

    def check(window: np.ndarray, times: np.ndarray, symbol: str = "BTC/USDT") -> None:
        held = _bins_of_window(symbol, window, times, compiled)
        assert np.array_equal(held, _window_bins(window, compiled))

    drift._HELD_BINS.clear()
    check(values[0:WINDOW], stamps[0:WINDOW])
    check(values[1 : WINDOW + 1], stamps[1 : WINDOW + 1])  # moved on by one bar
    rewritten = values[2 : WINDOW + 2].copy()
    rewritten[50] = values[300]  # a row rewritten in place: same time, other values
    rewritten[60, 3] = -0.0 if rewritten[60, 3] != 0.0 else 1.0
    check(rewritten, stamps[2 : WINDOW + 2])
    late = np.concatenate([values[3:40], values[[350]], values[40 : WINDOW + 2]])
    late_times = np.concatenate([stamps[3:40], stamps[[39]] + 1, stamps[40 : WINDOW + 2]])
    check(late, late_times)  # a row that arrived late, between held ones
    holed = np.delete(values[4 : WINDOW + 10], [20, 21, 22], axis=0)
    check(holed, np.delete(stamps[4 : WINDOW + 10], [20, 21, 22]))  # a hole
    check(values[5:6], stamps[5:6])  # one row
    check(values[5:5], stamps[5:5])  # none
    check(values[100 : 100 + WINDOW], stamps[100 : 100 + WINDOW], "ETH/USDT")  # another key

    # the detector over windows moving one bar at a time, warm and cold, finds the same
    frame = rows.copy()
    for name in reference.features[:5]:
        frame.loc[frame.index[150:], name] += 5 * rows[name].std()
    for end in range(240, 300, 7):
        window = frame.iloc[: end + 1]
        warm = feature_drift(window, reference)
        drift._HELD_BINS.clear()
        assert feature_drift(window, reference) == warm
    assert warm  # the shifted rows drift


def test_feature_drift_reads_bar_closes_in_any_zone_and_unit_as_utc(sample: Sample) -> None:
    from agents.monitoring import drift

    rng = np.random.default_rng(24)
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"]
    frame = _draw(btc, rng, WINDOW + 30)
    for name in sample.reference.features[:5]:
        frame.loc[frame.index[WINDOW // 2 :], name] += 5 * btc[name].std()
    since = frame["available_at"].iloc[WINDOW].to_pydatetime()
    expected = feature_drift(frame, sample.reference, since=since)
    assert expected
    elsewhere = frame.assign(
        available_at=frame["available_at"].dt.tz_convert("Asia/Tokyo").dt.as_unit("us")
    )
    drift._HELD_BINS.clear()
    assert feature_drift(elsewhere, sample.reference, since=since) == expected
    missing = frame.copy()
    missing.loc[missing.index[3], "available_at"] = pd.NaT
    with pytest.raises(DataValidationError, match="missing times"):
        feature_drift(missing, sample.reference, since=since)


def test_the_ks_test_on_the_held_sorted_sample_equals_the_test_on_the_sample(
    sample: Sample,
) -> None:
    from agents.monitoring.drift import _compiled, _ks

    rng = np.random.default_rng(23)
    reference = sample.reference
    compiled = _compiled(reference, "BTC/USDT")
    distributions = reference.for_symbol("BTC/USDT")
    rows = sample.features[sample.features["symbol"] == "BTC/USDT"]
    window = _draw(rows, rng, WINDOW)[list(reference.features)].to_numpy(dtype=np.float32)
    window = window.astype(np.float64)
    for j, name in enumerate(reference.features):
        column = window[:, j] * (1.5 if j % 2 else 1.0)
        assert _ks(column, distributions[name].sample, 20, compiled.samples[j]) == _ks(
            column, distributions[name].sample, 20
        )


def test_feature_drift_at_a_bar_ignores_later_rows(sample: Sample) -> None:
    # Arrange: two weeks, the second one shifted; judge the bar that ends the first week too
    rng = np.random.default_rng(14)
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"]
    frame = _draw(btc, rng, 2 * WINDOW)
    frame.loc[WINDOW:, "rsi_14"] += 3 * btc["rsi_14"].std()
    first_week_end = frame["available_at"].iloc[WINDOW - 1]

    # Act
    whole = feature_drift(frame, sample.reference, since=first_week_end.to_pydatetime())
    truncated = feature_drift(
        frame[frame["available_at"] <= first_week_end],
        sample.reference,
        since=first_week_end.to_pydatetime(),
    )

    # Assert: the same verdict at that bar with or without what followed, and the later bars
    # (whose windows include the shifted rows) alarm
    at_bar = [f for f in whole if f.bar_ts == first_week_end]
    assert [f.as_record() for f in at_bar] == [f.as_record() for f in truncated]
    assert whole and whole[-1].bar_ts == frame["available_at"].iloc[-1]
    assert "rsi_14" in whole[-1].evidence["drifting"]


# --- prediction drift ----------------------------------------------------------------------------


def _predictions(p_up: np.ndarray, symbol: str = "BTC/USDT") -> pd.DataFrame:
    return pd.DataFrame({"symbol": symbol, "ts": _hours(len(p_up)), "p_up": p_up})


def test_prediction_drift_alarms_on_a_planted_shift_and_not_on_a_reference_draw(
    sample: Sample,
) -> None:
    # Arrange
    rng = np.random.default_rng(21)
    reported = sample.oof.loc[sample.oof["symbol"] == "BTC/USDT", "p_up"].to_numpy()
    spread = reported.std()

    # Act
    quiet = sum(
        bool(prediction_drift(_predictions(rng.choice(reported, WINDOW)), sample.reference))
        for _ in range(TRIALS)
    )
    loud = [
        prediction_drift(
            _predictions(np.clip(rng.choice(reported, WINDOW) + spread, 0, 1)), sample.reference
        )
        for _ in range(TRIALS)
    ]

    # Assert
    assert quiet <= 0.05 * TRIALS
    assert sum(bool(f) for f in loud) >= 0.95 * TRIALS
    finding = next(f for f in loud if f)[0]
    assert finding.kind == "prediction_drift" and finding.statistic == "psi"
    assert len(finding.evidence["latest_p_up"]) == 50  # the evidence keeps the latest 50
    assert finding.evidence["live_mean"] > finding.evidence["reference_mean"]


# --- calibration decay ---------------------------------------------------------------------------


def _calibration_frames(
    sample: Sample,
    rng: np.random.Generator,
    n: int,
    *,
    wrong_from: int | None = None,
    known_after: int = HORIZON,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Reported-span BTC pairs restamped as ``n`` consecutive bars, each label known
    ``known_after`` bars after its decision; from row ``wrong_from`` on the model is confidently
    wrong (P(up) 0.85, the market went down)."""
    rows = sample.oof[sample.oof["symbol"] == "BTC/USDT"]
    drawn = rows.iloc[rng.integers(0, len(rows), n)].reset_index(drop=True)
    ts = _hours(n)
    p_up = drawn["p_up"].to_numpy().copy()
    labels = drawn["label_up"].to_numpy().copy()
    if wrong_from is not None:
        p_up[wrong_from:], labels[wrong_from:] = 0.85, 0
    predictions = pd.DataFrame({"symbol": "BTC/USDT", "ts": ts, "p_up": p_up})
    outcomes = pd.DataFrame(
        {
            "symbol": "BTC/USDT",
            "ts": ts,
            "label_up": labels,
            "known_at": ts + pd.Timedelta(hours=known_after),
        }
    )
    return predictions, outcomes


def test_calibration_decay_uses_only_labels_known_at_the_bar(sample: Sample) -> None:
    # Arrange: 448 bars whose labels are known 48 bars after the decision; the model goes wrong
    # on bars 352..399, so at bar 399 none of those labels is known yet
    rng = np.random.default_rng(31)
    config = CalibrationDecayConfig(window=96, min_pairs=48)
    predictions, outcomes = _calibration_frames(sample, rng, 448, wrong_from=352, known_after=48)
    predictions.loc[400:, "p_up"] = sample.oof["p_up"].iloc[:48].to_numpy()
    outcomes.loc[400:, "label_up"] = sample.oof["label_up"].iloc[:48].to_numpy()
    bar_399 = predictions["ts"].iloc[399].to_pydatetime()

    # Act
    at_399 = [
        f
        for f in calibration_decay(
            predictions, outcomes, sample.reference, config=config, since=bar_399
        )
        if f.bar_ts == bar_399
    ]
    peeking = calibration_decay(  # the same labels, claimed known at the decision
        predictions.iloc[:400],
        outcomes.iloc[:400].assign(known_at=outcomes["ts"].iloc[:400]),
        sample.reference,
        config=config,
    )
    later = calibration_decay(predictions, outcomes, sample.reference, config=config)

    # Assert: the unmatured labels would raise an alarm at bar 399, and are not used there;
    # once they are known (bar 447) they are
    assert at_399 == []
    assert peeking and peeking[0].bar_ts == bar_399
    [decayed] = later
    assert decayed.bar_ts == predictions["ts"].iloc[-1]
    assert decayed.evidence["window"]["last"] == predictions["ts"].iloc[447 - 48].isoformat()
    assert decayed.statistic in {"brier_excess_z", "log_loss_excess_z"}
    assert decayed.value >= config.z_critical and decayed.severity is Severity.CRITICAL
    brier = decayed.evidence["metrics"]["brier"]
    assert brier["live"] > brier["reference"] == sample.reference.calibration["BTC/USDT"].brier


def test_calibration_decay_is_quiet_on_reference_pairs(sample: Sample) -> None:
    rng = np.random.default_rng(32)
    alarms = 0
    for _ in range(TRIALS):
        predictions, outcomes = _calibration_frames(sample, rng, 400)
        alarms += bool(calibration_decay(predictions, outcomes, sample.reference))
    assert alarms <= 0.05 * TRIALS


# --- decision mix --------------------------------------------------------------------------------


def _decisions(categories: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({"ts": _hours(len(categories)), "category": categories})


MIX = ["FLAT", "POSITIONED", "LOW_CONFIDENCE", "MAX_DRAWDOWN"]
MIX_SHARES = [0.55, 0.3, 0.12, 0.03]


def test_decision_mix_drift_alarms_on_a_planted_shift_and_not_on_a_reference_draw() -> None:
    rng = np.random.default_rng(41)
    config = DecisionMixConfig()
    n = config.reference_hours + config.window_hours

    quiet = sum(
        bool(decision_mix_drift(_decisions(rng.choice(MIX, n, p=MIX_SHARES))))
        for _ in range(TRIALS)
    )
    loud = 0
    for _ in range(TRIALS):
        categories = rng.choice(MIX, n, p=MIX_SHARES)
        # the last week: mostly flat, a risk halt appears
        categories[-config.window_hours :] = rng.choice(
            MIX, config.window_hours, p=[0.75, 0.05, 0.05, 0.15]
        )
        loud += bool(decision_mix_drift(_decisions(categories)))

    assert quiet <= 0.05 * TRIALS
    assert loud >= 0.95 * TRIALS


def test_decision_categories_from_records_and_the_finding_evidence() -> None:
    # Arrange: records in Decision.as_record form (only the fields read)
    def record(hour: int, target: float, failed: str | None) -> dict[str, object]:
        checks = [{"name": "max_position", "passed": True, "reason_code": None}]
        if failed:
            checks.append({"name": failed.lower(), "passed": False, "reason_code": failed})
        ts = pd.Timestamp("2030-01-01", tz="UTC") + pd.Timedelta(hours=hour)
        return {
            "ts": ts.isoformat(),
            "symbol": "BTC/USDT",
            "target_fraction": target,
            "risk_checks": checks,
        }

    records = [record(h, 0.1 if h % 3 else 0.0, None) for h in range(720)]
    records += [record(720 + h, 0.0, "KILL_SWITCH") for h in range(168)]

    # Act
    categories = decision_categories(records)
    [finding] = decision_mix_drift(categories)

    # Assert
    assert set(categories["category"]) == {"FLAT", "POSITIONED", "KILL_SWITCH"}
    assert finding.symbol is None and finding.severity is Severity.CRITICAL
    shares = dict(zip(finding.evidence["categories"], finding.evidence["live_shares"], strict=True))
    assert shares == {"FLAT": 0.0, "KILL_SWITCH": 1.0, "POSITIONED": 0.0}
    with pytest.raises(DataValidationError, match="risk_checks"):
        decision_categories(
            [{"ts": "2030-01-01T00:00:00+00:00", "symbol": "X", "target_fraction": 0}]
        )


# --- statistics and bad input --------------------------------------------------------------------


def test_psi_is_zero_for_equal_shares_and_grows_with_the_shift() -> None:
    reference = np.array([0.25, 0.25, 0.25, 0.25])
    assert population_stability_index(reference, reference) == 0.0
    small = population_stability_index([0.3, 0.25, 0.25, 0.2], reference)
    large = population_stability_index([0.7, 0.1, 0.1, 0.1], reference)
    assert 0 < small < 0.05 < 0.25 < large


def test_bad_inputs_are_typed_errors(sample: Sample) -> None:
    btc = sample.features[sample.features["symbol"] == "BTC/USDT"].iloc[:WINDOW]
    with pytest.raises(DataValidationError, match="lacks columns"):
        feature_drift(btc.drop(columns="rsi_14"), sample.reference)
    with pytest.raises(DataValidationError, match="tz-aware"):
        feature_drift(
            btc.assign(available_at=btc["available_at"].dt.tz_localize(None)), sample.reference
        )
    with pytest.raises(DataValidationError, match="no symbol 'SOL/USDT'"):
        feature_drift(btc.assign(symbol="SOL/USDT"), sample.reference)
    with pytest.raises(DataValidationError, match="infinite"):
        feature_drift(btc.assign(rsi_14=np.inf), sample.reference)
    with pytest.raises(DataValidationError, match=r"p_up must be in \[0, 1\]"):
        prediction_drift(_predictions(np.full(60, 1.5)), sample.reference)
    predictions, outcomes = _calibration_frames(sample, np.random.default_rng(0), 120)
    with pytest.raises(DataValidationError, match="label_up"):
        calibration_decay(predictions, outcomes.assign(label_up=2), sample.reference)
    with pytest.raises(DataValidationError, match="known_at"):
        calibration_decay(
            predictions,
            outcomes.assign(known_at=outcomes["ts"] - timedelta(hours=1)),
            sample.reference,
        )
    with pytest.raises(DataValidationError, match="since"):
        decision_mix_drift(
            _decisions(np.array(["FLAT"] * 10)), since=pd.Timestamp("2030-01-01").to_pydatetime()
        )
    with pytest.raises(ConfigError, match="window_bars"):
        FeatureDriftConfig(window_bars=0)
