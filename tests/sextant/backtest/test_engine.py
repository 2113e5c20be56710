"""The backtest engine: fills, stops and funding on hand-built bars; accounting and gate
invariants on random bars; no look-ahead and live parity on real BTC/ETH candles."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sextant import ta
from sextant.backtest import (
    DECISION_FIELDS,
    STRATEGIES,
    BacktestInputs,
    BacktestResult,
    run_backtest,
    run_buy_and_hold,
    run_strategies,
)
from sextant.decision import (
    FEATURES_USED,
    SIZE_CAPS,
    DecisionConfig,
    ModelOutputs,
    PortfolioState,
    RiskGate,
    decide,
)
from sextant.errors import ConfigError, DataValidationError
from sextant.execution import ExecutionConfig

SYMBOLS = ("BTC/USDT", "ETH/USDT")
FIELD = {name: i for i, name in enumerate(DECISION_FIELDS)}
ACTIONS = ("HOLD", "BUY", "SELL", "CLOSE", "REDUCE")  # the recorded action codes
BULLISH = np.array([60.0, 0.001, 0.5, 25.0, 0.01, 1.0, 1.0])  # FEATURES_USED order, natr 1 %
BEARISH = np.array([40.0, -0.001, 0.5, 25.0, -0.01, -1.0, 1.0])
assert FEATURES_USED[-1] == "natr_14"

# deterministic sizing for the hand-built bars: every entry takes 50 % of equity
HAND_CONFIG = DecisionConfig.from_dict(
    {
        "sizing": {"target_annual_vol": 5.0, "kelly_fraction": 1.0, "max_leverage": 0.5},
        "risk": {"var_limit": 0.5},
    }
)
HAND_BT = ExecutionConfig(
    initial_equity=100_000.0,
    taker_fee=0.001,
    maker_fee=0.0005,
    slippage_base_bps=10.0,
    slippage_vol_bps=0.0,
    slippage_size_k=0.0,
)


def hand_inputs(
    bars: list[tuple[float, float, float, float]],
    *,
    features: np.ndarray = BULLISH,
    p_first: float = 0.9,
    funding: dict[int, float] | None = None,
) -> BacktestInputs:
    """One symbol; the first bar's close decides (features, p); later bars have no ML: hold."""
    n = len(bars)
    prices = np.array(bars, dtype=np.float64)
    p = np.full((n, 1), np.nan)
    p[0] = p_first
    rates = np.zeros((n, 1))
    for bar, rate in (funding or {}).items():
        rates[bar] = rate
    return BacktestInputs(
        symbols=("BTC/USDT",),
        index=pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
        timeframe="1h",
        open=prices[:, :1],
        high=prices[:, 1:2],
        low=prices[:, 2:3],
        close=prices[:, 3:4],
        volume=np.full((n, 1), 1_000.0),
        features=np.tile(features, (n, 1, 1)),
        p_xgb=p,
        p_lstm=p,
        garch_variance=np.full((n, 1), 1e-4),
        var_quantile=np.full((n, 1), 2.6),
        funding_rate=rates,
    )


ENTRY = (100.0, 101.0, 99.0, 100.0)  # decides: long 50 % of 100k at close 100 → 500 units
FILL = (
    102.0,
    103.0,
    101.0,
    102.0,
)  # fills at 102 * 1.001; stop 2 ATR (2.0) below, target 3.0 above
FILL_PRICE = 102.0 * 1.001
STOP = FILL_PRICE - 2.0
TARGET = FILL_PRICE + 3.0


def test_a_long_entry_fills_at_the_next_open_with_taker_fee_and_slippage() -> None:
    # Act
    result = run_backtest(hand_inputs([ENTRY, FILL, FILL]), HAND_CONFIG, HAND_BT)
    # Assert
    fee = 500.0 * FILL_PRICE * 0.001
    assert result.positions.iloc[:, 0].tolist() == [0.0, 500.0, 0.0]  # sold at the end
    assert result.fees.iloc[1, 0] == pytest.approx(fee)
    assert result.cash.iloc[1] == pytest.approx(100_000.0 - 500.0 * FILL_PRICE - fee)
    assert result.equity.iloc[1] == pytest.approx(result.cash.iloc[1] + 500.0 * 102.0)
    assert result.decision_frame("action").iloc[0, 0] == 1  # BUY at the first close
    trade = result.trades.iloc[0]
    assert (trade.side, trade.reason, trade.entry_price) == (
        "LONG",
        "END_OF_BACKTEST",
        pytest.approx(FILL_PRICE),
    )
    assert trade.entry_ts == result.index[1]


def test_a_position_open_at_the_end_is_liquidated_at_the_last_close() -> None:
    # Arrange: long 500 units from the second open; the last bar closes at 103
    last = (102.0, 104.0, 101.0, 103.0)
    # Act
    result = run_backtest(hand_inputs([ENTRY, FILL, last]), HAND_CONFIG, HAND_BT)
    # Assert: a market exit at the close, 10 bps slippage against it and the taker fee
    entry_fee = 500.0 * FILL_PRICE * 0.001
    mark_to_market = 100_000.0 - 500.0 * FILL_PRICE - entry_fee + 500.0 * 103.0
    exit_price = 103.0 * (1.0 - 0.001)
    slippage = 500.0 * (103.0 - exit_price)
    exit_fee = 500.0 * exit_price * 0.001
    assert result.equity.iloc[-1] == pytest.approx(mark_to_market - slippage - exit_fee, abs=1e-9)
    trade = result.trades.iloc[0]
    assert (trade.reason, trade.exit_ts) == ("END_OF_BACKTEST", result.index[2])
    assert trade.exit_price == pytest.approx(exit_price)
    assert trade.fees == pytest.approx(entry_fee + exit_fee)
    assert trade.pnl == pytest.approx(result.equity.iloc[-1] - 100_000.0)
    assert result.fees.iloc[2, 0] == pytest.approx(exit_fee)
    assert result.positions.iloc[:, 0].tolist() == [0.0, 500.0, 0.0]
    assert result.unrealized.iloc[-1] == 0.0 and result.accounting_residual() < 1e-9


def test_which_sizing_cap_binds_is_recorded_and_counted() -> None:
    # Arrange: HAND_CONFIG sizes by its 50 % leverage cap; later bars have no direction
    inputs = hand_inputs([ENTRY, FILL, FILL])
    # Act
    result = run_backtest(inputs, HAND_CONFIG, HAND_BT)
    # Assert
    binding = result.decision_frame("size_binding").iloc[:, 0].tolist()
    assert binding[0] == SIZE_CAPS.index("leverage") and np.isnan(binding[1:]).all()
    assert result.size_binding_counts() == {"vol_target": 0, "kelly": 0, "leverage": 1}


@pytest.mark.parametrize(
    ("bar", "reason", "exit_price", "fee_rate"),
    [
        ((102.0, 102.5, 100.0, 101.0), "STOP", STOP * 0.999, 0.001),  # stop hit intrabar
        ((102.0, 106.0, 99.0, 101.0), "STOP", STOP * 0.999, 0.001),  # both touched: stop first
        ((99.0, 100.0, 98.0, 99.5), "STOP", 99.0 * 0.999, 0.001),  # gap through the stop: open
        ((102.0, 106.0, 101.0, 105.0), "TAKE_PROFIT", TARGET, 0.0005),  # limit: maker, no slip
        ((106.0, 107.0, 105.5, 106.0), "TAKE_PROFIT", 106.0, 0.0005),  # gap through the target
    ],
)
def test_stops_and_targets_within_the_bar(
    bar: tuple[float, float, float, float], reason: str, exit_price: float, fee_rate: float
) -> None:
    # Act
    result = run_backtest(hand_inputs([ENTRY, FILL, bar]), HAND_CONFIG, HAND_BT)
    # Assert
    trade = result.trades.iloc[0]
    assert trade.reason == reason and trade.exit_ts == result.index[2]
    assert trade.exit_price == pytest.approx(exit_price)
    assert result.positions.iloc[2, 0] == 0.0
    assert result.fees.iloc[2, 0] == pytest.approx(500.0 * exit_price * fee_rate)
    entry_fee = 500.0 * FILL_PRICE * 0.001
    exit_fee = 500.0 * exit_price * fee_rate
    assert trade.pnl == pytest.approx(500.0 * (exit_price - FILL_PRICE) - entry_fee - exit_fee)
    assert result.equity.iloc[2] == pytest.approx(100_000.0 + trade.pnl)


def test_funding_is_paid_at_settlement_on_the_position_held_into_it() -> None:
    # Arrange: settlements at the fill bar's open (no position yet) and the next one
    long = hand_inputs([ENTRY, FILL, FILL], funding={1: 0.0001, 2: 0.0001})
    short = hand_inputs([ENTRY, FILL, FILL], features=BEARISH, p_first=0.1, funding={2: 0.0001})
    # Act
    paid = run_backtest(long, HAND_CONFIG, HAND_BT)
    received = run_backtest(short, HAND_CONFIG, HAND_BT)
    # Assert
    assert paid.funding.iloc[1, 0] == 0.0
    assert paid.funding.iloc[2, 0] == pytest.approx(500.0 * 102.0 * 0.0001)
    assert paid.trades.funding.iloc[0] == pytest.approx(5.1)
    assert received.positions.iloc[1, 0] == -500.0
    assert received.funding.iloc[2, 0] == pytest.approx(-5.1)  # shorts receive a positive rate
    assert received.funding_total == pytest.approx(-5.1)


def test_a_reversal_closes_and_opens_at_the_next_open() -> None:
    # Arrange: long at the first close; at the second close everything turns bearish
    inputs = hand_inputs([ENTRY, FILL, FILL, FILL])
    inputs.features[1] = BEARISH
    inputs.p_xgb[1] = inputs.p_lstm[1] = 0.1
    # Act
    result = run_backtest(inputs, HAND_CONFIG, HAND_BT)
    # Assert
    assert result.decision_frame("action").iloc[1, 0] == 2  # SELL through flat
    first, second = result.trades.iloc[0], result.trades.iloc[1]
    assert (first.side, first.reason, first.exit_ts) == ("LONG", "REVERSE", result.index[2])
    assert first.exit_price == pytest.approx(102.0 * 0.999)
    assert (second.side, second.entry_price) == ("SHORT", pytest.approx(102.0 * 0.999))
    assert result.positions.iloc[2, 0] < 0


# --- random bars: accounting identity and gate invariants ----------------------------------------


def random_inputs(seed: int, n_bars: int, n_symbols: int, missing: float) -> BacktestInputs:
    """Consistent random OHLC with random features, model outputs, funding and missing bars."""
    rng = np.random.default_rng(seed)
    shape = (n_bars, n_symbols)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0.0, rng.uniform(0.002, 0.05), shape), axis=0))
    open_ = np.vstack([close[:1], close[:-1]]) * np.exp(rng.normal(0.0, 0.01, shape))
    high = np.maximum(open_, close) * np.exp(np.abs(rng.normal(0.0, 0.02, shape)))
    low = np.minimum(open_, close) * np.exp(-np.abs(rng.normal(0.0, 0.02, shape)))
    gone = rng.random(shape) < missing
    for a in (open_, high, low, close):
        a[gone] = np.nan
    features = np.stack(
        [
            rng.uniform(0, 100, shape),
            rng.normal(0, 1e-3, shape),
            rng.normal(0.5, 0.6, shape),
            rng.uniform(0, 50, shape),
            rng.normal(0, 0.01, shape),
            rng.choice([-1.0, 0.0, 1.0], shape),
            rng.uniform(0.2, 4.0, shape),
        ],
        axis=2,
    )
    features[rng.random(features.shape) < 0.03] = np.nan

    def sometimes_nan(values: np.ndarray, rate: float) -> np.ndarray:
        values[rng.random(values.shape) < rate] = np.nan
        return values

    return BacktestInputs(
        symbols=SYMBOLS[:n_symbols] if n_symbols <= 2 else tuple(f"S{i}" for i in range(n_symbols)),
        index=pd.date_range("2024-01-01", periods=n_bars, freq="h", tz="UTC"),
        timeframe="1h",
        open=open_,
        high=high,
        low=low,
        close=close,
        volume=sometimes_nan(rng.lognormal(5, 1, shape), 0.05),
        features=features,
        p_xgb=sometimes_nan(rng.uniform(0, 1, shape), 0.1),
        p_lstm=sometimes_nan(rng.uniform(0, 1, shape), 0.1),
        garch_variance=sometimes_nan(rng.uniform(1e-6, 2e-3, shape), 0.05),
        var_quantile=np.full(shape, 2.6),
        funding_rate=np.where(rng.random(shape) < 0.2, rng.normal(0, 5e-4, shape), 0.0),
    )


def check_invariants(
    result: BacktestResult, inputs: BacktestInputs, config: DecisionConfig
) -> None:
    """Accounting identity, trade log consistency, and what the gate may approve."""
    scale = max(float(np.nanmax(np.abs(result.equity.to_numpy()))), result.initial_equity)
    tol = 1e-9 * scale
    # equity = initial + realized + unrealized - fees - funding, and = cash + positions value
    assert result.accounting_residual() <= tol
    marks = pd.DataFrame(inputs.close).ffill().fillna(0.0).to_numpy()
    value = (result.positions.to_numpy() * marks).sum(axis=1)
    assert np.allclose(result.cash.to_numpy() + value, result.equity.to_numpy(), rtol=0, atol=tol)
    # every fee and funding payment belongs to a trade, and trades add up to the P&L
    assert (result.fees.to_numpy() >= 0).all()
    assert result.trades.fees.sum() == pytest.approx(result.fees_total, abs=tol)
    assert result.trades.funding.sum() == pytest.approx(result.funding_total, abs=tol)
    assert result.trades.pnl.sum() == pytest.approx(
        result.equity.iloc[-1] - result.initial_equity, abs=10 * tol
    )
    # the gate: caps always, nothing when HALTED, only reductions when REDUCING
    d = result.decisions
    approved, current = d[:, :, FIELD["approved"]], d[:, :, FIELD["current"]]
    decided = ~np.isnan(approved)
    risk = config.risk
    assert (np.abs(approved[decided]) <= risk.max_position).all()
    unit_var = np.sqrt(inputs.garch_variance) * inputs.var_quantile
    var_known = decided & (unit_var > 0)
    assert (np.abs(approved[var_known]) * unit_var[var_known] <= risk.var_limit * (1 + 1e-9)).all()
    all_decided = decided.all(axis=1)
    gross = np.abs(np.where(decided, approved, 0.0)).sum(axis=1)
    assert (gross[all_decided] <= risk.max_gross_exposure * (1 + 1e-9)).all()
    states = result.trading_state.to_numpy()
    halted = (states == "HALTED")[:, None] & decided
    assert (approved[halted] == 0.0).all()
    reducing = (states == "REDUCING")[:, None] & decided
    lo, hi = np.minimum(current, 0.0), np.maximum(current, 0.0)
    assert ((approved[reducing] >= lo[reducing]) & (approved[reducing] <= hi[reducing])).all()


@settings(max_examples=1000, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**32 - 1),
    n_bars=st.integers(1, 60),
    n_symbols=st.integers(1, 3),
    missing=st.sampled_from([0.0, 0.0, 0.1]),
    mode=st.sampled_from(["weighted", "agreement", "ml_gated"]),
    entry=st.floats(0.0, 0.5),
    leverage=st.floats(0.1, 3.0),
    limits=st.fixed_dictionaries(
        {
            "max_position": st.floats(0.0, 2.0),
            "max_gross_exposure": st.floats(0.0, 3.0),
            "var_limit": st.floats(0.001, 0.2),
            "daily_loss_limit": st.floats(0.005, 0.3),
            "soft_drawdown": st.floats(0.005, 0.1),
            "max_orders_per_day": st.integers(0, 30),
            "halt_reset_days": st.integers(0, 1),
        }
    ),
    fees=st.tuples(
        st.floats(0.0, 0.003), st.floats(0.0, 0.003), st.floats(0.0, 30.0), st.floats(0.0, 1.0)
    ),
)
def test_accounting_and_gate_invariants_hold_on_random_bars(
    seed: int,
    n_bars: int,
    n_symbols: int,
    missing: float,
    mode: str,
    entry: float,
    leverage: float,
    limits: dict[str, float],
    fees: tuple[float, float, float, float],
) -> None:
    # Arrange: aggressive sizing so that every limit binds somewhere
    inputs = random_inputs(seed, n_bars, n_symbols, missing)
    config = DecisionConfig.from_dict(
        {
            "fuser": {"mode": mode, "entry_threshold": entry},
            "sizing": {"kelly_fraction": 1.0, "target_annual_vol": 3.0, "max_leverage": leverage},
            "risk": {**limits, "hard_drawdown": limits["soft_drawdown"] * 2, "min_confidence": 0.0},
        }
    )
    taker, maker, slip_bps, size_k = fees
    backtest = ExecutionConfig(
        taker_fee=taker, maker_fee=maker, slippage_base_bps=slip_bps, slippage_size_k=size_k
    )
    # Act
    try:
        result = run_backtest(inputs, config, backtest)
    except DataValidationError as exc:  # a symbol drew no prediction at all
        assert "no out-of-fold predictions" in str(exc)
        return
    # Assert
    check_invariants(result, inputs, config)


# --- real candles: no look-ahead, live parity, baselines ----------------------------------------


def _features(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    h, lo, c = (frame[k].to_numpy() for k in ("high", "low", "close"))
    donchian = ta.donchian(h, lo, 20)
    upper, lower = np.r_[np.nan, donchian.upper[:-1]], np.r_[np.nan, donchian.lower[:-1]]
    breakout = np.where(c > upper, 1.0, np.where(c < lower, -1.0, 0.0))
    breakout[np.isnan(upper)] = np.nan
    return {
        "rsi_14": ta.rsi(c, 14),
        "macd_hist_pct": ta.macd(c, 12, 26, 9).hist / c,
        "bb_percent_b_20": ta.bbands(c, 20, 2.0).percent_b,
        "adx_14": ta.adx(h, lo, c, 14).adx,
        "ema_cross_12_26": ta.ema(c, 12) / ta.ema(c, 26) - 1.0,
        "donchian_breakout_20": breakout,
        "natr_14": ta.natr(h, lo, c, 14),
    }


@pytest.fixture(scope="module")
def real_inputs(shared_data: Path) -> BacktestInputs:
    """700 hourly bars of BTC and ETH from 2021 with their funding; synthetic model outputs."""
    rng = np.random.default_rng(11)
    frames = {}
    for symbol in SYMBOLS:
        base = symbol.split("/")[0]
        root = shared_data / "roshan7869_algotrading" / "binance"
        candles = pd.read_feather(root / f"{base}_USDT-1h.feather").iloc[30_000:30_700]
        frame = candles.set_index("date")[["open", "high", "low", "close", "volume"]]
        for name, values in _features(frame).items():
            frame[name] = values
        returns = np.log(frame["close"]).diff().fillna(0.0)
        frame["garch_variance"] = (returns**2).ewm(alpha=0.05).mean().clip(lower=1e-6)
        frame["var_quantile"] = 2.6
        drift = 0.5 + 2.0 * returns.rolling(6).mean().fillna(0.0)
        frame["p_xgb"] = np.clip(drift + rng.normal(0, 0.05, len(frame)), 0.02, 0.98)
        frame["p_lstm"] = np.clip(drift + rng.normal(0, 0.05, len(frame)), 0.02, 0.98)
        frame.iloc[100:130, frame.columns.get_loc("p_lstm")] = np.nan  # a family drops out
        funding = pd.read_feather(root / "futures" / f"{base}_USDT_USDT-1h-funding_rate.feather")
        frame["funding_rate"] = funding.set_index("date")["open"].reindex(frame.index).fillna(0.0)
        frames[symbol] = frame
    return BacktestInputs.from_frames(frames, "1h")


REAL_CONFIG = DecisionConfig.from_dict(
    {
        "fuser": {"entry_threshold": 0.15},
        "risk": {
            "max_orders_per_day": 6,
            "soft_drawdown": 0.03,
            "hard_drawdown": 0.06,
            "halt_reset_days": 1,
        },
        "sizing": {"kelly_fraction": 1.0, "max_leverage": 1.0},
    }
)


@pytest.fixture(scope="module")
def real_result(real_inputs: BacktestInputs) -> BacktestResult:
    return run_backtest(real_inputs, REAL_CONFIG)


def test_real_run_trades_and_keeps_its_books(
    real_inputs: BacktestInputs, real_result: BacktestResult
) -> None:
    # Assert: a non-trivial run (trades, funding, risk interventions), books balanced
    assert len(real_result.trades) >= 10
    assert real_result.funding_total != 0.0
    assert sum(real_result.rejections.values()) > 0
    assert set(real_result.trading_state) >= {"ACTIVE"}
    check_invariants(real_result, real_inputs, REAL_CONFIG)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(t=st.integers(0, 699))
def test_a_decision_at_t_is_identical_without_the_data_after_t(
    t: int, real_inputs: BacktestInputs, real_result: BacktestResult
) -> None:
    # Act
    truncated = run_backtest(real_inputs.truncated(t + 1), REAL_CONFIG)
    # Assert: equal up to bar t's decisions; after them the truncated run sells what it holds
    assert np.array_equal(truncated.decisions, real_result.decisions[: t + 1], equal_nan=True)
    assert np.array_equal(truncated.equity.to_numpy()[:t], real_result.equity.to_numpy()[:t])
    assert np.array_equal(truncated.positions.to_numpy()[:t], real_result.positions.to_numpy()[:t])


def test_live_decide_replays_the_backtest_decisions(
    real_inputs: BacktestInputs, real_result: BacktestResult
) -> None:
    # Arrange: the live path, fed the portfolio the backtest held at each close
    gate = RiskGate(REAL_CONFIG.risk)
    closes = real_inputs.bar_close
    d = real_result.decisions
    units = real_result.positions.to_numpy()
    mismatches = []
    # Act
    for t in range(len(closes)):
        equity = float(real_result.equity.iloc[t])
        notional = {s: units[t, i] * real_inputs.close[t, i] for i, s in enumerate(SYMBOLS)}
        for i, symbol in enumerate(SYMBOLS):
            features = dict(zip(FEATURES_USED, real_inputs.features[t, i].tolist(), strict=True))
            models = ModelOutputs(
                p_xgb=real_inputs.p_xgb[t, i],
                p_lstm=real_inputs.p_lstm[t, i],
                garch_variance=real_inputs.garch_variance[t, i],
                var_quantile=real_inputs.var_quantile[t, i],
            )
            live = decide(
                symbol,
                closes[t].to_pydatetime(),
                features,
                models,
                PortfolioState(equity, dict(notional)),
                REAL_CONFIG,
                gate,
                price=float(real_inputs.close[t, i]),
            )
            if live.target_fraction != live.current_fraction:
                notional[symbol] = live.target_fraction * equity  # the pending order's target
            recorded = d[t, i]
            same = (
                live.fused.score == recorded[FIELD["fused_score"]]
                and live.fused.direction == recorded[FIELD["direction"]]
                and math.isclose(
                    live.target_fraction, recorded[FIELD["approved"]], rel_tol=1e-12, abs_tol=1e-15
                )
                and live.action.value == ACTIONS[int(recorded[FIELD["action"]])]
            )
            if not same:
                mismatches.append((t, symbol))
    # Assert
    assert mismatches == []
    assert gate.state.value == real_result.trading_state.iloc[-1]


def test_strategies_and_baselines_run_on_the_same_inputs(real_inputs: BacktestInputs) -> None:
    # Act
    results = run_strategies(real_inputs, REAL_CONFIG)
    # Assert
    assert tuple(results) == STRATEGIES
    for name, result in results.items():
        assert result.strategy == name and len(result.equity) == 700
        assert result.accounting_residual() < 1e-6
    hold = results["buy_and_hold"]
    assert (hold.positions.iloc[-2] > 0).all() and (hold.positions.iloc[-1] == 0).all()
    assert len(hold.trades) == 2 and set(hold.trades.reason) == {"END_OF_BACKTEST"}
    traded = (hold.trades.units * (hold.trades.entry_price + hold.trades.exit_price)).sum()
    assert hold.fees_total == pytest.approx(traded * 0.0005)
    assert np.isnan(hold.decisions).all()


def test_buy_and_hold_known_answer() -> None:
    # Arrange
    inputs = hand_inputs([ENTRY, FILL, (102.0, 110.0, 101.0, 108.0)])
    # Act
    result = run_buy_and_hold(inputs, HAND_BT)
    # Assert: all in at the first open (taker, 10 bps), marked at each close, sold at the last
    price = 100.0 * 1.001
    units = 100_000.0 / (price * 1.001)
    exit_price = 108.0 * 0.999
    assert result.positions.iloc[0, 0] == pytest.approx(units)
    assert result.equity.iloc[1] == pytest.approx(units * 102.0)
    assert result.equity.iloc[-1] == pytest.approx(units * exit_price * 0.999)
    assert result.fees_total == pytest.approx(units * (price + exit_price) * 0.001)
    assert result.accounting_residual() < 1e-9


def test_ta_only_needs_no_predictions_and_ml_strategies_do(real_inputs: BacktestInputs) -> None:
    # Arrange
    blind = BacktestInputs(
        **{
            **{
                f: getattr(real_inputs, f)
                for f in (
                    "symbols",
                    "index",
                    "timeframe",
                    "open",
                    "high",
                    "low",
                    "close",
                    "volume",
                    "features",
                    "garch_variance",
                    "var_quantile",
                    "funding_rate",
                )
            },
            "p_xgb": np.full(real_inputs.close.shape, np.nan),
            "p_lstm": np.full(real_inputs.close.shape, np.nan),
        }
    )
    # Act
    ta_only = run_backtest(blind, REAL_CONFIG.ta_only())
    # Assert
    assert len(ta_only.trades) > 0
    with pytest.raises(
        DataValidationError, match=r"BTC/USDT: no out-of-fold predictions between 2021-06-08"
    ):
        run_backtest(blind, REAL_CONFIG)


def test_missing_bars_make_no_fills_and_no_decisions() -> None:
    # Arrange: the fill bar is missing, so the order lapses
    inputs = hand_inputs([ENTRY, (math.nan,) * 4, FILL])  # type: ignore[list-item]
    # Act
    result = run_backtest(inputs, HAND_CONFIG, HAND_BT)
    # Assert
    assert np.isnan(result.decisions[1]).all()
    assert result.positions.iloc[:, 0].tolist() == [0.0, 0.0, 0.0]
    assert result.accounting_residual() == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda i: i.high.__setitem__((1, 0), math.nan),
            "BTC/USDT at 2024-01-01 01:00:00\\+00:00: open/high/low/close partly NaN",
        ),
        (lambda i: i.close.__setitem__((2, 0), -1.0), "not positive"),
        (lambda i: i.high.__setitem__((2, 0), 50.0), "bracket"),
        (lambda i: i.p_xgb.__setitem__((0, 0), 1.2), "p_xgb is not a probability"),
        (lambda i: i.garch_variance.__setitem__((0, 0), -1.0), "garch_variance"),
    ],
)
def test_corrupt_inputs_are_refused_naming_symbol_and_time(change: object, message: str) -> None:
    # Arrange
    inputs = hand_inputs([ENTRY, FILL, FILL])
    change(inputs)  # type: ignore[operator]
    # Act / Assert
    with pytest.raises(DataValidationError, match=message):
        inputs.truncated(3)


# --- replayed feature age and model errors --------------------------------------------------------


def test_a_stale_stretch_in_the_data_replays_as_stale_features_flats() -> None:
    # Arrange: a long signal at every close; the features lag 3 bars at the first three closes
    bars = [ENTRY, FILL, FILL, FILL, FILL, FILL]
    fresh = hand_inputs(bars)
    fresh.p_xgb[:] = fresh.p_lstm[:] = 0.9
    age = np.zeros((len(bars), 1))
    age[:3] = 3.0  # > max_feature_age_bars (1)
    stale = dataclasses.replace(fresh, feature_age=age)
    # Act
    result = run_backtest(stale, HAND_CONFIG, HAND_BT)
    # Assert: no new risk while stale (STALE_FEATURES), the entry at the first fresh close
    approved = result.decision_frame("approved").iloc[:, 0].tolist()
    proposed = result.decision_frame("proposed").iloc[:, 0].tolist()
    assert approved[:3] == [0.0, 0.0, 0.0] and proposed[:3] == [0.5, 0.5, 0.5]
    assert approved[3] == 0.5
    assert result.rejections["STALE_FEATURES"] == 3
    assert result.trades.entry_ts.tolist() == [result.index[4]]
    assert run_backtest(fresh, HAND_CONFIG, HAND_BT).trades.entry_ts.tolist() == [result.index[1]]


def test_replayed_model_errors_trip_the_circuit_breaker() -> None:
    # Arrange: long at every close; model calls fail at closes 1, 2 and 3 (3 in a row trips)
    bars = [ENTRY, FILL, FILL, FILL, FILL, FILL]
    inputs = hand_inputs(bars)
    inputs.p_xgb[:] = inputs.p_lstm[:] = 0.9
    errors = np.zeros((len(bars), 1), dtype=bool)
    errors[1:4] = True
    failing = dataclasses.replace(inputs, model_error=errors)
    # Act
    result = run_backtest(failing, HAND_CONFIG, HAND_BT)
    # Assert: HALTED from the third error on, flat; the position closed with reason RISK
    assert result.trading_state.tolist()[:3] == ["ACTIVE", "ACTIVE", "ACTIVE"]
    assert result.trading_state.tolist()[3:] == ["HALTED", "HALTED", "HALTED"]
    assert result.decision_frame("approved").iloc[3:, 0].tolist() == [0.0, 0.0, 0.0]
    assert result.trades.reason.tolist()[0] == "RISK"


def test_model_error_must_be_a_boolean_matrix_of_the_bars() -> None:
    # Arrange
    inputs = hand_inputs([ENTRY, FILL])
    # Act / Assert
    with pytest.raises(DataValidationError, match="model_error must be a boolean array"):
        dataclasses.replace(inputs, model_error=np.zeros((2, 1)))  # type: ignore[arg-type]  # the bad input
    with pytest.raises(DataValidationError, match="feature_age is negative"):
        dataclasses.replace(inputs, feature_age=np.full((2, 1), -1.0))


def test_a_config_sized_for_another_timeframe_is_refused() -> None:
    # Arrange: 4h sizing (bars per year 2,190) over 1h bars would misstate the vol target
    config = HAND_CONFIG.replace(sizing=HAND_CONFIG.sizing.replace(timeframe="4h"))
    # Act / Assert
    with pytest.raises(ConfigError, match=r"sizes 4h bars .* inputs are 1h bars"):
        run_backtest(hand_inputs([ENTRY, FILL]), config, HAND_BT)
