"""Market detectors on the sample's real 1h candles and funding, with planted anomalies.

Measured on the unplanted sample (2 symbols; GARCH evaluated from 2023-07-01 with parameters
fitted on the bars before it, the others over the whole year once their window is full), in
findings per evaluated bar (funding: per settlement), and the bound each test asserts:

- garch_residual  BTC 2 / 4,655 = 0.043 %, ETH 1 / 4,655 = 0.021 %; bound 0.1 % (the model's
  own two-sided 99.9 % rate: real data may not beat the nominal rate by more than chance allows).
- volume_spike    BTC 0.19 %, ETH 0.29 % (threshold 4, window 168); bound 0.5 %.
- price_gap       0 on both (the sample's opens are within 0.05 sigma of the previous close);
  bound 0.05 % (about four bars a year).
- missing_bar     only the sample's one real hole (2023-03-24 13:00, both symbols): 0 false.
- funding_extreme BTC 4 / 1,035, ETH 4 / 1,035 = 0.39 %; bound 1 %.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from agents.monitoring.findings import Category, Finding, Severity
from agents.monitoring.market import (
    EVIDENCE_CAP,
    GarchReference,
    GarchResidualConfig,
    fit_garch_reference,
    funding_extreme,
    garch_residual,
    log_returns,
    missing_bar,
    price_gap,
    volume_spike,
)
from models.garch import GarchConfig, GarchParams, filter_variance
from sextant.errors import ConfigError, DataValidationError
from tests.agents.monitoring.planting import (
    FUNDING_SYMBOL,
    plant_funding_spike,
    plant_hole,
    plant_open_gap,
    plant_return,
    plant_volume,
    sample_candles,
    sample_funding,
)

SYMBOLS = ("BTC/USDT", "ETH/USDT")
EVAL_SINCE = datetime(2023, 7, 1, tzinfo=UTC)
RETURN_BAR = pd.Timestamp("2023-09-12 10:00", tz="UTC")
VOLUME_BAR = pd.Timestamp("2023-10-05 14:00", tz="UTC")
HOLE_FIRST = pd.Timestamp("2023-11-07 03:00", tz="UTC")
GAP_BAR = pd.Timestamp("2023-12-04 09:00", tz="UTC")
FUNDING_AT = pd.Timestamp("2023-10-20 08:00", tz="UTC")
REAL_HOLE = pd.Timestamp("2023-03-24 13:00", tz="UTC")  # the sample's own missing bar
HOUR = pd.Timedelta(hours=1)


@pytest.fixture(scope="module")
def references() -> dict[str, GarchReference]:
    """GARCH-t fitted with arch on each symbol's returns before EVAL_SINCE."""
    return {s: fit_garch_reference(sample_candles(s), symbol=s, before=EVAL_SINCE) for s in SYMBOLS}


def _now_after(candles: pd.DataFrame) -> datetime:
    """The moment the frame's newest bar closed: nothing is overdue yet."""
    last: pd.Timestamp = candles["event_ts"].iloc[-1]
    return (last + HOUR).to_pydatetime()


def _planted(symbol: str, reference: GarchReference) -> pd.DataFrame:
    """The sample with a 10-sigma return (in the reference's conditional sigma at that bar), a 20x volume, a 6-bar hole and a 6-sigma open gap."""
    candles = sample_candles(symbol)
    r = log_returns(candles)
    sigma = np.sqrt(filter_variance(reference.params, r.to_numpy()))
    i = r.index.get_loc(RETURN_BAR)
    # the bar's return becomes mu + 10 conditional sigmas (whatever it really was)
    ten_sigma = reference.params.mu + 10 * float(sigma[i]) - float(r.iloc[i])
    candles = plant_return(candles, RETURN_BAR, ten_sigma)
    candles = plant_volume(candles, VOLUME_BAR, 20.0)
    before_gap = r[r.index < GAP_BAR].iloc[-168:]
    j = int(np.flatnonzero(candles["event_ts"] == GAP_BAR)[0])
    real_gap = float(np.log(candles["open"].iloc[j] / candles["close"].iloc[j - 1]))
    candles = plant_open_gap(candles, GAP_BAR, 6 * float(before_gap.std(ddof=1)) - real_gap)
    return plant_hole(candles, HOLE_FIRST, 6)


def _run_all(
    candles: pd.DataFrame, funding: pd.DataFrame, symbol: str, reference: GarchReference
) -> dict[str, list[Finding]]:
    return {
        "garch_residual": garch_residual(candles, reference, symbol=symbol, since=EVAL_SINCE),
        "volume_spike": volume_spike(candles, symbol=symbol),
        "price_gap": price_gap(candles, symbol=symbol, timeframe="1h"),
        "missing_bar": missing_bar(candles, symbol=symbol, timeframe="1h", now=_now_after(candles)),
        "funding_extreme": funding_extreme(funding, symbol=FUNDING_SYMBOL[symbol]),
    }


# -- recall on planted anomalies -------------------------------------------------------------


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_every_planted_anomaly_is_found_at_its_bar(
    symbol: str, references: dict[str, GarchReference]
) -> None:
    # Arrange
    candles = _planted(symbol, references[symbol])
    funding = plant_funding_spike(sample_funding(symbol), FUNDING_AT, 0.001)

    # Act
    found = _run_all(candles, funding, symbol, references[symbol])

    # Assert: kind and bar exact, each plant found
    def at(kind: str, bar: pd.Timestamp) -> Finding:
        hits = [f for f in found[kind] if f.bar_ts == bar.to_pydatetime()]
        assert len(hits) == 1, (kind, bar, [f.bar_ts for f in found[kind]])
        return hits[0]

    jump = at("garch_residual", RETURN_BAR)
    assert jump.value == pytest.approx(10.0, rel=1e-6)  # the plant is 10 conditional sigmas
    assert jump.evidence["params"]["source"] == "fit"
    assert at("volume_spike", VOLUME_BAR).evidence["volume"] == pytest.approx(
        20 * float(sample_candles(symbol).set_index("event_ts").loc[VOLUME_BAR, "volume"])
    )
    hole = at("missing_bar", HOLE_FIRST)
    assert hole.value == 6 and hole.evidence["missing_bars"] == 6
    assert at("price_gap", GAP_BAR).value == pytest.approx(6.0, rel=1e-6)
    spike = at("funding_extreme", FUNDING_AT)
    assert spike.evidence["funding_rate"] == 0.001 and spike.severity is Severity.CRITICAL
    # the real one-bar hole of the sample is found too, and nothing else is a hole
    assert sorted(f.bar_ts for f in found["missing_bar"]) == [
        REAL_HOLE.to_pydatetime(),
        HOLE_FIRST.to_pydatetime(),
    ]
    for findings in found.values():
        for f in findings:
            assert f.category is Category.MARKET
            record = json.loads(json.dumps(f.as_record()))  # JSON-serialisable as stored
            windows = [v for v in record["evidence"].values() if isinstance(v, list)]
            assert all(len(w) <= EVIDENCE_CAP for w in windows)


# -- false alarms on the unplanted series ----------------------------------------------------

# (detector, evaluated units per symbol, bound per unit); see the module docstring for figures
FALSE_ALARM_BOUNDS = {
    "garch_residual": 0.001,
    "volume_spike": 0.005,
    "price_gap": 0.0005,
    "funding_extreme": 0.01,
}


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_false_alarm_rates_on_the_real_series_stay_under_their_bounds(
    symbol: str, references: dict[str, GarchReference]
) -> None:
    # Arrange
    candles = sample_candles(symbol)
    funding = sample_funding(symbol)
    evaluated = {
        "garch_residual": int((candles["event_ts"] >= EVAL_SINCE).sum()),
        "volume_spike": len(candles) - 168,
        "price_gap": len(candles) - 169,
        "funding_extreme": len(funding) - 90,
    }

    # Act
    found = _run_all(candles, funding, symbol, references[symbol])

    # Assert
    rates = {kind: len(found[kind]) / evaluated[kind] for kind in FALSE_ALARM_BOUNDS}
    for kind, bound in FALSE_ALARM_BOUNDS.items():
        assert rates[kind] <= bound, (kind, rates[kind], bound)
    assert [f.bar_ts for f in found["missing_bar"]] == [REAL_HOLE.to_pydatetime()]
    # the detectors are not mute on real data: volume and funding each flag real events
    assert found["volume_spike"] and found["funding_extreme"]


# -- no look-ahead ---------------------------------------------------------------------------


def _decided_by(finding: Finding, t: pd.Timestamp) -> bool:
    """Whether a finding is knowable at bar t: holes once the bar after them exists."""
    if finding.kind == "missing_bar":
        return (
            finding.evidence["next_bar"] is not None
            and pd.Timestamp(finding.evidence["next_bar"]) <= t
        )
    return pd.Timestamp(finding.bar_ts) <= t


@pytest.mark.parametrize("symbol", SYMBOLS)
def test_truncating_after_t_leaves_every_finding_up_to_t_unchanged(
    symbol: str, references: dict[str, GarchReference]
) -> None:
    # Arrange
    candles = _planted(symbol, references[symbol])
    funding = plant_funding_spike(sample_funding(symbol), FUNDING_AT, 0.001)
    full = _run_all(candles, funding, symbol, references[symbol])
    cuts = [RETURN_BAR, VOLUME_BAR, HOLE_FIRST + 6 * HOUR, GAP_BAR, FUNDING_AT]

    for t in cuts:
        # Act
        cut = _run_all(
            candles[candles["event_ts"] <= t],
            funding[funding["event_ts"] <= t],
            symbol,
            references[symbol],
        )

        # Assert: same findings (records, evidence included) for everything decided by t
        for kind, findings in full.items():
            expected = [f.as_record() for f in findings if _decided_by(f, t)]
            got = [f.as_record() for f in cut[kind] if f.evidence.get("open") is not True]
            assert got == expected, (kind, t)
    assert any(f.bar_ts == RETURN_BAR.to_pydatetime() for f in full["garch_residual"])


@pytest.mark.parametrize("symbol", ["ETH/USDT"])
def test_since_evaluates_only_the_newest_bars_with_the_same_results(
    symbol: str, references: dict[str, GarchReference]
) -> None:
    # Arrange
    candles = _planted(symbol, references[symbol])
    funding = plant_funding_spike(sample_funding(symbol), FUNDING_AT, 0.001)
    full = _run_all(candles, funding, symbol, references[symbol])
    since = datetime(2023, 10, 1, tzinfo=UTC)
    now = _now_after(candles)

    # Act
    partial = {
        "garch_residual": garch_residual(candles, references[symbol], symbol=symbol, since=since),
        "volume_spike": volume_spike(candles, symbol=symbol, since=since),
        "price_gap": price_gap(candles, symbol=symbol, timeframe="1h", since=since),
        "missing_bar": missing_bar(candles, symbol=symbol, timeframe="1h", now=now, since=since),
        "funding_extreme": funding_extreme(funding, symbol=FUNDING_SYMBOL[symbol], since=since),
    }
    last_only = garch_residual(
        candles.iloc[: candles.index[candles["event_ts"] == RETURN_BAR][0] + 1],
        references[symbol],
        symbol=symbol,
        since=RETURN_BAR.to_pydatetime(),
    )

    # Assert
    for kind, findings in full.items():
        expected = [
            f.as_record()
            for f in findings
            if pd.Timestamp(f.evidence.get("next_bar") or f.bar_ts) >= since
        ]
        assert [f.as_record() for f in partial[kind]] == expected, kind
    assert [f.bar_ts for f in last_only] == [RETURN_BAR.to_pydatetime()]


# -- staleness, severity, the GARCH reference --------------------------------------------------


def test_a_series_whose_newest_bar_is_overdue_is_reported_once_as_an_open_hole() -> None:
    # Arrange
    candles = sample_candles("BTC/USDT")
    last = candles["event_ts"].iloc[-1]
    on_time = (last + 3 * HOUR).to_pydatetime()  # closed 2 bars ago: at the line, not past it
    late = (last + 4 * HOUR + timedelta(minutes=30)).to_pydatetime()

    # Act
    fresh = missing_bar(candles, symbol="BTC/USDT", timeframe="1h", now=on_time)
    stale = missing_bar(candles, symbol="BTC/USDT", timeframe="1h", now=late)
    later = missing_bar(candles, symbol="BTC/USDT", timeframe="1h", now=late + timedelta(days=1))

    # Assert
    assert [f.evidence["open"] for f in fresh] == [False]  # only the real hole
    (overdue,) = [f for f in stale if f.evidence["open"]]
    assert overdue.bar_ts == (last + HOUR).to_pydatetime()
    assert overdue.value == pytest.approx(3.5) and overdue.evidence["missing_bars"] == 3
    assert overdue.severity is Severity.WARNING
    (still,) = [f for f in later if f.evidence["open"]]
    assert still.id == overdue.id and still.severity is Severity.CRITICAL


def test_the_residual_threshold_is_the_standardized_student_t_quantile(
    references: dict[str, GarchReference],
) -> None:
    # Arrange
    from scipy import stats

    reference = references["BTC/USDT"]
    nu = reference.params.nu

    # Act
    findings = garch_residual(
        _planted("BTC/USDT", reference), reference, symbol="BTC/USDT", since=EVAL_SINCE
    )

    # Assert
    expected = stats.t.ppf(0.9995, nu) * math.sqrt((nu - 2) / nu)
    assert findings and all(f.threshold == pytest.approx(expected) for f in findings)
    assert all(f.value > f.threshold for f in findings)
    for f in findings:  # critical from twice the line (16.3 sigmas at this fit's nu)
        assert f.evidence["critical_threshold"] == pytest.approx(2 * expected)
        assert f.severity is (Severity.CRITICAL if f.value >= 2 * expected else Severity.WARNING)


def test_the_residual_detector_refuses_normal_innovations() -> None:
    with pytest.raises(ConfigError, match="Student-t"):
        GarchResidualConfig(fit=GarchConfig(dist="normal"))


def test_the_fallback_fit_sees_only_returns_before_the_evaluated_span() -> None:
    # Arrange
    candles = sample_candles("ETH/USDT")
    before = datetime(2023, 4, 1, tzinfo=UTC)

    # Act
    whole = fit_garch_reference(candles, symbol="ETH/USDT", before=before)
    cut = fit_garch_reference(
        candles[candles["event_ts"] < before], symbol="ETH/USDT", before=before
    )

    # Assert
    assert whole.source == "fit" and whole.fitted_through is not None
    assert whole.fitted_through < before
    assert whole.params == cut.params


def test_a_champion_reference_is_named_in_the_evidence() -> None:
    # Arrange
    params = GarchParams(mu=0.0, omega=1e-6, alpha=0.08, gamma=0.0, beta=0.9, nu=4.0)
    reference = GarchReference(params=params, source="champion", version="7")
    candles = sample_candles("BTC/USDT")

    # Act
    findings = garch_residual(candles, reference, symbol="BTC/USDT", since=EVAL_SINCE)

    # Assert
    assert findings
    assert {
        (f.evidence["params"]["source"], f.evidence["params"]["version"]) for f in findings
    } == {("champion", "7")}


def test_inadmissible_garch_parameters_are_refused() -> None:
    params = GarchParams(mu=0.0, omega=1e-6, alpha=0.1, gamma=0.0, beta=0.9, nu=2.0)
    with pytest.raises(DataValidationError, match="nu > 2"):
        GarchReference(params=params, source="fit")


# -- bad input -------------------------------------------------------------------------------

REFERENCE = GarchReference(
    params=GarchParams(mu=0.0, omega=1e-6, alpha=0.08, gamma=0.0, beta=0.9, nu=4.0), source="fit"
)
NOW = datetime(2024, 2, 1, tzinfo=UTC)
DETECTORS: dict[str, Callable[[pd.DataFrame], Any]] = {
    "garch_residual": lambda c: garch_residual(c, REFERENCE, symbol="BTC/USDT"),
    "volume_spike": lambda c: volume_spike(c, symbol="BTC/USDT"),
    "price_gap": lambda c: price_gap(c, symbol="BTC/USDT", timeframe="1h"),
    "missing_bar": lambda c: missing_bar(c, symbol="BTC/USDT", timeframe="1h", now=NOW),
}


def _unsorted(c: pd.DataFrame) -> pd.DataFrame:
    return c.iloc[[0, 2, 1, *range(3, len(c))]].reset_index(drop=True)


def _duplicated(c: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([c.iloc[:10], c.iloc[9:]], ignore_index=True)


def _naive(c: pd.DataFrame) -> pd.DataFrame:
    return c.assign(event_ts=c["event_ts"].dt.tz_localize(None))


def _no_volume(c: pd.DataFrame) -> pd.DataFrame:
    return c.drop(columns=["volume"])


def _zero_close(c: pd.DataFrame) -> pd.DataFrame:
    out = c.copy()
    out.loc[500, "close"] = 0.0
    return out


def _negative_low(c: pd.DataFrame) -> pd.DataFrame:
    out = c.copy()
    out.loc[700, "low"] = -1.0
    return out


def _missing_time(c: pd.DataFrame) -> pd.DataFrame:
    out = c.copy()
    out.loc[400, "event_ts"] = pd.NaT
    return out


BAD_INPUTS = [
    (_missing_time, "event_ts", "missing values"),
    (_unsorted, "event_ts", "not sorted"),
    (_duplicated, "event_ts", "duplicated timestamp"),
    (_naive, "event_ts", "tz-aware"),
    (_no_volume, "volume", "lacks column"),
    (_zero_close, "close", "non-positive close"),
    (_negative_low, "low", "non-positive low"),
]


@pytest.mark.parametrize("detector", sorted(DETECTORS))
@pytest.mark.parametrize(("spoil", "field", "message"), BAD_INPUTS)
def test_bad_candles_are_a_data_validation_error_naming_the_field(
    detector: str, spoil: Callable[[pd.DataFrame], pd.DataFrame], field: str, message: str
) -> None:
    candles = spoil(sample_candles("BTC/USDT").iloc[:1000].reset_index(drop=True))
    with pytest.raises(DataValidationError, match=message) as caught:
        DETECTORS[detector](candles)
    assert caught.value.field == field
    assert "BTC/USDT" in str(caught.value)


@pytest.mark.parametrize(
    ("spoil", "field"),
    [
        (lambda f: f.drop(columns=["funding_rate"]), "funding_rate"),
        (lambda f: f.iloc[::-1].reset_index(drop=True), "event_ts"),
        (lambda f: f.assign(funding_rate=f["funding_rate"].where(f.index != 300)), "funding_rate"),
    ],
)
def test_bad_funding_is_a_data_validation_error_naming_the_field(
    spoil: Callable[[pd.DataFrame], pd.DataFrame], field: str
) -> None:
    with pytest.raises(DataValidationError) as caught:
        funding_extreme(spoil(sample_funding("BTC/USDT")), symbol="BTC/USDT:USDT")
    assert caught.value.field == field


def test_naive_since_and_now_are_refused() -> None:
    candles = sample_candles("BTC/USDT").iloc[:500]
    with pytest.raises(DataValidationError, match="since"):
        volume_spike(candles, symbol="BTC/USDT", since=datetime(2023, 3, 1))
    with pytest.raises(DataValidationError, match="now"):
        missing_bar(candles, symbol="BTC/USDT", timeframe="1h", now=datetime(2023, 3, 1))


@pytest.mark.parametrize(("spoil", "field", "message"), BAD_INPUTS)
def test_inside_checked_once_bad_candles_are_still_refused_by_every_detector(
    spoil: Callable[[pd.DataFrame], pd.DataFrame], field: str, message: str
) -> None:
    """`checked_once` skips validating a frame again only after it passed: a bad frame is
    refused by each detector it is handed to, and a good one gives the same findings."""
    from agents.monitoring.market import checked_once

    good = sample_candles("BTC/USDT").iloc[:1000].reset_index(drop=True)
    bad = spoil(good)
    with checked_once():
        for detector in DETECTORS.values():
            with pytest.raises(DataValidationError, match=message) as caught:
                detector(bad)
            assert caught.value.field == field
        inside = {name: detector(good) for name, detector in DETECTORS.items()}
    assert inside == {name: detector(good) for name, detector in DETECTORS.items()}
