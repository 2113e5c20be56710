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
from serving.decisions_store import DecisionsStore
from serving.market import MarketHistory, market_history, open_market
from sextant.config import PositiveInt, SextantConfig
from sextant.errors import ConfigError
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["DRIFT_EVENT", "Emit", "MonitorConfig", "MonitorReport", "run_monitor"]

log = logging.getLogger(__name__)

DRIFT_EVENT = "sextant.drift.detected"
LAST_BAR_KEY = "monitor:last_bar"  # the newest bar open the monitor has evaluated
GARCH_FITS_KEY = "monitor:garch_fits"  # fallback GARCH fits, per symbol, reused across runs

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
        }


def run_monitor(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    since: datetime | None = None,
    now: datetime | None = None,
    config: MonitorConfig | None = None,
) -> MonitorReport:
    """Run every detector over the bars from ``since`` and store what they find (idempotent)."""
    cfg = config or MonitorConfig()
    chosen = tuple(symbols or settings.symbols)
    moment = _aware(now or datetime.now(UTC), "now")
    bar = timeframe_to_timedelta(settings.timeframe)
    with DecisionsStore.open(settings.paths.decisions_db) as store:
        start = _aware(since, "since") if since is not None else _last_evaluated(store, bar)
        findings: list[Finding] = []
        fits = dict(store.monitor_state(GARCH_FITS_KEY) or {})
        garch_used: dict[str, dict[str, Any]] = {}
        watched: list[tuple[str, str]] = []  # candle series missing_bar covers
        first: datetime | None = None  # the earliest bar evaluated
        newest: datetime | None = None
        with open_market(settings) as market:
            for symbol in chosen:
                history = market_history(
                    market,
                    settings,
                    symbol,
                    start=None if start is None else start - cfg.history_bars * bar,
                )
                if history.candles.empty:
                    log.warning("no %s candles stored: nothing to monitor", symbol)
                    continue
                watched.append((history.source, symbol))
                warmed = _first_run_start(history, cfg)
                evaluated = start or warmed
                first = evaluated if first is None else min(first, evaluated)
                reference, fitted = _garch_reference(history, evaluated, warmed, fits, cfg)
                fits[symbol] = fitted
                garch_used[symbol] = reference.as_evidence()
                findings += _market_findings(history, reference, evaluated, moment, settings, cfg)
                last = history.candles["event_ts"].iloc[-1].to_pydatetime()
                newest = last if newest is None else max(newest, last)
            findings += _data_findings(market, watched, start, cfg)
        detected = moment.isoformat()
        records = [{**f.as_record(), "detected_at": detected} for f in findings]
        state: dict[str, Any] = {GARCH_FITS_KEY: fits}
        if newest is not None:
            state[LAST_BAR_KEY] = newest.isoformat()
        stored = store.record_anomalies(records, state=state)
    report = MonitorReport(
        since=first,
        until=newest,
        symbols=chosen,
        findings=tuple(findings),
        stored=stored,
        garch=garch_used,
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
    cfg: MonitorConfig,
) -> list[Finding]:
    log_frame = read_ingest_log(market, since=since)
    reasons = read_quarantine_reasons(market, since=since)
    found = quarantine_spike(
        log_frame, quarantine_reasons=reasons, config=cfg.quarantine, since=since
    )
    found += empty_ingest(log_frame, config=cfg.empty_ingest, since=since)
    # holes of the candles the models read are `missing_bar`'s (market side); the data side
    # reports every other stored series' holes
    for dataset in ("candles", "funding", "fear_greed"):
        stored = read_series_timestamps(market, dataset, start=None)
        found += series_gap(
            stored, dataset=dataset, config=cfg.series_gap, since=since, watched=watched
        )
    return found


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
