"""Backtest: the live decision kernels replayed bar by bar over aligned history.

``run_backtest`` feeds the compiled loop (``sextant.backtest._loop``), which calls the same
``decide_kernel`` as ``sextant.decision.decide``, with arrays aligned as [bar, symbol]: prices,
the decision's features, out-of-fold model outputs and funding. Decisions are made at each bar's
close from that bar's inputs only and fill at the next bar's open. ``run_strategies`` runs the
fused strategy and its baselines (TA-only, ML-only, buy-and-hold) on the same inputs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from sextant.backtest import _loop
from sextant.decision._kernels import (
    CHECK_CODES,
    FEATURES_USED,
    N_CHECKS,
    SIZE_CAPS,
    STATE_NAMES,
)
from sextant.decision.config import DecisionConfig
from sextant.decision.risk import initial_risk_state
from sextant.errors import ConfigError, DataValidationError
from sextant.execution import _kernels as k
from sextant.execution.config import ExecutionConfig
from sextant.execution.records import fill_frame, trade_frame
from sextant.ta._jit import FloatArray
from sextant.timeframes import timeframe_to_timedelta

__all__ = [
    "DECISION_FIELDS",
    "STRATEGIES",
    "BacktestInputs",
    "BacktestResult",
    "run_backtest",
    "run_buy_and_hold",
    "run_strategies",
]

DECISION_FIELDS = _loop.DECISION_FIELDS
STRATEGIES: tuple[str, ...] = ("buy_and_hold", "ta_only", "ml_only", "fused")
_NS_PER_DAY = 86_400 * 10**9
# The [bar, symbol] matrices of BacktestInputs: prices, model outputs, then optional funding
_PRICE_FIELDS = ("open", "high", "low", "close", "volume")
_MODEL_FIELDS = ("p_xgb", "p_lstm", "garch_variance", "var_quantile")
_MATRIX_FIELDS = (*_PRICE_FIELDS, *_MODEL_FIELDS, "funding_rate", "feature_age")


def _matrix(name: str, values: Any, shape: tuple[int, ...]) -> FloatArray:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.shape != shape:
        raise DataValidationError(f"{name} has shape {array.shape}, expected {shape}", field=name)
    return array


@dataclass(frozen=True, eq=False)
class BacktestInputs:
    """Aligned history, [bar, symbol]: one row per bar open time in ``index`` (UTC).

    A bar a symbol lacks is NaN in all of open/high/low/close (no fill, no decision there).
    ``features`` is [bar, symbol, feature] in ``FEATURES_USED`` order; ``p_xgb``/``p_lstm`` are
    out-of-fold P(up) (NaN where none); ``garch_variance`` is the one-step variance per bar;
    ``var_quantile`` the unit-variance innovation quantile at 99 %; ``funding_rate`` the rate
    settling at the bar's open (NaN or 0 where none). ``feature_age`` (bars the decision's
    features lag the bar; 0 when fresh, NaN when unknown) and ``model_error`` (a model call failed
    at that bar) are what the gate saw live; replays of history default to 0 and False.
    """

    symbols: tuple[str, ...]
    index: pd.DatetimeIndex
    timeframe: str
    open: FloatArray
    high: FloatArray
    low: FloatArray
    close: FloatArray
    volume: FloatArray
    features: FloatArray
    p_xgb: FloatArray
    p_lstm: FloatArray
    garch_variance: FloatArray
    var_quantile: FloatArray
    funding_rate: FloatArray
    # None: fresh features and no model error at every bar (set to those arrays on init)
    feature_age: FloatArray = None  # type: ignore[assignment]
    model_error: npt.NDArray[np.bool_] = None  # type: ignore[assignment]
    day: npt.NDArray[np.int64] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.index, pd.DatetimeIndex) or str(self.index.tz) != "UTC":
            raise DataValidationError("index must be a tz-aware UTC DatetimeIndex", field="index")
        if len(self.index) == 0:
            raise DataValidationError("no bars to backtest", field="index")
        if not self.index.is_monotonic_increasing or not self.index.is_unique:
            raise DataValidationError("index is not strictly increasing", field="index")
        if len(set(self.symbols)) != len(self.symbols) or not self.symbols:
            raise DataValidationError(
                f"symbols must be distinct and non-empty: {self.symbols}", field="symbols"
            )
        shape = (len(self.index), len(self.symbols))
        if self.feature_age is None:
            object.__setattr__(self, "feature_age", np.zeros(shape))
        if self.model_error is None:
            object.__setattr__(self, "model_error", np.zeros(shape, dtype=np.bool_))
        errors = np.asarray(self.model_error)
        if errors.dtype != np.bool_ or errors.shape != shape:
            raise DataValidationError(
                f"model_error must be a boolean array of shape {shape}, got {errors.dtype} "
                f"{errors.shape}",
                field="model_error",
            )
        object.__setattr__(self, "model_error", np.ascontiguousarray(errors))
        for name in _MATRIX_FIELDS:
            object.__setattr__(self, name, _matrix(name, getattr(self, name), shape))
        object.__setattr__(
            self, "features", _matrix("features", self.features, (*shape, len(FEATURES_USED)))
        )
        bar = timeframe_to_timedelta(self.timeframe)
        closes = self.index + bar
        nanos = closes.to_numpy(dtype="datetime64[ns]").astype(np.int64)
        object.__setattr__(self, "day", nanos // _NS_PER_DAY)
        self._validate()

    def _fail(self, mask: Any, message: str, name: str) -> None:
        hits = np.argwhere(mask)
        if len(hits):
            t, s = int(hits[0][0]), int(hits[0][1])
            raise DataValidationError(
                f"{self.symbols[s]} at {self.index[t]}: {message} ({len(hits)} such values)",
                field=name,
            )

    def _validate(self) -> None:
        prices = np.stack([self.open, self.high, self.low, self.close])
        missing = np.isnan(prices)
        self._fail(
            missing.any(axis=0) & ~missing.all(axis=0), "open/high/low/close partly NaN", "open"
        )
        with np.errstate(invalid="ignore"):
            self._fail(
                ~missing.any(axis=0) & ~(prices > 0).all(axis=0), "a price is not positive", "close"
            )
            top = np.maximum(self.open, self.close)
            bottom = np.minimum(self.open, self.close)
            self._fail(
                (self.high < top * (1 - 1e-9)) | (self.low > bottom * (1 + 1e-9)),
                "high/low do not bracket open/close",
                "high",
            )
            self._fail(np.isinf(prices).any(axis=0), "a price is infinite", "close")
            for name in ("p_xgb", "p_lstm"):
                p = getattr(self, name)
                self._fail(
                    ~np.isnan(p) & ~((p >= 0) & (p <= 1)), f"{name} is not a probability", name
                )
            g = self.garch_variance
            self._fail(
                ~np.isnan(g) & ~((g >= 0) & np.isfinite(g)),
                "garch_variance is negative or infinite",
                "garch_variance",
            )
            q = self.var_quantile
            self._fail(
                ~np.isnan(q) & ~((q > 0) & np.isfinite(q)),
                "var_quantile is not positive",
                "var_quantile",
            )
            self._fail(np.isinf(self.funding_rate), "funding_rate is infinite", "funding_rate")
            self._fail(self.feature_age < 0, "feature_age is negative", "feature_age")

    @property
    def bar_close(self) -> pd.DatetimeIndex:
        """Close time of each bar: when its decision is made."""
        return self.index + timeframe_to_timedelta(self.timeframe)

    @classmethod
    def from_frames(cls, frames: Mapping[str, pd.DataFrame], timeframe: str) -> BacktestInputs:
        """Align per-symbol frames indexed by bar open time (UTC) on the union of their bars.

        Each frame needs open, high, low, close, volume, the ``FEATURES_USED`` columns, p_xgb,
        p_lstm, garch_variance and var_quantile; funding_rate and feature_age are optional (0
        when absent), model_error too (False when absent).
        """
        needed = (*_PRICE_FIELDS, *FEATURES_USED, *_MODEL_FIELDS)
        for symbol, frame in frames.items():
            absent = [c for c in needed if c not in frame.columns]
            if absent:
                raise DataValidationError(
                    f"{symbol}: missing columns {', '.join(absent)}", field=absent[0]
                )
            if not isinstance(frame.index, pd.DatetimeIndex):
                raise DataValidationError(
                    f"{symbol}: index must be the bar open time", field="index"
                )
        index = pd.DatetimeIndex(sorted(set().union(*(f.index for f in frames.values()))))
        aligned = {s: f.reindex(index) for s, f in frames.items()}
        symbols = tuple(frames)

        def stack(column: str) -> FloatArray:
            return np.stack(
                [
                    aligned[s][column].to_numpy(dtype=np.float64)
                    if column in aligned[s].columns
                    else np.zeros(len(index))
                    for s in symbols
                ],
                axis=1,
            )

        features = np.stack([stack(name) for name in FEATURES_USED], axis=2)
        return cls(
            symbols=symbols,
            index=index,
            timeframe=timeframe,
            features=features,
            model_error=np.nan_to_num(stack("model_error")) != 0.0,  # a gap row: no error
            **{name: stack(name) for name in _MATRIX_FIELDS},
        )

    def truncated(self, bars: int) -> BacktestInputs:
        """The first ``bars`` bars only (for no-look-ahead checks)."""
        return BacktestInputs(
            symbols=self.symbols,
            index=self.index[:bars],
            timeframe=self.timeframe,
            features=self.features[:bars],
            model_error=self.model_error[:bars],
            **{name: getattr(self, name)[:bars] for name in _MATRIX_FIELDS},
        )


@dataclass(frozen=True, eq=False)
class BacktestResult:
    """Per-bar accounting, decisions, trades and risk rejections of one strategy run.

    Per-bar series are labelled with the bar close (after that bar's fills, before the order
    decided at its close). ``decisions`` is [bar, symbol, field] in ``DECISION_FIELDS`` order
    (NaN where a symbol had no bar). Trades: entry_ts is the open of the fill bar, exit_ts the
    open of the bar the exit filled in; END_OF_BACKTEST rows are positions still open after the
    last bar, sold at its close (exit_ts is that bar's open), so the last bar's equity is after
    that liquidation and its position 0. ``rejections`` counts, per reason code, decisions whose proposal the gate changed
    while that check failed.
    """

    strategy: str
    symbols: tuple[str, ...]
    index: pd.DatetimeIndex
    initial_equity: float
    equity: pd.Series
    cash: pd.Series
    realized: pd.Series
    unrealized: pd.Series
    trading_state: pd.Series
    positions: pd.DataFrame
    position_value: pd.DataFrame
    fees: pd.DataFrame
    funding: pd.DataFrame
    decisions: FloatArray
    trades: pd.DataFrame
    fills: pd.DataFrame
    rejections: dict[str, int]
    config_hash: str

    @property
    def fees_total(self) -> float:
        """Fees paid over the run."""
        return float(self.fees.to_numpy().sum())

    @property
    def funding_total(self) -> float:
        """Funding paid over the run (negative: received)."""
        return float(self.funding.to_numpy().sum())

    def size_binding_counts(self) -> dict[str, int]:
        """How many decisions with a direction had their entry size set by each ``SIZE_CAPS`` cap.

        Every bar where the fuser gave a direction and the size was known counts, whether or not
        an order followed (a position already held is not resized).
        """
        codes = self.decisions[:, :, DECISION_FIELDS.index("size_binding")]
        return {name: int(np.sum(codes == code)) for code, name in enumerate(SIZE_CAPS)}

    def decision_frame(self, name: str) -> pd.DataFrame:
        """One recorded decision field as a [bar close × symbol] frame."""
        if name not in DECISION_FIELDS:
            raise KeyError(f"unknown decision field {name!r}; known: {', '.join(DECISION_FIELDS)}")
        return pd.DataFrame(
            self.decisions[:, :, DECISION_FIELDS.index(name)],
            index=self.equity.index,
            columns=list(self.symbols),
        )

    def accounting_residual(self) -> float:
        """Largest |equity - (initial + realized + unrealized - fees - funding)| over the bars."""
        fees = self.fees.to_numpy().sum(axis=1).cumsum()
        funding = self.funding.to_numpy().sum(axis=1).cumsum()
        expected = (
            self.initial_equity
            + self.realized.to_numpy()
            + self.unrealized.to_numpy()
            - fees
            - funding
        )
        return float(np.max(np.abs(self.equity.to_numpy() - expected)))


def _check_predictions(inputs: BacktestInputs, config: DecisionConfig) -> None:
    if config.fuser.ml_weight == 0:
        return
    used = []
    if config.fuser.xgb_weight > 0:
        used.append(inputs.p_xgb)
    if config.fuser.lstm_weight > 0:
        used.append(inputs.p_lstm)
    have = np.zeros(inputs.close.shape, dtype=bool)
    for p in used:
        have |= ~np.isnan(p)
    for s, symbol in enumerate(inputs.symbols):
        if not have[:, s].any():
            raise DataValidationError(
                f"{symbol}: no out-of-fold predictions between {inputs.index[0]} and "
                f"{inputs.index[-1]}; train the models (walk-forward CV) over this period first",
                field="p_xgb",
            )


def _result(
    strategy: str,
    inputs: BacktestInputs,
    initial: float,
    arrays: dict[str, FloatArray],
    trades: pd.DataFrame,
    fills: pd.DataFrame,
    rejections: dict[str, int],
    config_hash: str,
) -> BacktestResult:
    labels = inputs.bar_close
    columns = list(inputs.symbols)
    marks = pd.DataFrame(inputs.close, index=labels, columns=columns).ffill().fillna(0.0)
    positions = pd.DataFrame(arrays["units"], index=labels, columns=columns)
    names = np.asarray(STATE_NAMES, dtype=object)
    states = pd.Series(names[arrays["state"].astype(np.int64)], index=labels, name="trading_state")
    return BacktestResult(
        strategy=strategy,
        symbols=inputs.symbols,
        index=inputs.index,
        initial_equity=initial,
        equity=pd.Series(arrays["equity"], index=labels, name="equity"),
        cash=pd.Series(arrays["cash"], index=labels, name="cash"),
        realized=pd.Series(arrays["realized"], index=labels, name="realized"),
        unrealized=pd.Series(arrays["unrealized"], index=labels, name="unrealized"),
        trading_state=states,
        positions=positions,
        position_value=positions * marks,
        fees=pd.DataFrame(arrays["fees"], index=labels, columns=columns),
        funding=pd.DataFrame(arrays["funding"], index=labels, columns=columns),
        decisions=arrays["decisions"],
        trades=trades,
        fills=fills,
        rejections=rejections,
        config_hash=config_hash,
    )


def _bar_open(inputs: BacktestInputs) -> Callable[[npt.NDArray[np.int64]], pd.DatetimeIndex]:
    """Bar numbers of a backtest (positions in its index) -> bar open times."""

    def bar_open(bars: npt.NDArray[np.int64]) -> pd.DatetimeIndex:
        return inputs.index[bars]

    return bar_open


def run_backtest(
    inputs: BacktestInputs,
    config: DecisionConfig,
    backtest: ExecutionConfig | None = None,
    *,
    strategy: str = "fused",
) -> BacktestResult:
    """Replay ``config``'s decisions over ``inputs`` (fills at the next open) and account for them."""
    bt = backtest or ExecutionConfig()
    if config.sizing.timeframe != inputs.timeframe:
        raise ConfigError(
            f"the decision config sizes {config.sizing.timeframe} bars "
            f"(SizingConfig.timeframe) but the inputs are {inputs.timeframe} bars"
        )
    _check_predictions(inputs, config)
    loop, fingerprint = _loop.compiled_loop()
    n_bars, n_symbols = inputs.close.shape
    arrays: dict[str, FloatArray] = {
        "equity": np.empty(n_bars),
        "cash": np.empty(n_bars),
        "realized": np.empty(n_bars),
        "unrealized": np.empty(n_bars),
        "state": np.empty(n_bars),
        "units": np.empty((n_bars, n_symbols)),
        "fees": np.empty((n_bars, n_symbols)),
        "funding": np.empty((n_bars, n_symbols)),
        "decisions": np.empty((n_bars, n_symbols, _loop.D_SIZE)),
    }
    rejections = np.zeros(N_CHECKS)
    # room for what the kernels can add: one trade and two fills per symbol and bar
    trades = np.empty((n_bars * n_symbols + n_symbols, k.TR_SIZE))
    fills = np.empty((2 * n_bars * n_symbols + n_symbols, k.FL_SIZE))
    sym = np.empty((n_symbols, k.SS_SIZE))
    acct = np.zeros(k.AC_SIZE)
    build = np.zeros(1)
    risk_state = initial_risk_state(config.risk)
    loop(
        inputs.day,
        inputs.open,
        inputs.high,
        inputs.low,
        inputs.close,
        inputs.volume,
        inputs.features,
        inputs.p_xgb,
        inputs.p_lstm,
        inputs.garch_variance,
        inputs.var_quantile,
        inputs.funding_rate,
        inputs.feature_age,
        inputs.model_error,
        config.fuser.to_array(),
        config.sizing.to_array(),
        config.risk.to_array(),
        bt.to_array(),
        risk_state,
        arrays["equity"],
        arrays["cash"],
        arrays["realized"],
        arrays["unrealized"],
        arrays["state"],
        arrays["units"],
        arrays["fees"],
        arrays["funding"],
        arrays["decisions"],
        rejections,
        sym,
        acct,
        trades,
        fills,
        build,
    )
    if build[0] != fingerprint:
        raise RuntimeError("the backtest loop ran with stale decision kernels; clear numba caches")
    bar_open = _bar_open(inputs)
    counts = {code: int(rejections[i]) for i, code in enumerate(CHECK_CODES)}
    return _result(
        strategy,
        inputs,
        bt.initial_equity,
        arrays,
        trade_frame(trades[: int(acct[k.AC_TRADES])], inputs.symbols, bar_open),
        fill_frame(fills[: int(acct[k.AC_FILLS])], inputs.symbols, bar_open),
        counts,
        config.config_hash(),
    )


def run_buy_and_hold(
    inputs: BacktestInputs, backtest: ExecutionConfig | None = None
) -> BacktestResult:
    """Baseline: equal spot allocation per symbol at its first open, sold at the last close.

    Both orders pay the taker fee and the base slippage. Not the decision logic, so a plain
    vectorized path; spot holdings pay no funding.
    """
    bt = backtest or ExecutionConfig()
    n_bars, n_symbols = inputs.close.shape
    allocation = bt.initial_equity / n_symbols
    units = np.zeros((n_bars, n_symbols))
    fees = np.zeros((n_bars, n_symbols))
    cash = np.full(n_bars, bt.initial_equity)
    unrealized = np.zeros(n_bars)
    realized = np.zeros(n_bars)
    marks = pd.DataFrame(inputs.close).ffill().to_numpy()
    records = []
    fill_records = []
    for s in range(n_symbols):
        valid = np.flatnonzero(inputs.open[:, s] > 0)
        if len(valid) == 0:
            continue
        t0 = int(valid[0])
        price = inputs.open[t0, s] * (1 + bt.slippage_base_bps / 1e4)
        qty = allocation / (price * (1 + bt.taker_fee))
        fee = qty * price * bt.taker_fee
        units[t0:, s] = qty
        fees[t0, s] = fee
        cash[t0:] -= qty * price + fee
        unrealized[t0:-1] += qty * (marks[t0:-1, s] - price)
        # the end: sold at the last close, as the engine liquidates what is still open
        exit_price = marks[-1, s] * (1 - bt.slippage_base_bps / 1e4)
        exit_fee = qty * exit_price * bt.taker_fee
        units[-1, s] = 0.0
        fees[-1, s] += exit_fee
        cash[-1] += qty * exit_price - exit_fee
        realized[-1] += qty * (exit_price - price)
        records.append(
            [
                s,
                1.0,
                t0,
                n_bars - 1,
                qty,
                qty,
                qty * price,
                qty,
                qty * exit_price,
                qty * (exit_price - price),
                fee + exit_fee,
                0.0,
                k.EXIT_END,
            ]
        )
        fill_records.append([t0, s, qty, price, fee, k.FK_ORDER])
        fill_records.append([n_bars - 1, s, -qty, exit_price, exit_fee, k.FK_LIQUIDATION])
    value = np.nansum(units * np.nan_to_num(marks), axis=1)
    arrays = {
        "equity": cash + value,
        "cash": cash,
        "realized": realized,
        "unrealized": unrealized,
        "state": np.zeros(n_bars),
        "units": units,
        "fees": fees,
        "funding": np.zeros((n_bars, n_symbols)),
        "decisions": np.full((n_bars, n_symbols, _loop.D_SIZE), np.nan),
    }
    table = np.array(records, dtype=np.float64).reshape(-1, k.TR_SIZE)
    fill_table = np.array(fill_records, dtype=np.float64).reshape(-1, k.FL_SIZE)
    bar_open = _bar_open(inputs)
    return _result(
        "buy_and_hold",
        inputs,
        bt.initial_equity,
        arrays,
        trade_frame(table, inputs.symbols, bar_open),
        fill_frame(fill_table, inputs.symbols, bar_open),
        dict.fromkeys(CHECK_CODES, 0),
        "buy_and_hold",
    )


def run_strategies(
    inputs: BacktestInputs, config: DecisionConfig, backtest: ExecutionConfig | None = None
) -> dict[str, BacktestResult]:
    """The fused strategy and its baselines on the same inputs, keyed by ``STRATEGIES`` names."""
    return {
        "buy_and_hold": run_buy_and_hold(inputs, backtest),
        "ta_only": run_backtest(inputs, config.ta_only(), backtest, strategy="ta_only"),
        "ml_only": run_backtest(inputs, config.ml_only(), backtest, strategy="ml_only"),
        "fused": run_backtest(inputs, config, backtest, strategy="fused"),
    }
