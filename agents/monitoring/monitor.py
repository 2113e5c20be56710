"""The monitor: every detector over the stored bars since the last run, findings stored once.

`run_monitor` is what `sextant monitor` and the Prefect flow ``monitor`` call after each bar. It
reads each symbol's recent candles and funding from the market store (read-only), the store's
ingest log and quarantine, and the model-drift inputs (`agents.monitoring.drift_inputs`), runs
the detectors of `agents.monitoring.market`, `.data_quality` and `.drift` over the bars from
``since`` (default: after the last bar the monitor evaluated; on a first run, everything after a
warm-up), and stores the findings as anomaly records in the decisions store with the monitor's
states in one transaction. Ids are (kind, symbol, bar): re-running over the same bars stores
nothing new.

Drift alarms are edges, not levels: a model-drift kind is *raised* for a family while its latest
evaluation crosses the threshold. The monitor keeps that state in the store and calls ``emit``
(the flow: a Prefect event ``sextant.drift.detected`` with the figures) only when it rises, so
one crossing is one event however many bars it stays above.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from agents.monitoring.data_quality import (
    EmptyIngestConfig,
    QuarantineConfig,
    SeriesGapConfig,
    empty_ingest,
    quarantine_spike,
    read_ingest_log,
    read_quarantine_reasons,
    read_series_timestamps,
    series_gap,
)
from agents.monitoring.drift import (
    CalibrationDecayConfig,
    DecisionMixConfig,
    FeatureDriftConfig,
    PredictionDriftConfig,
    calibration_decay,
    decision_categories,
    decision_mix_drift,
    feature_drift,
    load_drift_reference,
    prediction_drift,
)
from agents.monitoring.findings import Finding
from agents.monitoring.market import (
    FundingConfig,
    GapConfig,
    GarchReference,
    GarchResidualConfig,
    MissingBarConfig,
    VolumeConfig,
    fit_garch_reference,
    funding_extreme,
    garch_residual,
    missing_bar,
    price_gap,
    volume_spike,
)
from models.drift_reference import DriftReference
from serving.champions import registry_client
from serving.decisions_store import DecisionsStore
from serving.market import MarketHistory, market_histories, open_market
from serving.metrics import DRIFT_FIGURES_KEY
from serving.monitoring_inputs import feature_history, matured_outcomes
from sextant.config import PositiveInt, SextantConfig
from sextant.contracts import CHAMPION, REGISTERED_MODELS
from sextant.errors import ConfigError
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["DRIFT_EVENT", "Emit", "MonitorConfig", "MonitorReport", "run_monitor"]

log = logging.getLogger(__name__)

DRIFT_EVENT = "sextant.drift.detected"
LAST_BAR_KEY = "monitor:last_bar"  # the newest bar open the monitor has evaluated
GARCH_FITS_KEY = "monitor:garch_fits"  # fallback GARCH fits, per symbol, reused across runs
DRIFT_ALARMS_KEY = "monitor:drift_alarms"  # which model drift alarms are raised now
LAST_RUN_KEY = "monitor:last_run"  # when the monitor last ran: newer ingest runs are judged
INGEST_LOOKBACK = timedelta(days=30)  # the trailing ingest runs a new run is compared with
_REFERENCES: dict[tuple[str, str, str], DriftReference] = {}  # (registry, family, version)
MODEL_DRIFT_KINDS = ("feature_drift", "prediction_drift", "calibration_decay")

Emit = Callable[[str, Mapping[str, Any]], None]  # (event name, payload)


class MonitorConfig(SextantConfig):
    """How much history the detectors see and their thresholds (each detector's own config)."""

    history_bars: PositiveInt = 1_000  # trailing bars read before the evaluated span
    warmup_bars: PositiveInt = 720  # a first run evaluates after this many bars (GARCH fit)
    garch: GarchResidualConfig = GarchResidualConfig()
    volume: VolumeConfig = VolumeConfig()
    gap: GapConfig = GapConfig()
    missing: MissingBarConfig = MissingBarConfig()
    funding: FundingConfig = FundingConfig()
    quarantine: QuarantineConfig = QuarantineConfig()
    series_gap: SeriesGapConfig = SeriesGapConfig()
    empty_ingest: EmptyIngestConfig = EmptyIngestConfig()
    feature_drift: FeatureDriftConfig = FeatureDriftConfig()
    prediction_drift: PredictionDriftConfig = PredictionDriftConfig()
    calibration_decay: CalibrationDecayConfig = CalibrationDecayConfig()
    decision_mix: DecisionMixConfig = DecisionMixConfig()
    drift_families: tuple[str, ...] = ("xgb", "lstm")  # direction champions with references


@dataclass(frozen=True)
class MonitorReport:
    """What one run looked at and found."""

    since: datetime | None  # the first bar open evaluated (None: no candles at all)
    until: datetime | None  # the newest bar open evaluated
    symbols: tuple[str, ...]
    findings: tuple[Finding, ...]  # everything found in the span (stored before or now)
    stored: int  # of which new
    events: tuple[Mapping[str, Any], ...] = ()
    garch: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    drift_families: tuple[str, ...] = ()  # champions judged against their drift reference

    def by_kind(self) -> dict[str, int]:
        """Findings per kind."""
        counts: dict[str, int] = {}
        for finding in self.findings:
            counts[finding.kind] = counts.get(finding.kind, 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        """The summary `sextant monitor --json` and the flow print."""
        return {
            "since": None if self.since is None else self.since.isoformat(),
            "until": None if self.until is None else self.until.isoformat(),
            "symbols": list(self.symbols),
            "found": len(self.findings),
            "stored": self.stored,
            "by_kind": self.by_kind(),
            "events": [dict(e) for e in self.events],
            "garch": {s: dict(v) for s, v in self.garch.items()},
            "drift_families": list(self.drift_families),
        }


def run_monitor(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
    emit: Emit | None = None,
) -> MonitorReport:
    """Run every detector over the bars from ``since`` and store what they find (idempotent);
    ``emit`` receives one ``DRIFT_EVENT`` per model drift alarm that rose."""
    cfg = config or MonitorConfig()
    chosen = tuple(symbols or settings.symbols)
    moment = _aware(now or datetime.now(UTC), "now")
    bar = timeframe_to_timedelta(settings.timeframe)
    with DecisionsStore.open(settings.paths.decisions_db) as store:
        start = _aware(since, "since") if since is not None else _last_evaluated(store, bar)
        findings: list[Finding] = []
        fits = dict(store.monitor_state(GARCH_FITS_KEY) or {})
        garch_used: dict[str, dict[str, Any]] = {}
        histories: dict[str, MarketHistory] = {}
        watched: list[tuple[str, str]] = []  # candle series missing_bar covers
        first: datetime | None = None  # the earliest bar evaluated
        newest: datetime | None = None
        with open_market(settings) as market:
            read = market_histories(
                market,
                settings,
                chosen,
                start=None if start is None else start - cfg.history_bars * bar,
            )
            for symbol in chosen:
                history = read.get(symbol)
                if history is None or history.candles.empty:
                    log.warning("no %s candles stored: nothing to monitor", symbol)
                    continue
                watched.append((history.source, symbol))
                histories[symbol] = history
                warmed = _first_run_start(history, cfg)
                evaluated = start or warmed
                first = evaluated if first is None else min(first, evaluated)
                reference, fitted = _garch_reference(history, evaluated, warmed, fits, cfg)
                fits[symbol] = fitted
                garch_used[symbol] = reference.as_evidence()
                findings += _market_findings(history, reference, evaluated, moment, settings, cfg)
                last = history.candles["event_ts"].iloc[-1].to_pydatetime()
                newest = last if newest is None else max(newest, last)
            last_run = store.monitor_state(LAST_RUN_KEY)
            findings += _data_findings(
                market,
                watched,
                start,
                None if last_run is None else datetime.fromisoformat(last_run),
                None if start is None else start - cfg.history_bars * bar,
                cfg,
            )
        # model drift is judged at bar closes: those of the bars evaluated here (the close at
        # `first` itself ends the bar before, judged by the run that evaluated that bar)
        closes_from = None if first is None else first + bar
        drift, figures, judged = _drift_findings(settings, store, histories, closes_from, cfg)
        findings += drift
        alarms, events = _drift_edges(store, drift, histories, closes_from, settings)
        detected = moment.isoformat()
        records = [{**f.as_record(), "detected_at": detected} for f in findings]
        # the figures of the latest run's drift alarms (none: the gauges empty out)
        state: dict[str, Any] = {
            GARCH_FITS_KEY: fits,
            DRIFT_ALARMS_KEY: alarms,
            DRIFT_FIGURES_KEY: figures,
        }
        state[LAST_RUN_KEY] = moment.isoformat()
        if newest is not None:
            state[LAST_BAR_KEY] = newest.isoformat()
        stored = store.record_anomalies(records, state=state)
    # after the commit: an event is sent for an alarm whose state is stored as raised
    for event in events:
        if emit is not None:
            emit(DRIFT_EVENT, event)
    report = MonitorReport(
        since=first,
        until=newest,
        symbols=chosen,
        findings=tuple(findings),
        stored=stored,
        events=tuple(events),
        garch=garch_used,
        drift_families=judged,
    )
    log.info("monitor: %s", json.dumps(report.to_json()["by_kind"]))
    return report


def _market_findings(
    history: MarketHistory,
    reference: GarchReference,
    since: datetime,
    now: datetime,
    settings: Settings,
    cfg: MonitorConfig,
) -> list[Finding]:
    symbol, candles = history.symbol, history.candles
    # GARCH judges only returns after the ones its reference was fitted on
    fitted = reference.fitted_through
    judged = (
        since if fitted is None else max(since, fitted + timeframe_to_timedelta(settings.timeframe))
    )
    found = garch_residual(candles, reference, symbol=symbol, config=cfg.garch, since=judged)
    found += volume_spike(candles, symbol=symbol, config=cfg.volume, since=since)
    found += price_gap(
        candles, symbol=symbol, timeframe=settings.timeframe, config=cfg.gap, since=since
    )
    found += missing_bar(
        candles,
        symbol=symbol,
        timeframe=settings.timeframe,
        now=now,
        config=cfg.missing,
        since=since,
    )
    if not history.funding.empty:
        found += funding_extreme(history.funding, symbol=symbol, config=cfg.funding, since=since)
    return found


def _data_findings(
    market: Any,
    watched: Sequence[tuple[str, str]],
    since: datetime | None,
    runs_since: datetime | None,
    history_start: datetime | None,
    cfg: MonitorConfig,
) -> list[Finding]:
    """The ingest runs logged since the monitor's last run (judged against the trailing runs of
    ``INGEST_LOOKBACK``), and the holes closed from ``since`` in the series read from
    ``history_start``."""
    log_start = None if runs_since is None else runs_since - INGEST_LOOKBACK
    log_frame = read_ingest_log(market, since=log_start)
    reasons = read_quarantine_reasons(market, since=runs_since)
    found = quarantine_spike(
        log_frame, quarantine_reasons=reasons, config=cfg.quarantine, since=runs_since
    )
    found += empty_ingest(log_frame, config=cfg.empty_ingest, since=runs_since)
    # holes of the candles the models read are `missing_bar`'s (market side); the data side
    # reports every other stored series' holes
    for dataset in ("candles", "funding", "fear_greed"):
        stored = read_series_timestamps(market, dataset, start=history_start, closing_from=since)
        found += series_gap(
            stored, dataset=dataset, config=cfg.series_gap, since=since, watched=watched
        )
    return found


def _drift_findings(
    settings: Settings,
    store: DecisionsStore,
    histories: Mapping[str, MarketHistory],
    since: datetime | None,
    cfg: MonitorConfig,
) -> tuple[list[Finding], dict[str, dict[str, float | None]], tuple[str, ...]]:
    """Model drift of each direction champion that has a reference, and the account's decision
    mix; the latest figure per family and statistic for the service's gauges. A finding's kind
    names its family (``feature_drift_xgb``): both families judge the same symbol and bar."""
    if since is None:
        return [], {}, ()
    bar = timeframe_to_timedelta(settings.timeframe)
    lookback = since - max(cfg.feature_drift.window_bars, cfg.calibration_decay.window) * bar * 2
    records = store.latest(
        1_000_000,
        account=settings.paper_account,
        start=lookback - cfg.decision_mix.reference_hours * timedelta(hours=1),
    )
    findings: list[Finding] = []
    figures: dict[str, dict[str, float | None]] = {}
    judged: list[str] = []
    client = registry_client(settings)
    history: pd.DataFrame | None = None
    for family in cfg.drift_families:
        reference = _drift_reference(settings, client, family)
        if reference is None:  # no champion, or one registered before references
            continue
        judged.append(family)
        symbols = [s for s in histories if s in reference.symbols]
        found: list[Finding] = []
        if history is None:  # one read serves both families: the feature tables hold both
            history = feature_history(settings, list(histories), lookback)
        features = history[history["symbol"].isin(symbols)]
        if not features.empty:
            found += feature_drift(features, reference, config=cfg.feature_drift, since=since)
        predictions = pd.DataFrame(
            [
                {"symbol": r["symbol"], "ts": r["ts"], "p_up": r["models"][f"p_{family}"]}
                for r in records
                if r["symbol"] in symbols
            ],
            columns=["symbol", "ts", "p_up"],
        ).astype({"p_up": float})
        if not predictions.empty:
            predictions["ts"] = pd.to_datetime(predictions["ts"], utc=True)
            found += prediction_drift(
                predictions, reference, config=cfg.prediction_drift, since=since
            )
            outcomes = pd.concat(
                [
                    matured_outcomes(
                        histories[s].candles, s, settings.timeframe, reference.label_horizon
                    )
                    for s in symbols
                ],
                ignore_index=True,
            )
            found += calibration_decay(
                predictions, outcomes, reference, config=cfg.calibration_decay, since=since
            )
        for finding in found:
            figures.setdefault(family, {})[finding.statistic] = finding.value
        findings += [dataclasses.replace(f, kind=f"{f.kind}_{family}") for f in found]
    if records:
        mix = decision_categories(records)
        findings += decision_mix_drift(mix, config=cfg.decision_mix, since=since)
    return findings, figures, tuple(judged)


def _drift_reference(settings: Settings, client: Any, family: str) -> DriftReference | None:
    """The champion's drift reference, read from MLflow once per version (a version's artifact
    never changes; a moved alias is a new key)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION)
    except MlflowException:  # no such model or alias
        return None
    key = (settings.registry_uri, family, str(found.version))
    if key not in _REFERENCES:
        reference = load_drift_reference(client, family, version=str(found.version))
        if reference is None:
            return None
        _REFERENCES[key] = reference
    return _REFERENCES[key]


def _drift_edges(
    store: DecisionsStore,
    drift: Sequence[Finding],
    histories: Mapping[str, MarketHistory],
    since: datetime | None,
    settings: Settings,
) -> tuple[dict[str, bool], list[dict[str, Any]]]:
    """Walk the evaluated bar closes in order: an alarm (kind, family) is raised at a bar with a
    finding of it and lowered at one without; each rise from lowered is one event."""
    raised: dict[str, bool] = dict(store.monitor_state(DRIFT_ALARMS_KEY) or {})
    if since is None:
        return raised, []
    bar = timeframe_to_timedelta(settings.timeframe)
    closes = sorted(
        {
            t.to_pydatetime() + bar
            for h in histories.values()
            for t in h.candles["event_ts"]
            if t.to_pydatetime() + bar >= since
        }
    )
    by_alarm: dict[str, dict[datetime, list[Finding]]] = {}
    for finding in drift:
        family = finding.evidence.get("family")
        base = finding.kind.removesuffix(f"_{family}")
        if family is None or base not in MODEL_DRIFT_KINDS:
            continue
        by_alarm.setdefault(finding.kind, {}).setdefault(finding.bar_ts, []).append(finding)
    events: list[dict[str, Any]] = []
    for alarm in sorted(set(by_alarm) | set(raised)):
        hits = by_alarm.get(alarm, {})
        for close in closes:
            now_raised = close in hits
            if now_raised and not raised.get(alarm, False):
                first = hits[close][0]
                events.append(
                    {
                        "alarm": alarm,
                        "family": first.evidence.get("family"),
                        "bar": close.isoformat(),
                        "symbols": sorted({f.symbol or "" for f in hits[close]}),
                        "statistic": first.statistic,
                        "value": first.value,
                        "threshold": first.threshold,
                        "anomaly_ids": [f.id for f in hits[close]],
                    }
                )
            raised[alarm] = now_raised
    return raised, events


def _garch_reference(
    history: MarketHistory,
    since: datetime,
    warmed: datetime,
    fits: Mapping[str, Any],
    cfg: MonitorConfig,
) -> tuple[GarchReference, dict[str, Any]]:
    """A fit on the returns before the first evaluated bar, or on the warm-up bars when there
    are too few before it (then GARCH judges only the bars after them), reused while it still
    ends before the evaluated bars: the parameters never saw the returns they judge."""
    from models.garch import GarchParams

    stored = fits.get(history.symbol)
    if stored is not None and datetime.fromisoformat(stored["fitted_through"]) < since:
        params = GarchParams(**{k: float(stored[k]) for k in GarchParams.__dataclass_fields__})
        reference = GarchReference(
            params=params,
            source="fit",
            fitted_through=datetime.fromisoformat(stored["fitted_through"]),
        )
        return reference, dict(stored)
    reference = fit_garch_reference(
        history.candles, symbol=history.symbol, before=max(since, warmed), config=cfg.garch
    )
    if reference.fitted_through is None:
        raise ConfigError(f"{history.symbol}: no returns before {since.isoformat()} to fit on")
    fitted = {
        "fitted_through": reference.fitted_through.astimezone(UTC).isoformat(),
        **reference.params.as_dict(),
    }
    return reference, fitted


def _first_run_start(history: MarketHistory, cfg: MonitorConfig) -> datetime:
    """A first run evaluates after ``warmup_bars`` bars (the GARCH fit's data)."""
    stamps = history.candles["event_ts"]
    index = min(cfg.warmup_bars, len(stamps) - 1)
    return pd.Timestamp(stamps.iloc[index]).to_pydatetime()


def _last_evaluated(store: DecisionsStore, bar: timedelta) -> datetime | None:
    last = store.monitor_state(LAST_BAR_KEY)
    return None if last is None else datetime.fromisoformat(last) + bar


def _aware(moment: datetime, what: str) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ConfigError(f"{what} must be timezone-aware (UTC), got {moment.isoformat()}")
    return moment.astimezone(UTC)
