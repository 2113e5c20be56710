"""The risk gate: every order passes it; a rejection or a reduction is a result, not an error.

``RiskGate`` keeps the trading state between calls (in the float array the kernels update, so
the backtest replays the same transitions):

- ACTIVE → REDUCING when the drawdown from peak equity reaches ``soft_drawdown``; back to
  ACTIVE when it recovers below. REDUCING approves only orders that shrink |position| (same
  side, smaller or equal), so a flat book stays REDUCING until the episode is released.
- any → HALTED when the loss since the start of the UTC day reaches ``daily_loss_limit``
  (released at the next UTC day), when the drawdown reaches ``hard_drawdown``, or when
  ``max_consecutive_errors`` model errors come in a row (both sticky). HALTED forces flat: the
  approved target is 0, so HALTED never adds risk and the executor closes what is open.
- drawdown episodes (REDUCING, sticky halts) end with ``reset()`` (the operator re-bases the
  peak), or, when ``halt_reset_days`` > 0, at the first UTC day that many days after they
  began (for backtests of long histories: a desk that reviews and restarts).
- the kill switch (config or ``engage_kill_switch()``) forces flat like HALTED.
- stale features, too few ML families, low confidence or an unknown VaR: reduce only.
- caps: |target| ≤ max_position, ≤ max_gross_exposure minus the other symbols' exposure,
  ≤ var_limit / (sigma * t-quantile); at ``max_orders_per_day`` only risk-reducing orders pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import numpy as np

from sextant.decision import _kernels as layout
from sextant.decision.config import RiskConfig
from sextant.errors import DataValidationError
from sextant.ta._jit import FloatArray

__all__ = [
    "CHECK_CODES",
    "Check",
    "GateStatus",
    "PortfolioState",
    "RiskDecision",
    "RiskGate",
    "TradingState",
    "initial_risk_state",
    "risk_decision_from",
    "utc_day",
]

CHECK_CODES = layout.CHECK_CODES
_CHECK_NAMES = tuple(code.lower() for code in CHECK_CODES)  # each check's name in records
_TABLE_SIZE = len(CHECK_CODES) * layout.N_CHECK_FIELDS
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TradingState(StrEnum):
    """What the gate lets through: everything in limits, reductions only, or nothing (flat)."""

    ACTIVE = "ACTIVE"
    REDUCING = "REDUCING"
    HALTED = "HALTED"


_STATES: tuple[TradingState, ...] = tuple(TradingState(name) for name in layout.STATE_NAMES)


@dataclass(frozen=True, slots=True)
class Check:
    """One risk check: whether it passed, and the figures it compared.

    ``reason_code`` is the check's UPPER_SNAKE code when it failed, None when it passed.
    """

    name: str
    passed: bool
    reason_code: str | None
    observed: float
    limit: float

    def describe(self) -> str:
        """``MAX_POSITION: observed=1.2, limit=1`` (the machine-readable denial)."""
        return f"{self.name.upper()}: observed={self.observed:.6g}, limit={self.limit:.6g}"


@dataclass(frozen=True, slots=True)
class RiskDecision:
    """The gate's answer: approved target (``size``, signed fraction of equity) and each check.

    ``approved`` is True when the proposal went through unchanged; False when the gate reduced
    or refused it (then ``size`` is what it allows instead). ``table`` is the kernel's check
    table, flat: per check in ``CHECK_CODES`` order, passed (1.0/0.0), observed, limit; the
    ``checks`` objects are built from it on first use (a decision record and the metrics read
    the table itself: ``check_records``, ``reasons``).
    """

    approved: bool
    size: float
    table: tuple[float, ...] = field(repr=False)
    state: TradingState
    proposed: float
    current: float
    _checks: tuple[Check, ...] | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if len(self.table) != _TABLE_SIZE:
            raise DataValidationError(
                f"risk check table has {len(self.table)} values, expected {_TABLE_SIZE} "
                f"({len(CHECK_CODES)} checks of {layout.N_CHECK_FIELDS})",
                field="table",
            )

    @property
    def checks(self) -> tuple[Check, ...]:
        """Each check, in ``CHECK_CODES`` order."""
        built = self._checks
        if built is None:
            built = tuple(Check(**record) for record in self.check_records())
            object.__setattr__(self, "_checks", built)
        return built

    @property
    def reasons(self) -> tuple[str, ...]:
        """Reason codes of the failed checks, in check order."""
        flags = self.table[layout.CK_PASSED :: layout.N_CHECK_FIELDS]
        return tuple(code for code, passed in zip(CHECK_CODES, flags, strict=True) if passed == 0.0)

    def check(self, code: str) -> Check:
        """The check with reason code ``code`` (e.g. ``"MAX_POSITION"``)."""
        for c in self.checks:
            if c.name == code.lower():
                return c
        raise KeyError(f"no risk check {code!r}; known: {', '.join(CHECK_CODES)}")

    def check_records(self) -> list[dict[str, Any]]:
        """Each check as a decision record holds it (``Check``'s fields: name, passed,
        reason_code, observed, limit), straight from the table."""
        table, width = self.table, layout.N_CHECK_FIELDS
        return [
            {
                "name": name,
                "passed": passed != 0.0,
                "reason_code": None if passed != 0.0 else code,
                "observed": observed,
                "limit": limit,
            }
            for name, code, passed, observed, limit in zip(
                _CHECK_NAMES,
                CHECK_CODES,
                table[layout.CK_PASSED :: width],
                table[layout.CK_OBSERVED :: width],
                table[layout.CK_LIMIT :: width],
                strict=True,
            )
        ]

    def __repr__(self) -> str:
        return (
            f"RiskDecision(approved={self.approved!r}, size={self.size!r}, "
            f"checks={self.checks!r}, state={self.state!r}, proposed={self.proposed!r}, "
            f"current={self.current!r})"
        )


@dataclass(frozen=True, slots=True)
class PortfolioState:
    """Equity and signed position notional per symbol (quote currency, at the current mark).

    Include the targets of orders already sent and not yet filled, so that two symbols decided
    at the same time cannot together exceed the gross limit.
    """

    equity: float
    positions: Mapping[str, float]
    # the positions' notionals as an array in the mapping's order, and each symbol's place in
    # it, where the caller holds them (`PaperBroker.portfolio`): `fractions` then reads them
    # instead of converting the mapping, per decision
    _notional: FloatArray | None = field(default=None, compare=False, repr=False)
    _index: Mapping[str, int] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not math.isfinite(self.equity):
            raise DataValidationError(
                f"portfolio equity is not finite: {self.equity}", field="equity"
            )
        values = self._notional
        if values is None:
            values = np.fromiter(self.positions.values(), np.float64, len(self.positions))
        elif self._index is None or not len(values) == len(self.positions) == len(self._index):
            raise DataValidationError(
                "portfolio notionals must come with their index, one per position",
                field="positions",
            )
        if np.isfinite(values).all():
            return
        for symbol, notional in self.positions.items():
            if not math.isfinite(notional):
                raise DataValidationError(
                    f"position notional of {symbol} is not finite: {notional}", field="positions"
                )

    def fractions(self, symbol: str) -> FloatArray:
        """Signed positions / equity with ``symbol`` first (0 when it has none)."""
        positions = self.positions
        held, index = self._notional, self._index
        if held is None or index is None:
            held = np.fromiter(positions.values(), np.float64, len(positions))
            i = list(positions).index(symbol) if symbol in positions else None
        else:
            i = index.get(symbol)
        if i is not None:
            values = np.concatenate((held[i : i + 1], held[:i], held[i + 1 :]))
        else:
            values = np.concatenate((np.zeros(1), held))
        if self.equity > 0:
            return values / self.equity
        return np.zeros_like(values)


@dataclass(frozen=True, slots=True)
class GateStatus:
    """The gate's state between calls (for logs, the API and the explainer)."""

    state: TradingState
    halt_reasons: tuple[str, ...]
    kill_switch: bool
    peak_equity: float
    day_start_equity: float
    orders_today: int
    consecutive_errors: int


def utc_day(ts: datetime) -> int:
    """Days since 1970-01-01 of a tz-aware timestamp (its UTC date); naive ones are refused."""
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise DataValidationError(
            f"timestamp {ts} is naive; decisions need tz-aware UTC", field="ts"
        )
    return (ts.astimezone(UTC) - _EPOCH).days


def initial_risk_state(config: RiskConfig) -> FloatArray:
    """A fresh risk state: ACTIVE, no peak yet, kill switch as configured."""
    state = np.zeros(layout.RS_SIZE, dtype=np.float64)
    state[layout.RS_STATE] = layout.STATE_ACTIVE
    state[layout.RS_PEAK] = math.nan
    state[layout.RS_DAY_START] = math.nan
    state[layout.RS_DAY] = -1.0
    state[layout.RS_HALT_DAY] = -1.0
    state[layout.RS_KILL] = 1.0 if config.kill_switch else 0.0
    return state


def risk_decision_from(
    checks: FloatArray, approved: float, proposed: float, current: float, state_code: float
) -> RiskDecision:
    """Map the kernel's check table and target to a RiskDecision."""
    return RiskDecision(
        approved=bool(approved == proposed),
        size=float(approved),
        table=tuple(checks.ravel().tolist()),
        state=_STATES[int(state_code)],
        proposed=float(proposed),
        current=float(current),
    )


class RiskGate:
    """Stateful risk gate over the shared kernels; one instance per account (all symbols)."""

    def __init__(self, config: RiskConfig) -> None:
        self._config = config
        self._cfg = config.to_array()
        self._state = initial_risk_state(config)

    @property
    def config(self) -> RiskConfig:
        """The limits this gate enforces."""
        return self._config

    @property
    def state(self) -> TradingState:
        """ACTIVE, REDUCING or HALTED, as of the latest evaluation."""
        return TradingState(layout.STATE_NAMES[int(self._state[layout.RS_STATE])])

    def status(self) -> GateStatus:
        """State, halt reasons, kill switch and counters."""
        mask = int(self._state[layout.RS_HALT_MASK])
        reasons = tuple(
            code
            for bit, code in (
                (layout.HALT_DAILY_LOSS, "DAILY_LOSS_LIMIT"),
                (layout.HALT_DRAWDOWN, "MAX_DRAWDOWN"),
                (layout.HALT_BREAKER, "CIRCUIT_BREAKER"),
            )
            if mask & bit
        )
        return GateStatus(
            state=self.state,
            halt_reasons=reasons,
            kill_switch=bool(self._state[layout.RS_KILL] != 0.0 or self._config.kill_switch),
            peak_equity=float(self._state[layout.RS_PEAK]),
            day_start_equity=float(self._state[layout.RS_DAY_START]),
            orders_today=int(self._state[layout.RS_ORDERS]),
            consecutive_errors=int(self._state[layout.RS_ERRORS]),
        )

    def engage_kill_switch(self) -> None:
        """Flatten everything and approve nothing else until released."""
        self._state[layout.RS_KILL] = 1.0

    def release_kill_switch(self) -> None:
        """Undo ``engage_kill_switch`` (a kill switch set in the config stays on)."""
        self._state[layout.RS_KILL] = 0.0

    def reset(self) -> None:
        """Operator reset: end the drawdown episode (REDUCING, drawdown and breaker halts).

        Errors are cleared and the peak is re-based at the next evaluation; a daily-loss halt
        stays until the next UTC day.
        """
        mask = int(self._state[layout.RS_HALT_MASK]) & layout.HALT_DAILY_LOSS
        self._state[layout.RS_HALT_MASK] = mask
        self._state[layout.RS_ERRORS] = 0.0
        self._state[layout.RS_PEAK] = math.nan
        self._state[layout.RS_HALT_DAY] = -1.0
        self._state[layout.RS_STATE] = layout.STATE_HALTED if mask else layout.STATE_ACTIVE

    def state_vector(self) -> tuple[float, ...]:
        """The gate's whole state as plain floats, for the decisions store (``restore`` reads it)."""
        return tuple(float(x) for x in self._state)

    @classmethod
    def restore(cls, config: RiskConfig, state: Sequence[float]) -> RiskGate:
        """A gate enforcing ``config`` that resumes from a stored ``state_vector()``.

        A HALTED gate comes back HALTED: the state, peak, day start, counters and halt reasons
        are all in the vector. A kill switch set in ``config`` stays on whatever was stored.
        """
        vector = np.asarray(state, dtype=np.float64)
        if vector.shape != (layout.RS_SIZE,):
            raise DataValidationError(
                f"risk gate state has {vector.size} values, expected {layout.RS_SIZE}",
                field="risk_state",
            )
        code = vector[layout.RS_STATE]
        if not (code == int(code) and 0 <= int(code) < len(layout.STATE_NAMES)):
            raise DataValidationError(
                f"risk gate state code {code} is not one of {', '.join(layout.STATE_NAMES)}",
                field="risk_state",
            )
        gate = cls(config)
        gate._state[:] = vector
        if config.kill_switch:
            gate._state[layout.RS_KILL] = 1.0
        return gate

    def arrays(self) -> tuple[FloatArray, FloatArray]:
        """(state, config) arrays the kernels read and update; for ``decide`` and the backtest."""
        return self._state, self._cfg
