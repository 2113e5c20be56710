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

`Monitor` is the long-lived form (``sextant monitor --follow``): opened once, it keeps the
decisions store, the MLflow client, the champions' drift references, the trailing market windows
and the feature rows between bars, and reads only what is new each bar; its results equal
``run_monitor``'s (which is ``Monitor.open`` + one ``run`` + close). Cache rules:

- market windows: the market store is attached read-only only while a run reads it (an ingest in
  another process is never blocked between runs). Each run reads the ingest log since the newest
  entry it has seen: a series with no new entry is unchanged (ingest is the only writer); new
  rows after the held ones are read alone; an entry that added rows at or before the newest held
  one (a late fill), or candles of another source, re-reads that symbol's window. Every
  ``reread_every_runs`` runs the whole window is read again (edits that bypass ingest);
- ingest log: the entries logged after the newest held one are read and appended, those
  before the span's start dropped; data quality judges only the series with new entries;
- series rows (`series_gap`): the held rows (with every series' newest row before the cutoff)
  narrowed to the later span (`narrow_series_timestamps`); a series whose new log entries each
  added one row that became its newest gets those rows appended, the other series the new
  entries added rows to are read again;
- feature rows: reused while the feature tables' files are unchanged (an atomic replace is a new
  file), read again when one changes (the window's rows as the files now hold them; the tables
  are time-major, so only the row groups reaching the window are decoded), ahead of the market
  reads in a worker thread;
- champions: the alias is looked up again when something was committed to the registry's sqlite
  database (`serving.champions.registry_change_token`, as the decision engine's poll), and at
  least every ``champion_recheck_s`` seconds (a registry server: only the latter).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import numpy as np
import numpy.typing as npt
import pandas as pd

from agents.monitoring.data_quality import (
    NO_SYMBOL,
    EmptyIngestConfig,
    QuarantineConfig,
    SeriesGapConfig,
    StoreReader,
    empty_ingest,
    narrow_series_timestamps,
    quarantine_spike,
    read_ingest_log,
    read_quarantine_reasons,
    read_series_timestamps,
    runs_shared,
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
    checked_once,
    fit_garch_reference,
    funding_extreme,
    garch_residual,
    missing_bar,
    price_gap,
    volume_spike,
)
from models.drift_reference import DriftReference
from serving.champions import registry_change_token, registry_client
from serving.decisions_store import DecisionsStore
from serving.market import (
    MarketHistory,
    MarketReader,
    market_histories,
    market_updates,
    perp_of,
)
from serving.metrics import DRIFT_FIGURES_KEY
from serving.monitoring_inputs import feature_files, feature_history, matured_outcomes
from sextant.config import PositiveFloat, PositiveInt, SextantConfig
from sextant.contracts import CHAMPION, REGISTERED_MODELS
from sextant.errors import ConfigError, SourceUnavailableError
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "DRIFT_EVENT",
    "Emit",
    "Monitor",
    "MonitorConfig",
    "MonitorReport",
    "follow_monitor",
    "next_run_at",
    "run_monitor",
]

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
    # a long-lived Monitor: look the champion aliases up again at least this often (seconds; a
    # sqlite registry is also re-read whenever its file changed)
    champion_recheck_s: PositiveFloat = 300.0
    # a long-lived Monitor: read the whole market window again every this many runs (catches
    # edits to the store that bypass ingest and its log)
    reread_every_runs: PositiveInt = 24


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
    ``emit`` receives one ``DRIFT_EVENT`` per model drift alarm that rose. One-shot: opens the
    stores, runs once, closes (`Monitor` keeps them open between bars)."""
    with Monitor.open(settings, config=config) as monitor:
        return monitor.run(symbols=symbols, since=since, now=now, emit=emit)


def next_run_at(moment: datetime, bar: timedelta, delay: timedelta) -> datetime:
    """The first bar close (bars close on multiples of ``bar`` since the epoch) plus ``delay``
    strictly after ``moment``."""
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    closes = (moment - delay - epoch) // bar + 1
    return epoch + closes * bar + delay


def follow_monitor(
    settings: Settings,
    *,
    symbols: Sequence[str] | None = None,
    config: MonitorConfig | None = None,
    emit: Emit | None = None,
    bars: int | None = None,
    delay: timedelta = timedelta(seconds=30),
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    sleep: Callable[[float], None] = time.sleep,
    on_report: Callable[[MonitorReport], None] | None = None,
) -> int:
    """The long-lived host (``sextant monitor --follow``): one `Monitor` kept open, run now and
    then ``delay`` after each bar close, until ``bars`` runs (None: until interrupted). A market
    store held by an ingest is retried ``delay`` later. Returns the runs made."""
    bar = timeframe_to_timedelta(settings.timeframe)
    done = 0
    with Monitor.open(settings, config=config) as monitor:
        while bars is None or done < bars:
            try:
                report = monitor.run(symbols=symbols, now=_aware(clock(), "clock"), emit=emit)
            except SourceUnavailableError as exc:
                log.warning("monitor: %s; retrying in %s", exc, delay)
                sleep(delay.total_seconds())
                continue
            done += 1
            if on_report is not None:
                on_report(report)
            if bars is not None and done >= bars:
                break
            moment = _aware(clock(), "clock")
            sleep(max(0.0, (next_run_at(moment, bar, delay) - moment).total_seconds()))
    return done


@dataclass
class _MarketCache:
    """The trailing market windows a `Monitor` holds between runs."""

    start: datetime | None = None  # rows held from (None: everything stored)
    held: dict[str, MarketHistory] = field(default_factory=dict)
    absent: set[str] = field(default_factory=set)  # symbols read and found without candles
    seen: pd.Timestamp | None = None  # the newest ingest log entry seen
    runs: int = 0  # runs since the last read of every window


@dataclass
class _LogCache:
    """The ingest log a `Monitor` holds between runs (ingest only appends to it)."""

    start: datetime | None = None  # entries held from (None: all)
    frame: pd.DataFrame | None = None
    newest: datetime | None = None  # the newest entry held
    runs: int = 0  # runs since the last read of the whole span


@dataclass
class _SeriesCache:
    """One dataset's `read_series_timestamps` rows with ``every_series`` as a `Monitor` last
    derived them (every series' newest row before the cutoff kept: a new row's predecessor)."""

    start: datetime | None
    since: datetime
    frame: pd.DataFrame
    seen: datetime | None  # the newest ingest log entry they reflect
    watched: frozenset[tuple[str, str]]
    runs: int = 0  # runs since the last read of every series


@dataclass
class _FeatureCache:
    marks: tuple[tuple[int, int, int], ...] = ()  # (inode, mtime_ns, size) of each table file
    start: datetime | None = None
    symbols: frozenset[str] = frozenset()
    columns: frozenset[str] = frozenset()
    frame: pd.DataFrame | None = None


@dataclass
class _Champion:
    version: str | None
    reference: DriftReference | None
    mark: tuple[int, int] | None  # the registry's change token taken before the lookup
    checked: float  # time.monotonic() of the lookup


class Monitor:
    """The monitor kept open between bars (``sextant monitor --follow``): ``run`` equals
    `run_monitor` in findings, stored records and events, reading only what is new (module
    docstring: cache rules). One run at a time; close it (or use it as a context manager)."""

    def __init__(self, settings: Settings, config: MonitorConfig, store: DecisionsStore) -> None:
        self.settings = settings
        self.config = config
        self._store = store
        self._reader = MarketReader(settings)
        self._client: Any = None
        self._market = _MarketCache()
        self._log = _LogCache()
        self._series: dict[str, _SeriesCache] = {}
        self._pool: ThreadPoolExecutor | None = None  # reads the feature tables ahead
        self._prefetch: Future[_FeatureCache] | None = None
        self._features = _FeatureCache()
        self._champions: dict[str, _Champion] = {}
        self._registry = registry_change_token(settings)

    @classmethod
    def open(cls, settings: Settings, *, config: MonitorConfig | None = None) -> Monitor:
        """Open the decisions store (created on first use); the market store is attached per
        run, the MLflow client on first need."""
        store = DecisionsStore.open(settings.paths.decisions_db)
        return cls(settings, config or MonitorConfig(), store)

    def close(self) -> None:
        """Close the stores, the registry's change watch and the feature reader thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._prefetch = None, None
        self._reader.close()
        self._registry.close()
        self._store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def run(
        self,
        *,
        symbols: Sequence[str] | None = None,
        since: datetime | None = None,
        now: datetime | None = None,
        emit: Emit | None = None,
    ) -> MonitorReport:
        """Run every detector over the bars from ``since`` (default: after the last bar
        evaluated) and store what they find; ``emit`` receives each drift event that rose."""
        settings, cfg, store = self.settings, self.config, self._store
        chosen = tuple(symbols or settings.symbols)
        moment = _aware(now or datetime.now(UTC), "now")
        bar = timeframe_to_timedelta(settings.timeframe)
        start = _aware(since, "since") if since is not None else _last_evaluated(store, bar)
        history_start = None if start is None else start - cfg.history_bars * bar
        findings: list[Finding] = []
        fits = dict(store.monitor_state(GARCH_FITS_KEY) or {})
        garch_used: dict[str, dict[str, Any]] = {}
        histories: dict[str, MarketHistory] = {}
        watched: list[tuple[str, str]] = []  # candle series missing_bar covers
        first: datetime | None = None  # the earliest bar evaluated
        newest: datetime | None = None
        last_run = store.monitor_state(LAST_RUN_KEY)
        runs_since = None if last_run is None else datetime.fromisoformat(last_run)
        # the ingest runs since the last run are judged against the trailing runs
        log_start = None if runs_since is None else runs_since - INGEST_LOOKBACK
        references = None
        if start is not None and cfg.drift_families:
            # the drift step reads the feature rows of the closes after ``start``: start
            # reading them now, alongside the market reads (`_prefetch_features`)
            references = self._references()
            columns = sorted({name for r in references.values() for name in r.features})
            self._prefetch_features(chosen, self._feature_lookback(start + bar), columns)
        with self._reader.attached() as market:
            ingest_log = self._ingest_log(market, log_start)
            read = self._histories(market, chosen, history_start, ingest_log, log_start)
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
            findings += _data_findings(
                market,
                ingest_log,
                watched,
                start,
                runs_since,
                cfg,
                lambda dataset: self._series_timestamps(
                    market, dataset, history_start, start, watched, ingest_log, log_start
                ),
            )
        # model drift is judged at bar closes: those of the bars evaluated here (the close at
        # `first` itself ends the bar before, judged by the run that evaluated that bar)
        closes_from = None if first is None else first + bar
        drift, figures, judged = self._drift_findings(histories, closes_from, references)
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

    # -- what is held between runs ---------------------------------------------------------

    def _ingest_log(self, market: Any, start: datetime | None) -> pd.DataFrame:
        """`read_ingest_log` from ``start``: the held entries from ``start`` and those logged
        after the newest held (ingest appends entries in ``logged_at`` order); all of it again
        on a first run, when ``start`` moved back, and every ``reread_every_runs`` runs."""
        cache = self._log
        cache.runs += 1
        covered = (
            cache.frame is not None
            and cache.newest is not None
            and (cache.start is None or (start is not None and start >= cache.start))
            and cache.runs < self.config.reread_every_runs
        )
        if not covered:
            frame = read_ingest_log(market, since=start)
            cache.runs = 0
        else:
            assert cache.frame is not None
            new = read_ingest_log(market, since=start, after=cache.newest)
            frame = cache.frame
            if start is not None and not frame.empty:
                kept = np.asarray(_utc_times(frame["logged_at"]) >= pd.Timestamp(start))
                if not kept.all():
                    frame = frame[kept].reset_index(drop=True)
            if not new.empty:
                frame = new if frame.empty else pd.concat([frame, new], ignore_index=True)
        cache.start, cache.frame = start, frame
        cache.newest = (
            None if frame.empty else pd.Timestamp(frame["logged_at"].max()).to_pydatetime()
        )
        return frame

    def _histories(
        self,
        market: Any,
        symbols: Sequence[str],
        start: datetime | None,
        ingest_log: pd.DataFrame,
        log_start: datetime | None,
    ) -> dict[str, MarketHistory]:
        """Each symbol's candles and funding from ``start``, as `market_histories` reads them,
        from the held windows plus what the ingest log (``ingest_log``: the entries from
        ``log_start``) says changed."""
        cache, settings = self._market, self.settings
        seen = (
            pd.Timestamp(ingest_log["logged_at"].max())
            if not ingest_log.empty
            else _newest_log_entry(market)
        )
        covered = cache.seen is not None and (
            cache.start is None or (start is not None and start >= cache.start)
        )
        if not covered or cache.runs + 1 >= self.config.reread_every_runs:
            cache.held, cache.absent, cache.runs = {}, set(), 0
            cache.seen, cache.start = None, start
        else:
            cache.runs += 1
        entries = None
        if cache.seen is not None:
            entries = (
                _logged_after(ingest_log, cache.seen)
                if log_start is None or cache.seen >= pd.Timestamp(log_start)
                else _log_entries(market, cache.seen)
            )
        reread: set[str] = {s for s in symbols if s not in cache.held and s not in cache.absent}
        candles_after: dict[str, tuple[str, pd.Timestamp | None]] = {}
        funding_after: dict[str, pd.Timestamp | None] = {}
        if entries is not None and not entries.empty:
            # per symbol, the (source, first row) of each entry that added candles, and the
            # first rows of those that added its perpetual's funding
            added_candles: dict[str, list[tuple[str, Any]]] = {}
            added_funding: dict[str, list[Any]] = {}
            for dataset, source, name, timeframe, rows, first_ts in zip(
                entries["dataset"],
                entries["source"],
                entries["symbol"],
                entries["timeframe"],
                entries["rows_added"],
                entries["first_ts"],
                strict=True,
            ):
                if rows <= 0:
                    continue
                if dataset == "candles" and timeframe == settings.timeframe:
                    added_candles.setdefault(str(name), []).append((str(source), first_ts))
                elif dataset == "funding":
                    added_funding.setdefault(str(name), []).append(first_ts)
            # every symbol held or known absent too: the entries are consumed here
            for symbol in sorted({*symbols, *cache.held, *cache.absent}):
                held = cache.held.get(symbol)
                candle_entries = added_candles.get(symbol, [])
                funding_entries = added_funding.get(perp_of(symbol), [])
                if held is None:
                    if candle_entries:  # absent until now
                        reread.add(symbol)
                    continue
                last_candle = _last(held.candles)
                last_rate = _last(held.funding)
                late = (
                    any(source != held.source for source, _ in candle_entries)
                    or _before([first for _, first in candle_entries], last_candle)
                    or _before(funding_entries, last_rate)
                )
                if late:
                    reread.add(symbol)
                    continue
                if candle_entries:
                    candles_after[symbol] = (held.source, last_candle)
                if funding_entries:
                    funding_after[symbol] = last_rate
        if reread:
            fresh = market_histories(market, settings, sorted(reread), start=cache.start)
            for symbol in reread:
                if symbol in fresh:
                    cache.held[symbol] = fresh[symbol]
                    cache.absent.discard(symbol)
                else:
                    cache.held.pop(symbol, None)
                    cache.absent.add(symbol)
        new = (
            market_updates(market, settings, candles_after, funding_after)
            if candles_after or funding_after
            else {}
        )
        cache.seen = seen
        if start is not None and (cache.start is None or start > cache.start):
            cache.start = start  # the window moves forward: drop what no run will read again
        for symbol, held in list(cache.held.items()):
            new_candles, new_funding = new.get(symbol, (None, None))
            candles = _window(held.candles, new_candles, cache.start)
            funding = _window(held.funding, new_funding, cache.start)
            if candles is not held.candles or funding is not held.funding:
                cache.held[symbol] = MarketHistory(symbol, held.source, candles, funding)
        return {s: cache.held[s] for s in symbols if s in cache.held}

    def _series_timestamps(
        self,
        market: Any,
        dataset: str,
        start: datetime | None,
        since: datetime | None,
        watched: Sequence[tuple[str, str]],
        ingest_log: pd.DataFrame,
        log_start: datetime | None,
    ) -> pd.DataFrame:
        """`read_series_timestamps` of ``dataset`` from ``start`` closing from ``since``: the
        held rows narrowed to the later span (`narrow_series_timestamps`), the rows the ingest
        log says were appended one at a time added (`_appended_after_held`), the other series
        it says gained rows since read again. Everything is read again on a first
        run, when the span moved back, when the log no longer covers the held rows' time, when
        an entry names no series (``*``), when the watched candle series changed (their rows
        are not held), and every ``reread_every_runs`` runs."""
        seen = self._log.newest
        if since is None:
            self._series.pop(dataset, None)
            return read_series_timestamps(market, dataset, start=start)
        mine = frozenset(watched) if dataset == "candles" else frozenset()
        held = self._series.get(dataset)
        changed = (
            None
            if held is None
            or since < held.since
            or not (held.start is None or (start is not None and start >= held.start))
            or held.seen is None
            or (log_start is not None and held.seen < log_start)
            or held.watched != mine
            or held.runs + 1 >= self.config.reread_every_runs
            else _changed_series(ingest_log, dataset, held.seen, mine)
        )
        # a series' new newest rows, logged one at a time, are appended to what is held; the
        # other changed series are read again
        appended: dict[Series, list[pd.Timestamp]] = {}
        unread: set[Series] | None = None
        if held is not None and changed is not None:
            appended = _appended_after_held(changed, held.frame)
            unread = {key for key in changed if key not in appended}
            if len(unread) > _SERIES_PER_READ:
                unread = None  # one scan for all beats a filter of that many series
        if held is None or unread is None:
            frame = read_series_timestamps(
                market, dataset, start=start, closing_from=since, every_series=True
            )
            if mine:  # `series_gap` skips the watched candle series: they are not held
                frame = _without_watched(frame, mine)
            self._series[dataset] = _SeriesCache(start, since, frame, seen, mine)
            return narrow_series_timestamps(frame, start=start, closing_from=since)
        frame = _with_appended(held.frame, appended) if appended else held.frame
        if not unread:  # the held span stays (the rows appended belong to it as well)
            self._series[dataset] = dataclasses.replace(
                held, frame=frame, seen=seen, runs=held.runs + 1
            )
            return narrow_series_timestamps(frame, start=start, closing_from=since)
        frame = narrow_series_timestamps(frame, start=start, closing_from=since, every_series=True)
        fresh = read_series_timestamps(
            market, dataset, start=start, closing_from=since, series=unread, every_series=True
        )
        keys = list(zip(frame["source"], frame["symbol"], frame["timeframe"], strict=True))
        kept = frame[np.array([key not in unread for key in keys], dtype=bool)]
        frame = (
            fresh  # ordered as the read orders them: no other series' rows to merge in
            if kept.empty
            else pd.concat([kept, fresh], ignore_index=True)
            .sort_values(["source", "symbol", "timeframe", "event_ts"], kind="stable")
            .reset_index(drop=True)
        )
        self._series[dataset] = _SeriesCache(start, since, frame, seen, mine, held.runs + 1)
        return narrow_series_timestamps(frame, start=start, closing_from=since)

    def _client_now(self) -> Any:
        if self._client is None:
            self._client = registry_client(self.settings)
        return self._client

    def _champion_reference(self, family: str) -> DriftReference | None:
        """The family champion's drift reference; the alias is looked up again when the
        registry changed (its change token) or ``champion_recheck_s`` passed."""
        mark = self._registry.token()
        held = self._champions.get(family)
        fresh = (
            held is not None
            and (mark is None or held.mark == mark)
            and time.monotonic() - held.checked < self.config.champion_recheck_s
        )
        if held is not None and fresh:
            return held.reference
        checked = time.monotonic()
        version, reference = _drift_reference(self.settings, self._client_now(), family)
        self._champions[family] = _Champion(version, reference, mark, checked)
        return reference

    def _prefetch_features(
        self, symbols: Sequence[str], start: datetime, columns: Sequence[str]
    ) -> None:
        """Start reading the feature tables' rows `_feature_rows` will ask for, in a worker
        thread, when the held rows no longer cover them (the files changed): the decoding
        (arrow, outside the GIL) overlaps the market reads and detectors. Its result is used
        only if the files are still the ones it read (their marks, taken before)."""
        marks = _file_marks(feature_files(self.settings))
        wanted, names = frozenset(symbols), frozenset(columns)
        if _covers(self._features, marks, start, wanted, names) or not names:
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="sextant-monitor-features")
        settings = self.settings

        def read() -> _FeatureCache:
            frame = feature_history(settings, sorted(wanted), start, columns=sorted(names))
            return _FeatureCache(marks, start, wanted, names, frame)

        self._prefetch = self._pool.submit(read)

    def _prefetched(
        self,
        marks: tuple[tuple[int, int, int], ...],
        start: datetime,
        wanted: frozenset[str],
        names: frozenset[str],
    ) -> _FeatureCache | None:
        """The prefetched rows, if they cover this request on the same files."""
        pending, self._prefetch = self._prefetch, None
        if pending is None:
            return None
        fetched = pending.result()  # its errors are the read's errors
        return fetched if _covers(fetched, marks, start, wanted, names) else None

    def _feature_rows(
        self, symbols: Sequence[str], start: datetime, columns: Sequence[str]
    ) -> pd.DataFrame:
        """The feature tables' rows from ``start`` (held while the files are unchanged)."""
        cache = self._features
        marks = _file_marks(feature_files(self.settings))
        wanted, names = frozenset(symbols), frozenset(columns)
        if not _covers(cache, marks, start, wanted, names):
            fetched = self._prefetched(marks, start, wanted, names)
            if fetched is None:
                frame = feature_history(self.settings, sorted(wanted), start, columns=sorted(names))
                fetched = _FeatureCache(marks, start, wanted, names, frame)
            self._features = cache = fetched
        assert cache.frame is not None
        frame = cache.frame
        kept = (frame["available_at"] >= pd.Timestamp(start)) & frame["symbol"].isin(wanted)
        return frame if kept.all() else frame[kept]  # the rows read for this request: all

    def _references(self) -> dict[str, DriftReference]:
        """The drift reference of each family's champion that has one."""
        references: dict[str, DriftReference] = {}
        for family in self.config.drift_families:
            reference = self._champion_reference(family)
            if reference is not None:  # none: no champion, or one registered before references
                references[family] = reference
        return references

    def _feature_lookback(self, since: datetime) -> datetime:
        """The first bar close the drift step reads rows from, for closes from ``since``."""
        cfg = self.config
        bar = timeframe_to_timedelta(self.settings.timeframe)
        return since - max(cfg.feature_drift.window_bars, cfg.calibration_decay.window) * bar * 2

    def _drift_findings(
        self,
        histories: Mapping[str, MarketHistory],
        since: datetime | None,
        references: dict[str, DriftReference] | None = None,
    ) -> tuple[list[Finding], dict[str, dict[str, float | None]], tuple[str, ...]]:
        """Model drift of each direction champion that has a reference, and the account's
        decision mix; the latest figure per family and statistic for the service's gauges. A
        finding's kind names its family (``feature_drift_xgb``): both families judge the same
        symbol and bar."""
        if since is None:
            return [], {}, ()
        settings, cfg = self.settings, self.config
        lookback = self._feature_lookback(since)
        records = self._store.latest(
            1_000_000,
            account=settings.paper_account,
            start=lookback - cfg.decision_mix.reference_hours * timedelta(hours=1),
        )
        findings: list[Finding] = []
        figures: dict[str, dict[str, float | None]] = {}
        judged: list[str] = []
        if references is None:
            references = self._references()
        columns = sorted({name for r in references.values() for name in r.features})
        history: pd.DataFrame | None = None
        for family, reference in references.items():
            judged.append(family)
            symbols = [s for s in histories if s in reference.symbols]
            found: list[Finding] = []
            if history is None:  # one read serves both families: the feature tables hold both
                history = _window_rows(
                    self._feature_rows(list(histories), lookback, columns),
                    since,
                    cfg.feature_drift.window_bars,
                )
            # the rows are those of `histories`' symbols: filter only when some lack a reference
            features = (
                history
                if len(symbols) == len(histories)
                else history[history["symbol"].isin(symbols)]
            )
            if not features.empty:
                found += feature_drift(features, reference, config=cfg.feature_drift, since=since)
            rows = [
                {"symbol": r["symbol"], "ts": r["ts"], "p_up": r["models"][f"p_{family}"]}
                for r in records
                if r["symbol"] in symbols
            ]
            if rows:  # no decisions: no frame to build (a few ms of pandas for nothing)
                predictions = pd.DataFrame(rows, columns=["symbol", "ts", "p_up"]).astype(
                    {"p_up": float}
                )
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


def _window_rows(frame: pd.DataFrame, since: datetime, window: int) -> pd.DataFrame:
    """Per symbol, the rows `feature_drift` reads for the closes from ``since``: each close's
    window is its last ``window`` rows, so the rows before the ``window``-th before ``since``
    never enter one (the findings are the same as over the whole frame)."""
    if frame.empty:
        return frame
    times = (
        pd.DatetimeIndex(frame["available_at"]).as_unit("ns").tz_convert(None).to_numpy()
    ).view(np.int64)
    codes = frame["symbol"].to_numpy()
    if not _sorted_by(codes, times):  # `feature_history` orders them so: no sort then
        order = np.lexsort((times, codes))
        frame, times, codes = frame.iloc[order], times[order], codes[order]
    keep = np.zeros(len(frame), dtype=bool)
    bounds = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1], True])
    cutoff = pd.Timestamp(since).as_unit("ns").value
    for lo, hi in itertools.pairwise(bounds):
        first = lo + int(np.searchsorted(times[lo:hi], cutoff, side="left"))
        keep[max(lo, first - window) : hi] = True
    return frame[keep]


def _sorted_by(codes: npt.NDArray[Any], times: npt.NDArray[np.int64]) -> bool:
    """Whether rows are ordered by symbol, then time (ties kept in order)."""
    if len(codes) < 2:
        return True
    later_symbol = codes[1:] > codes[:-1]
    same_symbol = codes[1:] == codes[:-1]
    return bool(np.all(later_symbol | (same_symbol & (times[1:] >= times[:-1]))))


def _newest_log_entry(market: StoreReader) -> pd.Timestamp | None:
    found = market.query("SELECT max(logged_at) AS seen FROM ingest_log")["seen"].iloc[0]
    return None if pd.isna(found) else pd.Timestamp(found)


def _log_entries(market: StoreReader, after: pd.Timestamp) -> pd.DataFrame:
    """The ingest log's entries after ``after`` (ingest writes one per batch, in order)."""
    return market.query(
        "SELECT dataset, source, symbol, timeframe, rows_added, first_ts, logged_at "
        "FROM ingest_log WHERE logged_at > ?",
        [after.to_pydatetime()],
    )


def _logged_after(ingest_log: pd.DataFrame, seen: pd.Timestamp) -> pd.DataFrame:
    """The entries logged after ``seen``: the log's tail when it is in ``logged_at`` order
    (as `_ingest_log` holds it: a slice, not a copy of the log)."""
    stamps, ordered = _log_times(ingest_log)
    if ordered:
        return ingest_log.iloc[int(stamps.searchsorted(seen, side="right")) :]
    return ingest_log[stamps > seen]


# the last log frame's `logged_at` times and whether they are in order: a run cuts the same
# log several times (the market windows, each dataset's series); the monitor's log frames are
# never changed in place (a new entry makes a new frame)
_LOG_TIMES: list[tuple[pd.DataFrame | None, pd.DatetimeIndex, bool]] = [
    (None, pd.DatetimeIndex([], tz="UTC"), True)
]


def _log_times(ingest_log: pd.DataFrame) -> tuple[pd.DatetimeIndex, bool]:
    held, stamps, ordered = _LOG_TIMES[0]
    if held is not ingest_log or len(stamps) != len(ingest_log):
        stamps = _utc_times(ingest_log["logged_at"])
        ordered = bool(stamps.is_monotonic_increasing)
        _LOG_TIMES[0] = (ingest_log, stamps, ordered)
    return stamps, ordered


def _utc_times(column: pd.Series) -> pd.DatetimeIndex:
    """A time column as UTC (``pd.to_datetime`` costs milliseconds on one that is tz-aware
    already: it parses element by element)."""
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        return pd.DatetimeIndex(column).tz_convert("UTC")
    return pd.DatetimeIndex(pd.to_datetime(column, utc=True))


def _last(frame: pd.DataFrame) -> pd.Timestamp | None:
    return None if frame.empty else pd.Timestamp(frame["event_ts"].iloc[-1])


def _before(firsts: Sequence[Any], last: pd.Timestamp | None) -> bool:
    """Whether an entry added rows at or before ``last`` (a late fill of a held window)."""
    if last is None:
        return False
    return any(pd.isna(first) or pd.Timestamp(first) <= last for first in firsts)


def _window(held: pd.DataFrame, new: pd.DataFrame | None, start: datetime | None) -> pd.DataFrame:
    """``held`` from ``start`` on with ``new`` appended (``held`` itself when unchanged)."""
    skip = 0
    if start is not None and not held.empty:
        skip = int(held["event_ts"].array.searchsorted(pd.Timestamp(start), side="left"))
    if new is None or new.empty:
        return held if skip == 0 else held.iloc[skip:].reset_index(drop=True)
    if held.empty:
        return new.reset_index(drop=True)
    return pd.concat([held.iloc[skip:], new], ignore_index=True)


def _covers(
    held: _FeatureCache,
    marks: tuple[tuple[int, int, int], ...],
    start: datetime,
    wanted: frozenset[str],
    names: frozenset[str],
) -> bool:
    """Whether ``held`` rows answer a read from ``start`` of ``wanted`` symbols' ``names``
    on the files with ``marks``."""
    return (
        held.frame is not None
        and marks == held.marks
        and held.start is not None
        and start >= held.start
        and wanted <= held.symbols
        and names <= held.columns
    )


def _file_marks(paths: Sequence[Path]) -> tuple[tuple[int, int, int], ...]:
    marks = []
    for path in paths:
        try:
            found = path.stat()
        except FileNotFoundError:
            marks.append((0, 0, -1))
            continue
        marks.append((found.st_ino, found.st_mtime_ns, found.st_size))
    return tuple(marks)


def _market_findings(
    history: MarketHistory,
    reference: GarchReference,
    since: datetime,
    now: datetime,
    settings: Settings,
    cfg: MonitorConfig,
) -> list[Finding]:
    # GARCH judges only returns after the ones its reference was fitted on
    fitted = reference.fitted_through
    judged = (
        since if fitted is None else max(since, fitted + timeframe_to_timedelta(settings.timeframe))
    )
    with checked_once():  # one frame, five detectors: validated once
        return _market_detectors(history, reference, judged, since, now, settings, cfg)


def _market_detectors(
    history: MarketHistory,
    reference: GarchReference,
    judged: datetime,
    since: datetime,
    now: datetime,
    settings: Settings,
    cfg: MonitorConfig,
) -> list[Finding]:
    symbol, candles = history.symbol, history.candles
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
    log_frame: pd.DataFrame,
    watched: Sequence[tuple[str, str]],
    since: datetime | None,
    runs_since: datetime | None,
    cfg: MonitorConfig,
    series_rows: Callable[[str], pd.DataFrame],
) -> list[Finding]:
    """The ingest runs logged since the monitor's last run (``log_frame``: the log from
    ``INGEST_LOOKBACK`` before it, the trailing runs they are judged against), and the holes
    closed from ``since`` in each dataset's series (``series_rows``: `read_series_timestamps`
    from the history's start, closing from ``since``)."""
    judged = log_frame
    quarantined = added_nothing = True  # whether a judged run may be a finding of each kind
    if runs_since is not None:
        judged = log_frame[
            np.asarray(_utc_times(log_frame["logged_at"]) >= pd.Timestamp(runs_since))
        ]
        # only series with an entry since the last run can have a run judged now, and a run's
        # trailing rate reads its own series' runs: the other series' entries change nothing
        log_frame = _series_of(log_frame, judged)
        # a judged run is one with an entry since the last run (its latest time); both
        # detectors report only a run that quarantined rows, or one that added none
        quarantined, added_nothing = _judged_runs_may(log_frame, judged)
    found: list[Finding] = []
    with runs_shared():  # both detectors group the same log into runs: once
        if quarantined:
            # the reasons are evidence of a quarantine finding: read only when one is possible
            reasons = (
                read_quarantine_reasons(market, since=runs_since)
                if (judged["rows_quarantined"] > 0).any()
                else None
            )
            found += quarantine_spike(
                log_frame, quarantine_reasons=reasons, config=cfg.quarantine, since=runs_since
            )
        if added_nothing:
            found += empty_ingest(log_frame, config=cfg.empty_ingest, since=runs_since)
    # holes of the candles the models read are `missing_bar`'s (market side); the data side
    # reports every other stored series' holes
    for dataset in ("candles", "funding", "fear_greed"):
        stored = series_rows(dataset)
        found += series_gap(
            stored, dataset=dataset, config=cfg.series_gap, since=since, watched=watched
        )
    return found


_LOG_SERIES = ["dataset", "source", "symbol", "timeframe"]  # an ingest log entry's series
_SERIES_PER_READ = 32  # more changed series than this: read the dataset's rows whole


Series = tuple[str, str, str]  # (source, symbol, timeframe) as `read_series_timestamps` names it


def _changed_series(
    ingest_log: pd.DataFrame,
    dataset: str,
    after: datetime,
    watched: frozenset[tuple[str, str]],
) -> dict[Series, list[pd.Timestamp] | None] | None:
    """The series of ``dataset`` that entries logged after ``after`` added rows to (watched
    candle series left out), each with the times of the rows they appended one at a time, or
    None where an entry did otherwise; None when an entry names no series (a batch for ``*``
    may hold any). An entry appended one row when it added one (``rows_added == 1``) out of
    one valid row that became the series' newest (``first_ts == last_ts == last_event_ts``:
    the ingest logs the series' newest stored time after its write)."""
    changed: dict[Series, list[pd.Timestamp] | None] = {}
    if ingest_log.empty:
        return changed
    # the entries after ``after`` first (a few per bar), then their dataset and rows
    later = _logged_after(ingest_log, pd.Timestamp(after))
    if later.empty:
        return changed
    columns = ("dataset", "rows_added", "source", "symbol", "timeframe", "first_ts", "last_ts",
               "last_event_ts")  # fmt: skip
    picked = [later[name].to_numpy() for name in columns]
    for entry_dataset, rows, source, symbol, timeframe, first, last, newest in zip(
        *picked, strict=True
    ):
        if entry_dataset != dataset or not rows > 0:
            continue
        source, symbol, timeframe = str(source), str(symbol), str(timeframe)
        if dataset == "fear_greed":
            key = (source, NO_SYMBOL, NO_SYMBOL)
        elif symbol == NO_SYMBOL or (dataset == "candles" and timeframe == NO_SYMBOL):
            return None
        elif dataset == "candles" and (source, symbol) in watched:
            continue
        else:
            key = (source, symbol, timeframe if dataset == "candles" else NO_SYMBOL)
        appended = changed.get(key, [])
        if appended is None:
            continue
        if rows == 1 and not pd.isna(first) and first == last and last == newest:
            appended.append(pd.Timestamp(first))
            changed[key] = appended
        else:
            changed[key] = None
    return changed


def _appended_after_held(
    changed: Mapping[Series, list[pd.Timestamp] | None], held: pd.DataFrame
) -> dict[Series, list[pd.Timestamp]]:
    """Of `_changed_series`, the series whose rows were appended one at a time after their
    newest held row (``held``: `read_series_timestamps` rows with ``every_series``, of an
    earlier or equal span, ordered by series then time): the store's rows of such a series are
    the held ones and these. A series not held, or whose first new row is not after the newest
    held one (which the log implies; checked), is left out: the caller reads it again."""
    if not any(changed.values()):
        return {}
    last_rows = _last_rows(held)
    stamps = held["event_ts"]
    found: dict[Series, list[pd.Timestamp]] = {}
    for key, times in changed.items():
        row = last_rows.get(key)
        if (
            times
            and row is not None
            and stamps.iloc[row] < times[0]
            and all(a < b for a, b in itertools.pairwise(times))
        ):
            found[key] = times
    return found


def _last_rows(held: pd.DataFrame) -> dict[Series, int]:
    """Each series' last row in ``held`` (ordered by series then time)."""
    keys = zip(
        held["source"].to_numpy(), held["symbol"].to_numpy(), held["timeframe"].to_numpy(),
        strict=True,
    )  # fmt: skip
    return {(str(a), str(b), str(c)): i for i, (a, b, c) in enumerate(keys)}


def _with_appended(
    held: pd.DataFrame, appended: Mapping[Series, Sequence[pd.Timestamp]]
) -> pd.DataFrame:
    """``held`` (ordered by series then time) with `_appended_after_held`'s rows, each after
    its series' last held row; same order and dtypes."""
    last_rows = _last_rows(held)
    rows = [(last_rows[key], ts) for key, times in appended.items() for ts in times]
    # each new row starts as a copy of its series' last row (the series' columns), placed
    # after it (np.insert keeps the order given for one position: oldest first), then dated
    at = [row + 1 for row, _ in rows]
    frame = held.take(np.insert(np.arange(len(held)), at, [row for row, _ in rows]))
    unit, tz = held["event_ts"].dt.unit, held["event_ts"].dt.tz
    times = held["event_ts"].to_numpy(dtype=f"datetime64[{unit}]")
    new = np.array([ts.as_unit(unit).tz_convert(None).asm8 for _, ts in rows], dtype=times.dtype)
    frame = frame.reset_index(drop=True)
    frame["event_ts"] = pd.Series(np.insert(times, at, new)).dt.tz_localize(tz)
    return frame


def _without_watched(frame: pd.DataFrame, watched: frozenset[tuple[str, str]]) -> pd.DataFrame:
    keys = zip(frame["source"], frame["symbol"], strict=True)
    keep = np.array([(str(a), str(b)) not in watched for a, b in keys], dtype=bool)
    return frame[keep].reset_index(drop=True)


def _series_of(log_frame: pd.DataFrame, judged: pd.DataFrame) -> pd.DataFrame:
    """The entries of ``log_frame`` whose series has an entry in ``judged`` (order kept)."""
    wanted = set(zip(*(judged[c] for c in _LOG_SERIES), strict=True))
    keys = zip(*(log_frame[c] for c in _LOG_SERIES), strict=True)
    return log_frame[np.array([key in wanted for key in keys], dtype=bool)]


def _judged_runs_may(log_frame: pd.DataFrame, judged: pd.DataFrame) -> tuple[bool, bool]:
    """Whether a judged run (one with an entry in ``judged``) quarantined any row, and
    whether one added no row, summed over all its entries in ``log_frame`` (`ingest_runs`:
    a run is one run id for one series)."""
    runs = set(zip(judged["run_id"], *(judged[c] for c in _LOG_SERIES), strict=True))
    added: dict[tuple[Any, ...], int] = {}
    quarantined = False
    for key in zip(
        log_frame["run_id"],
        *(log_frame[c] for c in _LOG_SERIES),
        log_frame["rows_added"],
        log_frame["rows_quarantined"],
        strict=True,
    ):
        run = key[:5]
        if run in runs:
            added[run] = added.get(run, 0) + int(key[5])
            quarantined = quarantined or int(key[6]) > 0
    return quarantined, any(total == 0 for total in added.values())


def _drift_reference(
    settings: Settings, client: Any, family: str
) -> tuple[str | None, DriftReference | None]:
    """The champion's version and drift reference, read from MLflow once per version (a
    version's artifact never changes; a moved alias is a new key)."""
    from mlflow.exceptions import MlflowException

    try:
        found = client.get_model_version_by_alias(REGISTERED_MODELS[family], CHAMPION)
    except MlflowException:  # no such model or alias
        return None, None
    version = str(found.version)
    key = (settings.registry_uri, family, version)
    if key not in _REFERENCES:
        reference = load_drift_reference(client, family, version=version)
        if reference is None:
            return version, None
        _REFERENCES[key] = reference
    return version, _REFERENCES[key]


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
    by_alarm: dict[str, dict[datetime, list[Finding]]] = {}
    for finding in drift:
        family = finding.evidence.get("family")
        base = finding.kind.removesuffix(f"_{family}")
        if family is None or base not in MODEL_DRIFT_KINDS:
            continue
        by_alarm.setdefault(finding.kind, {}).setdefault(finding.bar_ts, []).append(finding)
    if not by_alarm and not any(raised.values()):
        return raised, []  # nothing raised, nothing rising: the walk would change nothing
    bar = timeframe_to_timedelta(settings.timeframe)
    bound = pd.Timestamp(since) - bar  # closes at or after `since`: opens at or after this
    tails = []
    for history in histories.values():
        opens = pd.DatetimeIndex(history.candles["event_ts"])
        tails.append(opens[int(opens.searchsorted(bound, side="left")) :] + bar)
    closes = sorted({t.to_pydatetime() for tail in tails for t in tail})
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
