"""PaperBroker on hand-built bars: fills, the bar clock, refused input that changes nothing."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from sextant.decision import DecisionConfig, ModelOutputs, PortfolioState, RiskGate, decide
from sextant.errors import DataValidationError
from sextant.execution import Candle, ExecutionConfig, PaperBroker
from tests.sextant.decision.conftest import BULLISH as DECISION_BULLISH

T0 = datetime(2024, 1, 1, tzinfo=UTC)
HOUR = timedelta(hours=1)
FLAT = Candle(open=100.0, high=101.0, low=99.0, close=100.0, volume=1_000.0)
BULLISH = {**DECISION_BULLISH, "natr_14": 1.0}  # ATR 1 at a price of 100: stop 2 below
CONFIG = DecisionConfig.from_dict(
    {
        "sizing": {"target_annual_vol": 5.0, "kelly_fraction": 1.0, "max_leverage": 0.5},
        "risk": {"var_limit": 0.5},
    }
)
EXECUTION = ExecutionConfig(
    taker_fee=0.001, maker_fee=0.0005, slippage_base_bps=10.0, slippage_vol_bps=0.0,
    slippage_size_k=0.0,
)  # fmt: skip


def long_entry(broker: PaperBroker, gate: RiskGate) -> None:
    """Bar T0 closes at 100; decide long half the equity there."""
    broker.on_bar(T0, {"BTC/USDT": FLAT})
    decision = decide(
        "BTC/USDT",
        T0 + HOUR,
        BULLISH,
        ModelOutputs(p_xgb=0.9, p_lstm=0.9, garch_variance=1e-4, var_quantile=2.6),
        broker.portfolio(),
        CONFIG,
        gate,
        price=100.0,
    )
    assert broker.submit(decision)


def test_an_order_fills_at_the_next_open_with_fee_and_slippage() -> None:
    # Arrange
    broker = PaperBroker(["BTC/USDT"], "1h", EXECUTION)
    long_entry(broker, RiskGate(CONFIG.risk))
    # Act
    report = broker.on_bar(T0 + HOUR, {"BTC/USDT": Candle(102.0, 103.0, 101.0, 102.0, 1e3)})
    # Assert: 500 units at 102 * 1.001, taker fee 0.1 %
    price = 102.0 * 1.001
    fill = report.fills.iloc[0]
    assert (fill.symbol, fill.kind, fill.units) == ("BTC/USDT", "ORDER", 500.0)
    assert fill.price == pytest.approx(price) and fill.bar_ts == T0 + HOUR
    assert report.fees["BTC/USDT"] == pytest.approx(500.0 * price * 0.001)
    assert report.equity == pytest.approx(100_000.0 - 500.0 * price * 1.001 + 500.0 * 102.0)
    assert broker.units() == {"BTC/USDT": 500.0} and broker.pending_orders() == {}


def test_a_stop_fills_within_the_bar_and_closes_the_trade() -> None:
    # Arrange: entry at 102.102, stop 2 (2 ATR of natr 1 % at 100) below
    broker = PaperBroker(["BTC/USDT"], "1h", EXECUTION)
    long_entry(broker, RiskGate(CONFIG.risk))
    broker.on_bar(T0 + HOUR, {"BTC/USDT": Candle(102.0, 103.0, 101.0, 102.0, 1e3)})
    # Act
    report = broker.on_bar(T0 + 2 * HOUR, {"BTC/USDT": Candle(101.0, 101.5, 95.0, 96.0, 1e3)})
    # Assert
    stop = 102.0 * 1.001 - 2.0
    fill = report.fills.iloc[0]
    assert fill.kind == "STOP" and fill.price == pytest.approx(stop * 0.999)
    trade = report.closed_trades.iloc[0]
    assert (trade.reason, trade.exit_ts) == ("STOP", T0 + 2 * HOUR)
    assert broker.units() == {"BTC/USDT": 0.0}


def test_a_missing_bar_lets_the_pending_order_lapse() -> None:
    # Arrange
    broker = PaperBroker(["BTC/USDT", "ETH/USDT"], "1h", EXECUTION)
    long_entry(broker, RiskGate(CONFIG.risk))
    # Act: BTC has no bar at T0 + 1h
    report = broker.on_bar(T0 + HOUR, {"ETH/USDT": FLAT})
    # Assert
    assert report.fills.empty and broker.pending_orders() == {}
    assert broker.units()["BTC/USDT"] == 0.0


@pytest.mark.parametrize(
    ("bar_open", "candles", "field"),
    [
        (T0 + HOUR / 2, {"BTC/USDT": FLAT}, "not a 1h bar open"),
        (datetime(2024, 1, 1, 1), {"BTC/USDT": FLAT}, "naive"),
        (T0, {"BTC/USDT": FLAT}, "not after the last bar"),
        (T0 + HOUR, {"DOGE/USDT": FLAT}, "DOGE/USDT is not traded"),
        (T0 + HOUR, {"BTC/USDT": Candle(100.0, 99.0, 98.0, 100.0, 1.0)}, "do not bracket"),
        (T0 + HOUR, {"BTC/USDT": Candle(math.nan, 101.0, 99.0, 100.0, 1.0)}, "finite"),
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    bar_open: datetime, candles: dict[str, Candle], field: str
) -> None:
    # Arrange: a long position with a pending order in the books
    broker = PaperBroker(["BTC/USDT"], "1h", EXECUTION)
    long_entry(broker, RiskGate(CONFIG.risk))
    before = broker.to_snapshot()
    # Act / Assert
    with pytest.raises(DataValidationError, match=field):
        broker.on_bar(bar_open, candles)
    assert broker.to_snapshot() == before


def test_a_decision_for_another_bar_is_refused() -> None:
    # Arrange
    broker = PaperBroker(["BTC/USDT"], "1h", EXECUTION)
    gate = RiskGate(CONFIG.risk)
    broker.on_bar(T0, {"BTC/USDT": FLAT})
    stale = decide(
        "BTC/USDT",
        T0,  # the bar's open, not its close
        BULLISH,
        ModelOutputs(p_xgb=0.9, p_lstm=0.9, garch_variance=1e-4, var_quantile=2.6),
        broker.portfolio(),
        CONFIG,
        gate,
        price=100.0,
    )
    # Act / Assert
    with pytest.raises(DataValidationError, match="not at the close of the last bar"):
        broker.submit(stale)
    assert broker.pending_orders() == {}


def test_a_snapshot_under_other_execution_settings_is_refused() -> None:
    # Arrange
    broker = PaperBroker(["BTC/USDT"], "1h", EXECUTION)
    long_entry(broker, RiskGate(CONFIG.risk))
    # Act / Assert
    with pytest.raises(DataValidationError, match="other execution settings"):
        PaperBroker.from_snapshot(broker.to_snapshot(), ExecutionConfig())
    restored = PaperBroker.from_snapshot(broker.to_snapshot(), EXECUTION)
    assert restored.pending_orders() == broker.pending_orders() == {"BTC/USDT": 500.0}


def test_snapshots_and_portfolios_kept_between_calls_equal_ones_built_anew() -> None:
    # Arrange: two symbols; each step changes the book (a bar and an order, a fill, a stop)
    def built_anew(broker: PaperBroker) -> tuple[dict[str, object], object]:
        broker._snapshot_cache = None
        broker._portfolio_cache = None
        return broker.to_snapshot(), broker.portfolio()

    broker = PaperBroker(["BTC/USDT", "ETH/USDT"], "1h", EXECUTION)
    gate = RiskGate(CONFIG.risk)
    steps = [
        lambda: long_entry(broker, gate),  # a bar, then an order
        lambda: broker.on_bar(T0 + HOUR, {"BTC/USDT": Candle(102.0, 103.0, 101.0, 102.0, 1e3)}),
        lambda: broker.on_bar(T0 + 2 * HOUR, {"BTC/USDT": Candle(101.0, 101.5, 90.0, 95.0, 1e3)}),
        lambda: broker.on_bar(T0 + 3 * HOUR, {"ETH/USDT": FLAT}),
    ]
    for step in steps:
        broker.to_snapshot(), broker.portfolio()  # fill the caches before the change
        step()
        # Act
        after_step = (broker.to_snapshot(), broker.portfolio())
        shared = broker.to_snapshot(shared=True)
        # Assert
        assert after_step == built_anew(broker) == (shared, broker.portfolio())
    assert broker.units()["BTC/USDT"] == 0.0  # the stop closed the trade on the way


def test_a_broker_s_portfolio_gives_the_fractions_of_its_mapping_bit_for_bit() -> None:
    # Arrange: three symbols, a long in the middle one (its fraction times equity, divided back)
    symbols = ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    broker = PaperBroker(symbols, "1h", EXECUTION)
    broker.on_bar(T0, dict.fromkeys(symbols, FLAT))
    broker._positions[1] = 0.3
    broker._positions[2] = -0.1
    held = broker.portfolio()
    # Act: the same mapping without the broker's array and index
    plain = PortfolioState(held.equity, dict(held.positions))
    # Assert: every symbol first in turn, and one the book does not hold, the same bits
    for symbol in [*symbols, "XRP/USDT"]:
        assert held.fractions(symbol).tobytes() == plain.fractions(symbol).tobytes()
    assert held == plain  # the array and index are how it is held, not what it is


def test_a_portfolio_s_array_must_match_its_positions() -> None:
    with pytest.raises(DataValidationError, match="one per position"):
        PortfolioState(1e5, {"BTC/USDT": 1.0}, _notional=np.zeros(2), _index={"BTC/USDT": 0})
    with pytest.raises(DataValidationError, match="ETH/USDT"):
        PortfolioState(
            1e5,
            {"BTC/USDT": 1.0, "ETH/USDT": math.inf},
            _notional=np.array([1.0, math.inf]),
            _index={"BTC/USDT": 0, "ETH/USDT": 1},
        )
