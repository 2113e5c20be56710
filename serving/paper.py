"""Paper trading over recorded bars: the live decision path (``decide``) with a ``PaperBroker``.

``replay`` walks a window of history the way the service walks live bars: at each bar the broker
fills the orders of the previous close and marks the books; then each symbol is decided at the
close through ``sextant.decision.decide`` (the function the online service calls) and its order
submitted. With the same inputs this is the backtest, decision for decision and fill for fill;
``tests/serving/test_paper.py`` holds the two equal. ``on_bar`` receives every step, so a caller can
record it (the decisions store writes each bar's decisions with the books and the gate's state in
one transaction) and resume after a restart from what it recorded.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import pandas as pd

from serving.decisions_store import DecisionsStore, Recorded
from sextant.backtest.engine import BacktestInputs
from sextant.decision import (
    FEATURES_USED,
    Decision,
    DecisionConfig,
    ModelOutputs,
    RiskGate,
    decide,
)
from sextant.errors import ConfigError
from sextant.execution import BarReport, Candle, ExecutionConfig, PaperBroker

__all__ = ["PaperStep", "replay", "replay_recorded"]


@dataclass(frozen=True, slots=True)
class PaperStep:
    """One bar of a paper run: its position in the window, what it filled, what was decided."""

    bar: int
    report: BarReport
    decisions: tuple[Decision, ...]
    broker: PaperBroker
    gate: RiskGate


def _candles(inputs: BacktestInputs, t: int) -> dict[str, Candle]:
    candles = {}
    for s, symbol in enumerate(inputs.symbols):
        if inputs.open[t, s] > 0:
            candles[symbol] = Candle(
                open=float(inputs.open[t, s]),
                high=float(inputs.high[t, s]),
                low=float(inputs.low[t, s]),
                close=float(inputs.close[t, s]),
                volume=float(inputs.volume[t, s]),
            )
    return candles


def _funding(inputs: BacktestInputs, t: int) -> Mapping[str, float]:
    return {
        symbol: float(inputs.funding_rate[t, s])
        for s, symbol in enumerate(inputs.symbols)
        if inputs.funding_rate[t, s] == inputs.funding_rate[t, s]
    }


def replay(
    inputs: BacktestInputs,
    config: DecisionConfig,
    broker: PaperBroker,
    gate: RiskGate,
    *,
    start: int = 0,
    on_bar: Callable[[PaperStep], None] | None = None,
    close_at_end: bool = True,
) -> BarReport | None:
    """Paper-trade bars ``start`` .. end of ``inputs`` through ``broker`` and ``gate``.

    ``broker`` and ``gate`` carry the state from bar ``start - 1`` (fresh ones for ``start=0``,
    restored ones to resume). Returns the final liquidation's report when ``close_at_end``.
    """
    if config.sizing.timeframe != inputs.timeframe:
        raise ConfigError(
            f"the decision config sizes {config.sizing.timeframe} bars "
            f"(SizingConfig.timeframe) but the window has {inputs.timeframe} bars"
        )
    closes = inputs.bar_close
    for t in range(start, len(inputs.index)):
        report = broker.on_bar(
            inputs.index[t].to_pydatetime(), _candles(inputs, t), _funding(inputs, t)
        )
        ts = closes[t].to_pydatetime()
        decisions = []
        for s, symbol in enumerate(inputs.symbols):
            price = float(inputs.close[t, s])
            if not price > 0:
                continue
            if not broker.equity > 0:
                broker.flatten(symbol)
                continue
            decision = decide(
                symbol,
                ts,
                dict(zip(FEATURES_USED, inputs.features[t, s].tolist(), strict=True)),
                ModelOutputs(
                    p_xgb=float(inputs.p_xgb[t, s]),
                    p_lstm=float(inputs.p_lstm[t, s]),
                    garch_variance=float(inputs.garch_variance[t, s]),
                    var_quantile=float(inputs.var_quantile[t, s]),
                ),
                broker.portfolio(),
                config,
                gate,
                price=price,
                feature_age_bars=float(inputs.feature_age[t, s]),
                model_error=bool(inputs.model_error[t, s]),
            )
            broker.submit(decision)
            decisions.append(decision)
        if on_bar is not None:
            on_bar(PaperStep(t, report, tuple(decisions), broker, gate))
    return broker.close_all() if close_at_end else None


def replay_recorded(
    inputs: BacktestInputs,
    config: DecisionConfig,
    execution: ExecutionConfig,
    store: DecisionsStore,
    *,
    account: str,
    acknowledged: Callable[[PaperStep, Recorded], None] | None = None,
    close_at_end: bool = True,
) -> BarReport | None:
    """``replay`` that records every bar in ``store`` and resumes from what ``account`` stored.

    Each bar's decisions, the broker's snapshot and the gate's state go in one transaction; a
    bar is acknowledged (``acknowledged`` is called) only after it committed. Started again after
    a crash, it continues after the last committed bar with the stored books and gate (a HALTED
    gate is still HALTED), so the run ends where an uninterrupted one would.
    """
    state = store.account_state(account)
    if state is None or state.portfolio is None:
        broker = PaperBroker(inputs.symbols, inputs.timeframe, execution)
        gate = RiskGate(config.risk)
        start = 0
    else:
        broker = PaperBroker.from_snapshot(state.portfolio, execution)
        gate = state.risk_gate(config.risk) or RiskGate(config.risk)
        last = broker.last_bar_open
        start = (
            0 if last is None else int(inputs.index.searchsorted(pd.Timestamp(last), side="right"))
        )

    def record(step: PaperStep) -> None:
        recorded = store.record(
            step.decisions,
            account=account,
            portfolio=step.broker.to_snapshot(),
            gate=step.gate,
            as_of=inputs.bar_close[step.bar].to_pydatetime(),
        )
        if acknowledged is not None:
            acknowledged(step, recorded)

    return replay(
        inputs, config, broker, gate, start=start, on_bar=record, close_at_end=close_at_end
    )
