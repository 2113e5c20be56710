"""The online service decides a past window exactly as the backtest replays it.

For each bar of a window ending at the served home's last bar close, the online store is put in
the state the features flow would have left at that bar (`serving.online_replay`, into a copy
of the online store so the other tests keep the latest vectors), and the service decides every
symbol on a fresh paper account (`DecisionEngine.decide`). The same bars then go through the
backtest with the market store's candles and funding and, per bar and symbol, the inputs the
service recorded. Decisions (action, target, fused score, every risk check) and the book's
equity per bar must agree; the recorded model outputs are checked against the champions run on
the training frame's rows, so the comparison does not rest on the service's own reads alone.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from features.build import choose_candle_source
from features.ingest.store import MarketStore
from models.backtest import _funding as backtest_funding  # the backtest study's funding rule
from serving.decisions_store import decision_id
from serving.engine import DecisionEngine
from serving.online_replay import OnlineReplay
from serving.paper import PaperStep, replay
from sextant.backtest import DECISION_FIELDS, BacktestInputs, BacktestResult, run_backtest
from sextant.contracts import DECISION_SERVICE, FEATURE_SERVICES, ONLINE_SERVICES
from sextant.decision import FEATURES_USED, RiskGate
from sextant.decision._kernels import ACTION_NAMES
from sextant.execution import PaperBroker
from tests.serving.conftest import ServedHome

pytestmark = pytest.mark.slow

ACCOUNT = "parity"
WINDOW_BARS = 36
TOL = 1e-9
BAR = timedelta(hours=1)


@dataclass(frozen=True)
class ServiceRun:
    """What the service recorded over the window, and what it ran with."""

    engine: DecisionEngine
    bars: tuple[datetime, ...]  # bar closes decided, oldest first
    records: dict[tuple[datetime, str], dict[str, Any]]  # (bar close, symbol) -> stored record


def _number(value: float | None) -> float:
    return math.nan if value is None else float(value)


@pytest.fixture(scope="module")
def service(
    served_home: ServedHome, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceRun]:
    """The service over the window, bar by bar, on a copy of the online store."""
    settings = served_home.settings
    online = settings.paths.feast_dir / "online.db"
    copy = tmp_path_factory.mktemp("online-replay") / "online.db"
    shutil.copy(online, copy)
    replayed = settings.model_copy(
        update={"feast_online_store": {"type": "sqlite", "path": str(copy)}}
    )
    engine = DecisionEngine.from_settings(replayed, account=ACCOUNT)
    first = served_home.last_close - (WINDOW_BARS - 1) * BAR
    online_replay = OnlineReplay(engine.feast, settings.symbols, first, served_home.last_close)
    for bar_close in online_replay.bars:
        online_replay.load(bar_close)
        batch = engine.decide(now=bar_close + timedelta(minutes=5))
        assert batch.ts == bar_close and len(batch.made) == len(settings.symbols)
    bars = online_replay.bars
    ids = {(t, s): decision_id(ACCOUNT, s, t) for t in bars for s in settings.symbols}
    stored = engine.store.records(list(ids.values()))
    yield ServiceRun(engine, bars, {key: stored[ident] for key, ident in ids.items()})
    engine.close()


def _market_frames(served_home: ServedHome, opens: pd.DatetimeIndex) -> dict[str, pd.DataFrame]:
    """Candles and funding per symbol at the window's bar opens, as the backtest study reads them."""
    settings = served_home.settings
    frames = {}
    with MarketStore(settings.paths.market_db, read_only=True) as store:
        for symbol in settings.symbols:
            source = choose_candle_source(store, symbol, settings.timeframe, settings.candle_source)
            candles = store.candles(symbol, settings.timeframe, source=source)
            frame = candles[["open", "high", "low", "close", "volume"]].astype(np.float64)
            frame.index = pd.DatetimeIndex(candles["event_ts"]).tz_convert("UTC").as_unit("ns")
            frame = frame.reindex(opens)
            frame["funding_rate"] = backtest_funding(store, symbol, settings.timeframe, opens)
            frames[symbol] = frame
    return frames


@pytest.fixture(scope="module")
def backtest_inputs(served_home: ServedHome, service: ServiceRun) -> BacktestInputs:
    """The window for the backtest: market data from the market store, and per bar and symbol
    the features, model outputs and feature age the service recorded. The first bar opens one
    bar before the first decision (the service opens a fresh book on that bar)."""
    opens = pd.DatetimeIndex([t - BAR for t in service.bars], tz="UTC").as_unit("ns")
    frames = _market_frames(served_home, opens)
    for symbol, frame in frames.items():
        rows = [service.records[(t, symbol)] for t in service.bars]
        for name in FEATURES_USED:
            frame[name] = [_number(r["features"][name]) for r in rows]
        for name in ("p_xgb", "p_lstm", "garch_variance", "var_quantile"):
            frame[name] = [_number(r["models"][name]) for r in rows]
        frame["feature_age"] = [float(r["feature_age_bars"]) for r in rows]
        # a champion that failed leaves NaN: every output is finite, so no bar had a model error
        assert np.isfinite(frame[["p_xgb", "p_lstm", "garch_variance"]].to_numpy()).all()
    return BacktestInputs.from_frames(frames, served_home.settings.timeframe)


@pytest.fixture(scope="module")
def backtest(service: ServiceRun, backtest_inputs: BacktestInputs) -> BacktestResult:
    return run_backtest(backtest_inputs, service.engine.config, service.engine.execution)


@pytest.fixture(scope="module")
def paper_steps(service: ServiceRun, backtest_inputs: BacktestInputs) -> list[PaperStep]:
    """The same window through `serving.paper.replay` (equal to the backtest, test_paper.py),
    which keeps each decision's risk checks."""
    engine = service.engine
    broker = PaperBroker(backtest_inputs.symbols, backtest_inputs.timeframe, engine.execution)
    steps: list[PaperStep] = []
    replay(
        backtest_inputs,
        engine.config,
        broker,
        RiskGate(engine.config.risk),
        on_bar=steps.append,
        close_at_end=False,
    )
    return steps


def test_the_replay_leaves_the_online_store_as_materialized(
    served_home: ServedHome, service: ServiceRun
) -> None:
    # the window's bars, each decided for every symbol, fresh (no stale features)
    assert len(service.bars) == WINDOW_BARS and service.bars[-1] == served_home.last_close
    assert all(r["feature_age_bars"] == 0.0 for r in service.records.values())
    # after the last bar the copy holds exactly what `materialize` wrote into the served home
    from features.feast_store import FeastStore

    materialized = FeastStore(served_home.settings).online_read(served_home.settings.symbols)
    replayed = service.engine.feast.online_read(served_home.settings.symbols)
    for name in ONLINE_SERVICES:
        assert replayed[name].as_of == materialized[name].as_of
        assert np.array_equal(replayed[name].window, materialized[name].window, equal_nan=True)


def test_the_service_decides_every_bar_as_the_backtest(
    service: ServiceRun, backtest: BacktestResult, paper_steps: list[PaperStep]
) -> None:
    symbols = backtest.symbols
    fields = {name: backtest.decision_frame(name).to_numpy() for name in DECISION_FIELDS}
    actions = set()
    for t, bar_close in enumerate(service.bars):
        step = paper_steps[t]
        replayed = {d.symbol: d for d in step.decisions}
        for s, symbol in enumerate(symbols):
            served = service.records[(bar_close, symbol)]
            expected = replayed[symbol]
            where = f"{symbol} at {bar_close.isoformat()}"
            # Assert: the backtest's own loop (action, approved target, fused score) ...
            assert served["action"] == ACTION_NAMES[int(fields["action"][t, s])], where
            assert served["target_fraction"] == pytest.approx(
                fields["approved"][t, s], rel=TOL, abs=TOL
            ), where
            assert _number(served["fused_score"]) == pytest.approx(
                fields["fused_score"][t, s], rel=TOL, abs=TOL, nan_ok=True
            ), where
            # ... and the replayed decision, check by check
            assert served["action"] == str(expected.action), where
            assert served["ts"] == expected.ts.isoformat(), where
            assert served["target_fraction"] == pytest.approx(
                expected.target_fraction, rel=TOL, abs=TOL
            ), where
            assert _number(served["confidence"]) == pytest.approx(
                expected.fused.confidence, rel=TOL, abs=TOL, nan_ok=True
            ), where
            assert served["trading_state"] == str(expected.risk.state), where
            assert len(served["risk_checks"]) == len(expected.risk.checks), where
            for check, want in zip(served["risk_checks"], expected.risk.checks, strict=True):
                label = f"{where}: {want.name}"
                assert check["name"] == want.name, label
                assert check["passed"] == want.passed, label
                assert check["reason_code"] == want.reason_code, label
                for figure in ("observed", "limit"):
                    assert _number(check[figure]) == pytest.approx(
                        getattr(want, figure), rel=TOL, abs=TOL, nan_ok=True
                    ), label
            actions.add(served["action"])
    # a window where the book trades, not only holds
    assert actions - {"HOLD"}, actions


def test_the_books_equity_per_bar_is_the_backtests(
    service: ServiceRun, backtest: BacktestResult, paper_steps: list[PaperStep]
) -> None:
    marks = service.engine.store.marks(ACCOUNT)
    assert [m.bar_open for m in marks] == [t - BAR for t in service.bars]
    equity = np.array([m.equity for m in marks])
    # every bar but the last (the backtest's last bar is after its final liquidation) ...
    assert np.allclose(equity[:-1], backtest.equity.to_numpy()[:-1], rtol=TOL, atol=0)
    assert np.allclose(
        [m.cash for m in marks][:-1], backtest.cash.to_numpy()[:-1], rtol=TOL, atol=0
    )
    fees = np.array([m.fees for m in marks])
    assert np.allclose(fees[:-1], backtest.fees.to_numpy().sum(axis=1)[:-1], rtol=TOL, atol=TOL)
    # ... and the last one against the same replay before it sells out
    assert equity[-1] == pytest.approx(paper_steps[-1].report.equity, rel=TOL)
    assert not np.allclose(equity, equity[0])  # positions were held and marked


def test_recorded_outputs_are_the_champions_on_the_training_frame(
    served_home: ServedHome, service: ServiceRun
) -> None:
    """Not circular: the training frame's rows (Feast's offline point-in-time join) give the
    decision features and, through the XGBoost champion's ONNX graph, p_xgb as recorded."""
    engine = service.engine
    symbols = served_home.settings.symbols
    start, end = service.bars[0], service.bars[-1]
    champion = engine.champions["xgb"]
    frames: Mapping[str, pd.DataFrame] = {
        name: engine.feast.training_frame(name, symbols, start, end)
        for name in (FEATURE_SERVICES["xgb"], DECISION_SERVICE)
    }
    xgb = frames[FEATURE_SERVICES["xgb"]]
    session = champion.session
    rows = xgb[list(champion.features)].to_numpy(dtype=np.float32)
    output = session.get_outputs()[0].name
    p_up = np.asarray(session.run([output], {session.get_inputs()[0].name: rows})[0]).reshape(-1)
    decision = frames[DECISION_SERVICE]
    checked = 0
    for i, row in xgb.iterrows():
        key = (row["event_timestamp"].to_pydatetime(), row["symbol"])
        if key not in service.records:
            continue
        record = service.records[key]
        assert record["models"]["p_xgb"] == pytest.approx(float(p_up[i]), rel=TOL, abs=TOL), key
        features = decision.iloc[i]
        assert features["symbol"] == row["symbol"]
        for name in FEATURES_USED:
            assert _number(record["features"][name]) == pytest.approx(
                float(features[name]), rel=TOL, abs=TOL, nan_ok=True
            ), (key, name)
        checked += 1
    assert checked == len(service.records)
