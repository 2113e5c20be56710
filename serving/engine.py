"""The decision engine: online features → ONNX champions → ``sextant.decision.decide`` → the log.

Per request (one bar, any number of symbols): one Feast online read returns every service's
vector; each champion runs once over all symbols (onnxruntime, no torch or xgboost); each symbol
is decided by the same ``decide`` the backtest replays; the bar's decisions are written with the
risk gate's state in one transaction of the decisions store.

Failures are decisions, not errors (the gate records the reason):

- a family without a champion → its output is NaN; with too few families the gate flats with
  ``MODEL_UNAVAILABLE``;
- a champion that fails at run time → NaN and ``model_error``, which the gate's circuit breaker
  counts (``CIRCUIT_BREAKER`` after ``RiskConfig.max_consecutive_errors`` in a row);
- features older than ``RiskConfig.max_feature_age_bars`` bars at the decision's bar, or none at
  all (a failed read with nothing read before) → ``STALE_FEATURES``. A failed online read (e.g.
  a view being materialized) falls back to the last good read, flagged by its age.

The decision's ``ts`` is the latest bar close at ``now``; a feature vector's age is the number of
bars between its own bar close (``as_of``) and that one.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt

from features.definitions import GARCH_RETURN
from features.feast_store import FeastStore, OnlineVectors
from features.online import sequence_input
from serving.champions import Champion, check_registry, load_champions
from serving.decisions_store import DecisionsStore
from serving.garch_window import windowed_feeds
from serving.prices import latest_closes
from sextant.contracts import DECISION_FEATURES, DECISION_SERVICE, FEATURE_SERVICES
from sextant.decision import (
    Decision,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    SizingConfig,
    decide,
)
from sextant.errors import ConfigError, SourceUnavailableError
from sextant.execution import ExecutionConfig, PaperBroker
from sextant.settings import Settings
from sextant.timeframes import timeframe_to_timedelta

__all__ = ["DecisionEngine", "FamilyOutput"]

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class FamilyOutput:
    """One family's output per symbol (NaN: unavailable) and whether its model failed."""

    values: FloatArray
    error: bool = False


class DecisionEngine:
    """Decides symbols at the latest bar close and records the decisions; one per process.

    Build it with `from_settings`; `decide` is the per-request path.
    """

    def __init__(
        self,
        settings: Settings,
        champions: Mapping[str, Champion],
        feast: FeastStore,
        store: DecisionsStore,
        *,
        account: str,
        config: DecisionConfig,
        execution: ExecutionConfig,
    ) -> None:
        self.settings = settings
        self.champions = dict(champions)
        self.feast = feast
        self.store = store
        self.account = account
        self.config = config
        self.execution = execution
        self._bar = timeframe_to_timedelta(settings.timeframe)
        self._last_read: dict[str, OnlineVectors] | None = None
        self._last_read_symbols: tuple[str, ...] = ()
        self._last_price: dict[str, float] = {}

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        account: str = "paper",
        config: DecisionConfig | None = None,
        execution: ExecutionConfig | None = None,
    ) -> DecisionEngine:
        """Load and check the champions, bind the feature store and open the decisions store.

        ``ConfigError`` when a champion's features do not match its registered feature service.
        """
        if config is None:
            config = DecisionConfig(sizing=SizingConfig(timeframe=settings.timeframe))
        elif config.sizing.timeframe != settings.timeframe:
            raise ConfigError(
                f"the decision config sizes {config.sizing.timeframe} bars, the settings' "
                f"timeframe is {settings.timeframe}"
            )
        _import_feast_without_torch()
        feast = FeastStore(settings)
        champions = load_champions(settings)
        check_registry(champions, feast)
        store = DecisionsStore.open(settings.paths.decisions_db)
        return cls(
            settings,
            champions,
            feast,
            store,
            account=account,
            config=config,
            execution=execution or ExecutionConfig(),
        )

    @property
    def model_versions(self) -> dict[str, str]:
        """Family → served registry version."""
        return {family: c.version for family, c in self.champions.items()}

    def close(self) -> None:
        """Close the decisions store."""
        self.store.close()

    # --- the per-request path ---------------------------------------------------------------

    def decide(
        self, symbols: Sequence[str] | None = None, *, now: datetime | None = None
    ) -> list[Decision]:
        """Decide ``symbols`` (default: the settings') at the latest bar close at ``now``
        (default: the clock), record them, and return them in the symbols' order."""
        chosen = tuple(dict.fromkeys(symbols or self.settings.symbols))
        bar_ts = self._bar_close(now)
        online = self._online_read(chosen)
        as_of = _as_of(online, chosen)
        ages = [math.inf if moment is None else (bar_ts - moment) / self._bar for moment in as_of]
        outputs = self._model_outputs(online, chosen)
        model_error = any(o.error for o in outputs.values())
        prices = self._prices(chosen, [m or bar_ts for m in as_of])
        state = self.store.account_state(self.account)
        gate = (state.risk_gate(self.config.risk) if state else None) or RiskGate(self.config.risk)
        portfolio = self._portfolio(None if state is None else state.portfolio, chosen)
        features = _decision_features(online, chosen)
        var_quantile = self._var_quantiles(chosen)
        positions = dict(portfolio.positions)
        decisions: list[Decision] = []
        for i, symbol in enumerate(chosen):
            decision = decide(
                symbol,
                bar_ts,
                features[i],
                ModelOutputs(
                    p_xgb=float(outputs["xgb"].values[i]),
                    p_lstm=float(outputs["lstm"].values[i]),
                    garch_variance=float(outputs["garch"].values[i]),
                    var_quantile=var_quantile[i],
                ),
                PortfolioState(portfolio.equity, positions),
                self.config,
                gate,
                price=prices[symbol],
                feature_age_bars=ages[i],
                model_error=model_error,
                model_versions=self.model_versions,
            )
            if decision.target_fraction != decision.current_fraction:
                # as in the backtest: a symbol decided earlier in the bar counts at its target
                positions[symbol] = decision.target_fraction * portfolio.equity
            decisions.append(decision)
        self.store.record(decisions, account=self.account, gate=gate)
        return decisions

    def _bar_close(self, now: datetime | None) -> datetime:
        moment = datetime.now(UTC) if now is None else now
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ConfigError(f"now must be timezone-aware (UTC), got {moment.isoformat()}")
        epoch = datetime(1970, 1, 1, tzinfo=UTC)
        return epoch + ((moment.astimezone(UTC) - epoch) // self._bar) * self._bar

    def _online_read(self, symbols: tuple[str, ...]) -> dict[str, OnlineVectors] | None:
        """One read of every service; on failure the last good read of the same symbols."""
        try:
            read = self.feast.online_read(symbols)
        except ConfigError:
            raise  # the registry or the services are wrong: not something to serve around
        except Exception:  # the online store is unreadable now (missing rows, materializing)
            log.exception("online read of %s failed; using the last good read", symbols)
            return self._last_read if self._last_read_symbols == symbols else None
        self._last_read, self._last_read_symbols = read, symbols
        return read

    def _model_outputs(
        self, online: Mapping[str, OnlineVectors] | None, symbols: tuple[str, ...]
    ) -> dict[str, FamilyOutput]:
        nan = np.full(len(symbols), np.nan)
        runs = {"xgb": self._run_xgb, "lstm": self._run_lstm, "garch": self._run_garch}
        outputs: dict[str, FamilyOutput] = {}
        for family, run in runs.items():
            champion = self.champions.get(family)
            if champion is None or online is None:
                outputs[family] = FamilyOutput(nan)
                continue
            try:
                values = np.asarray(run(champion, online, symbols), dtype=np.float64)
                outputs[family] = FamilyOutput(values.reshape(len(symbols)))
            except Exception:  # onnxruntime's errors are untyped; any failure is a model error
                log.exception("%s failed on %s", champion.label, symbols)
                outputs[family] = FamilyOutput(nan, error=True)
        return outputs

    @staticmethod
    def _run_xgb(
        champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
    ) -> npt.ArrayLike:
        session = champion.session
        rows = online[FEATURE_SERVICES["xgb"]].values.astype(np.float32)
        return _first_output(session, {session.get_inputs()[0].name: rows})

    @staticmethod
    def _run_lstm(
        champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
    ) -> npt.ArrayLike:
        session = champion.session
        vectors = online[FEATURE_SERVICES["lstm"]]
        seq_len = session.get_inputs()[0].shape[1]
        if not isinstance(seq_len, int):
            seq_len = int(champion.metadata["seq_len"])
        sequence = sequence_input(vectors.window, vectors.features, champion.features, seq_len)
        return _first_output(session, {session.get_inputs()[0].name: sequence})

    @staticmethod
    def _run_garch(
        champion: Champion, online: Mapping[str, OnlineVectors], symbols: tuple[str, ...]
    ) -> npt.ArrayLike:
        session = champion.session
        vectors = online[FEATURE_SERVICES["garch"]]
        fitted = list(json.loads(champion.metadata["symbols"]))
        known = [i for i, s in enumerate(symbols) if s in fitted]
        variance = np.full(len(symbols), np.nan)
        if not known:
            return variance
        index = [fitted.index(symbols[i]) for i in known]
        returns = vectors.window[known, :, vectors.features.index(GARCH_RETURN)]
        # the champion's session is the registered recursion evaluated over the whole window
        variance[known] = _first_output(session, windowed_feeds(index, returns)).reshape(-1)
        return variance

    def _var_quantiles(self, symbols: tuple[str, ...]) -> list[float]:
        """GARCH's unit-variance 99 % innovation quantile per symbol (NaN without a fit)."""
        champion = self.champions.get("garch")
        if champion is None:
            return [math.nan] * len(symbols)
        quantiles = json.loads(champion.metadata.get("var99_quantile", "{}"))
        return [float(quantiles.get(s, math.nan)) for s in symbols]

    def _prices(self, symbols: tuple[str, ...], as_of: Sequence[datetime]) -> dict[str, float]:
        """The close each symbol's features describe; the last one read if the store is busy."""
        try:
            closes = latest_closes(self.settings, dict(zip(symbols, as_of, strict=True)))
        except Exception:  # duckdb refuses readers while an ingest writes: use the last price
            log.exception("market store read failed; using the last prices read")
            closes = {}
        self._last_price.update(closes)
        missing = [s for s in symbols if s not in self._last_price]
        if missing:
            raise SourceUnavailableError(
                f"no close price for {', '.join(missing)} in {self.settings.paths.market_db}: "
                "run `sextant ingest`"
            )
        return {s: self._last_price[s] for s in symbols}

    def _portfolio(
        self, snapshot: Mapping[str, object] | None, symbols: tuple[str, ...]
    ) -> PortfolioState:
        """The account's paper books as stored, else a fresh account."""
        if snapshot is None:
            return PortfolioState(self.execution.initial_equity, dict.fromkeys(symbols, 0.0))
        return PaperBroker.from_snapshot(snapshot, self.execution).portfolio()


def _first_output(session: Any, feeds: Mapping[str, np.ndarray]) -> FloatArray:
    """The graph's first output (each served graph has one: ``p_up`` or ``next_variance``)."""
    output = session.get_outputs()[0].name
    return np.asarray(session.run([output], dict(feeds))[0], dtype=np.float64)


def _import_feast_without_torch() -> None:
    """Import Feast with torch hidden, so that serving never loads torch.

    Feast 0.67 imports torch eagerly wherever it is installed (``feast.torch_wrapper``, pulled in
    by the offline store module), which the training environment has. Hidden for that one import,
    Feast records torch as unavailable (used only to return offline results as tensors, which
    serving never asks for); a later ``import torch`` elsewhere in the process still works.
    """
    if "feast.torch_wrapper" in sys.modules or "torch" in sys.modules:
        return
    sys.modules["torch"] = None  # type: ignore[assignment]  # makes `import torch` fail
    try:
        importlib.import_module("feast.torch_wrapper")
        importlib.import_module("feast")
    finally:
        del sys.modules["torch"]


def _as_of(
    online: Mapping[str, OnlineVectors] | None, symbols: tuple[str, ...]
) -> list[datetime | None]:
    """Per symbol, the oldest bar close among its vectors (None: a vector is missing)."""
    if online is None:
        return [None] * len(symbols)
    result: list[datetime | None] = []
    for i in range(len(symbols)):
        stamps = [vectors.as_of[i] for vectors in online.values()]
        known = [s.to_pydatetime() for s in stamps if s is not None]
        result.append(min(known) if len(known) == len(stamps) else None)
    return result


def _decision_features(
    online: Mapping[str, OnlineVectors] | None, symbols: tuple[str, ...]
) -> list[dict[str, float | None]]:
    """The TA signal's inputs per symbol (all unknown without a read)."""
    if online is None:
        return [dict.fromkeys(DECISION_FEATURES) for _ in symbols]
    vectors = online[DECISION_SERVICE]
    return [
        {name: float(value) for name, value in zip(vectors.features, row, strict=True)}
        for row in vectors.values
    ]
