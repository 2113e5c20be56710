"""The decision service's Prometheus metrics, on a registry of its own.

Every metric lives in an explicit ``CollectorRegistry`` that ``/metrics`` serves through
``prometheus_client.make_asgi_app(registry=...)``: importing Feast sets
``PROMETHEUS_MULTIPROC_DIR``, after which exporters of the default registry serve nothing
(STACK-NOTES, "Feast, Prometheus and serving"). Values that describe the present (the models
served, each account's trading state) are collected at scrape time from what the service holds,
so a reload or a kill switch shows up at the next scrape without stale series left behind (label
removal is not supported once Feast has switched prometheus_client to multiprocess values).

With ``sextant serve --workers N`` each worker keeps its own registry: a scrape sees the worker
that answered it (see docs/serving.md, "HTTP API").
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sextant.decision import Decision, TradingState

__all__ = ["LATENCY_BUCKETS", "ServiceMetrics"]

# seconds; fine below a millisecond, where a decision answered in process sits
LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.00075,
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)


# the monitor's latest figures per family and statistic (`agents.monitoring.monitor` writes them)
DRIFT_FIGURES_KEY = "drift_figures"


class _MonitoringCollector(Collector):
    """What the monitor stored, read from the decisions store at scrape time: anomalies per kind
    (a counter: anomalies are never deleted) and the latest drift figures (gauges). The monitor
    runs in its own process (the `monitor` flow), so these are read, not counted here."""

    def __init__(self, store: Callable[[], Any]) -> None:
        self._store = store

    def collect(self) -> Iterable[Metric]:
        store = self._store()
        anomalies = CounterMetricFamily(
            "sextant_anomalies",
            "Anomalies the monitor stored, per kind.",
            labels=["kind"],
        )
        figures = GaugeMetricFamily(
            "sextant_drift_figure",
            "The monitor's latest model drift figures (PSI, KS, Brier, ...), per family and "
            "statistic.",
            labels=["family", "statistic"],
        )
        if store is not None:
            for kind, count in store.anomaly_counts().items():
                anomalies.add_metric([kind], float(count))
            latest = store.monitor_state(DRIFT_FIGURES_KEY) or {}
            for family, values in sorted(latest.items()):
                for statistic, value in sorted(values.items()):
                    figures.add_metric(
                        [family, statistic], math.nan if value is None else float(value)
                    )
        yield anomalies
        yield figures


class _LiveCollector(Collector):
    """The served model versions and each account's trading state, read at scrape time."""

    def __init__(
        self,
        models: Callable[[], Mapping[str, tuple[str, str]]],
        states: Callable[[], Mapping[str, TradingState]],
    ) -> None:
        self._models = models
        self._states = states

    def collect(self) -> Iterable[Metric]:
        info = GaugeMetricFamily(
            "sextant_model_info",
            "The champion served per family (value 1; the version is a label).",
            labels=["family", "model", "version"],
        )
        for family, (model, version) in sorted(self._models().items()):
            info.add_metric([family, model, version], 1.0)
        yield info
        state = GaugeMetricFamily(
            "sextant_trading_state",
            "Each account's risk-gate trading state as last seen by this process (1: current).",
            labels=["account", "state"],
        )
        for account, current in sorted(self._states().items()):
            for value in TradingState:
                state.add_metric([account, value.value], 1.0 if value is current else 0.0)
        yield state


class ServiceMetrics:
    """The service's metrics and the calls that update them."""

    def __init__(
        self,
        models: Callable[[], Mapping[str, tuple[str, str]]],
        store: Callable[[], Any] = lambda: None,
    ) -> None:
        """``models``: family → (registered model, version) served now, read at each scrape;
        ``store``: the decisions store (or None) the monitor's figures are read from."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.request_seconds = Histogram(
            "sextant_http_request_duration_seconds",
            "Time to answer an HTTP request, per route template, method and status.",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.decisions = Counter(
            "sextant_decisions",
            "Decisions made (not those answered from the store), per action.",
            ["action"],
            registry=self.registry,
        )
        self.risk_rejections = Counter(
            "sextant_risk_rejections",
            "Failed risk checks of the decisions made, per reason code.",
            ["reason_code"],
            registry=self.registry,
        )
        self.feature_age = Gauge(
            "sextant_feature_age_bars",
            "Age of each symbol's online features by the clock, in bars (+Inf: none).",
            ["symbol"],
            registry=self.registry,
        )
        self.reloads = Counter(
            "sextant_model_reloads",
            "Champion reloads that swapped in the registry's models, per trigger.",
            ["trigger"],
            registry=self.registry,
        )
        self.reload_failures = Counter(
            "sextant_model_reload_failures",
            "Champion reloads that failed (the old models kept serving), per trigger.",
            ["trigger"],
            registry=self.registry,
        )
        self._states: dict[str, TradingState] = {}
        self._lock = threading.Lock()
        # each label set's child, looked up once: ``labels()`` checks and locks on every call
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._decision_children: dict[str, Any] = {}
        self._rejection_children: dict[str, Any] = {}
        self._age_children: dict[str, Any] = {}
        self.registry.register(_LiveCollector(models, self._trading_states))
        self.registry.register(_MonitoringCollector(store))

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """One answered request."""
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:
            child = self.request_seconds.labels(route, method, str(status))
            self._request_children[key] = child
        child.observe(seconds)

    def observe_decisions(self, made: Iterable[Decision]) -> None:
        """Count decisions the engine made, by action, and their failed checks, by reason."""
        for decision in made:
            _child(self.decisions, self._decision_children, decision.action.value).inc()
            for reason in decision.risk.reasons:
                _child(self.risk_rejections, self._rejection_children, reason).inc()

    def observe_feature_age(self, ages: Mapping[str, float]) -> None:
        """The latest feature age per symbol (NaN is recorded as +Inf: no usable features)."""
        for symbol, age in ages.items():
            _child(self.feature_age, self._age_children, symbol).set(
                math.inf if math.isnan(age) else age
            )

    def observe_trading_state(self, account: str, state: TradingState) -> None:
        """An account's trading state as this process last saw it."""
        with self._lock:
            self._states[account] = state

    def _trading_states(self) -> dict[str, TradingState]:
        with self._lock:
            return dict(self._states)


def _child(metric: Any, children: dict[str, Any], label: str) -> Any:
    """``metric.labels(label)``, kept in ``children`` after its first use."""
    child = children.get(label)
    if child is None:
        child = children[label] = metric.labels(label)
    return child
