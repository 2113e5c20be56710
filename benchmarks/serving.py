"""The online decision service's latency: in process (one symbol, a batch of 50) and over HTTP.

All figures run on the bench home (`benchmarks.bench_home`: 50 copies of the sample's symbols,
features materialized, quick champions of the three families covering all 50), with the clock
pinned five minutes after the bar close of the online vectors, so every decision is fresh and
computes everything (by the wall clock the historical data would be stale, and the gate would flat
every decision before sizing).

**A timed decision is a new decision.** The engine makes one decision per (account, symbol, bar)
and answers a repeated request from the store, so the timed calls spread over accounts opened
beforehand, untimed (`open_accounts`): a paper book of the home's 50 symbols that has already
processed the bar closing at the decision bar, and a fresh risk gate, recorded as of that bar
close. The headline one-symbol figure is the service's steady state: each account's first
decision of the bar (S00, untimed) reads its book from the store, and the timed calls decide
S01 .. S49 of 40 such accounts in turn (1,960 calls, symbols round-robin over the accounts), so
each reads the online store's change token (and the online vectors when the store changed),
runs the three ONNX champions, decides, submits to the held book and writes the record with the
book's snapshot and the gate. ``..._online_read_again`` is the same with the engine's kept
online reads dropped before each call, as a commit to the online store (a materialization) does:
the first request for a symbol after the store changed reads Feast and builds the sessions'
inputs again. ``..._first_of_account`` times an account's first decision of a
bar (its book parsed from the store); catching the book up one bar (the engine reads that bar's
candles and funding from the market store, once per account and bar) is timed separately
(``..._book_one_bar_behind``), as is the already-decided answer (the same request again: the
stored record, no models). A 50-symbol batch decides for an account's first request of the bar.
As the service does, the process freezes its start-up heap out of the garbage collector first
and checkpoints the decisions store's WAL every second from a thread (`serving.checkpointer`).

HTTP: a real ``uvicorn`` process (one worker, uvloop and httptools named explicitly, as uvicorn's
"auto" picks them; uvicorn's access log off, the app's defaults otherwise) serves ``serving.app``
built with the pinned clock (`pinned_app`), whose decision endpoints answer a well-formed JSON
request on their lean path (docs/serving.md, "HTTP API"), as in service; the load generator
(`benchmarks.loadgen`) runs in another process, open-loop at fixed rates for 5 s a stage, latency
from each request's due time, 2 s timeout. A warm-up stage (100/s for 2 s, not reported) comes
first: the engine reads the bar's closes from the market store on the first request of a bar
(one DuckDB connection, tens of ms). Between stages the server is given time to drain what the
previous stage left queued. A decisions stage asks each of its accounts for S01 .. S49 in turn
(``{round}`` in the loadgen's body), after each account's first decision of the bar (S00) was
made by an untimed stage at 50/s (`_first_decisions`), as in process; GET /v1/signals/{symbol}
decides without recording (the default account's book); the batch endpoint decides all 50
symbols for a new account. The ladder climbs 50, 100, 150, 200, 300, ... 1000 requests/s of new
one-symbol decisions and reports the highest rate held with p99 < 50 ms and no error. Each
stage's full result (errors by kind, achieved rate, the client's own send lag) is printed on
stderr as a ``#`` line, for the decision stages with the server process's CPU time per request
(all its threads, from ``/proc``): unlike the latencies, it hardly depends on what else the
two cores run at the time, though it grows too when they are busy (caches, frequency)
(``http_decision_new_200rps_server_cpu_per_request``).
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from benchmarks.bench_home import SYMBOLS, BenchHome, bench_home, fresh_decisions
from benchmarks.common import Figure
from benchmarks.loadgen import percentile
from sextant.settings import Settings

__all__ = ["pinned_app", "run"]

REPO = Path(__file__).resolve().parents[1]
NOW_ENV = "BENCH_SERVING_NOW"  # the pinned clock of `pinned_app` (not a SEXTANT_* setting)
CLOCK_OFFSET = timedelta(minutes=5)  # after the data's last bar close
SYMBOL = SYMBOLS[0]

SINGLE_ACCOUNTS, SINGLE_WARMUP_ACCOUNTS = 40, 2  # x 49 symbols: 1,960 timed calls
FIRST_CALLS = 500  # first decisions of an account (its book read from the store)
REREAD_ACCOUNTS = 5  # x 49 symbols: new decisions whose online read is not kept
BATCH_CALLS, BATCH_WARMUP = 200, 10
CATCH_UP_CALLS = 20  # one-symbol decisions whose book is one bar behind (each reads 50 symbols)
PART_CALLS = 500  # per part of a one-symbol decision
BATCH_PART_CALLS = 100  # per part of a 50-symbol decision

HTTP_DURATION_S = 5.0
HTTP_BASE_RATE = 200
LADDER = (50, 100, 150, 200, 300, 400, 500, 600, 800, 1000)  # requests/s, climbed until one fails
LADDER_P99_MS = 50.0
BATCH_HTTP_RATE = 10  # a 50-symbol decision takes tens of ms in process
FIRST_RATE = 50  # requests/s of the untimed first decisions of a stage's accounts
SETTLE_S = 30.0  # the longest wait for the server to drain a stage's backlog
SERVER_START_S = 90.0


# --- accounts ------------------------------------------------------------------------------------


def open_accounts(
    settings: Settings, bar_close: datetime, accounts: Sequence[str], *, behind: int = 0
) -> None:
    """Record each account with a paper book (no position) that has processed the bars up to the
    one closing at ``bar_close`` less ``behind`` bars, a fresh gate, as of that bar close: what
    the engine leaves after deciding at that bar. With ``behind=0`` a decision at ``bar_close``
    has nothing to catch up; with ``behind=1`` it first reads one bar from the market store."""
    from serving.decisions_store import DecisionsStore
    from serving.market import closed_bars
    from sextant.decision import DecisionConfig, RiskGate, SizingConfig
    from sextant.execution import ExecutionConfig, PaperBroker
    from sextant.timeframes import timeframe_to_timedelta

    bar = timeframe_to_timedelta(settings.timeframe)
    as_of = bar_close - behind * bar
    (closed,) = closed_bars(settings, settings.symbols, as_of - bar, as_of - bar)
    broker = PaperBroker(settings.symbols, settings.timeframe, ExecutionConfig())
    broker.on_bar(closed.bar_open, closed.candles, closed.funding)
    snapshot = broker.to_snapshot()
    risk = DecisionConfig(sizing=SizingConfig(timeframe=settings.timeframe)).risk
    with DecisionsStore.open(settings.paths.decisions_db) as store:
        for account in accounts:
            store.record([], account=account, portfolio=snapshot, gate=RiskGate(risk), as_of=as_of)
        store.checkpoint()


# --- in process ----------------------------------------------------------------------------------


def _quantiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    return percentile(seconds, 50) * 1e3, percentile(seconds, 99) * 1e3


def _timed(calls: Sequence[Callable[[], object]]) -> list[float]:
    """Each call's wall time in seconds."""
    times = []
    for call in calls:
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return times


def _repeat(fn: Callable[[], object], n: int) -> list[float]:
    """``fn``'s wall time over ``n`` calls (after one untimed call)."""
    fn()
    return _timed([fn] * n)


def in_process_figures(home: BenchHome) -> list[Figure]:
    """One symbol per call, then 50, each call a new decision."""
    import gc

    from serving.app import CHECKPOINT_INTERVAL_S
    from serving.checkpointer import Checkpointer
    from serving.engine import DecisionEngine

    settings = home.settings
    now = home.last_close + CLOCK_OFFSET
    held = [f"one-{i}" for i in range(SINGLE_WARMUP_ACCOUNTS + SINGLE_ACCOUNTS)]
    rereads = [f"reread-{i}" for i in range(REREAD_ACCOUNTS)]
    first = [f"first-{i}" for i in range(FIRST_CALLS)]
    batch = [f"fifty-{i}" for i in range(BATCH_WARMUP + BATCH_CALLS)]
    behind = [f"behind-{i}" for i in range(CATCH_UP_CALLS)]
    open_accounts(settings, home.last_close, held + rereads + first + batch)
    open_accounts(settings, home.last_close, behind, behind=1)
    engine = DecisionEngine.from_settings(settings)
    gc.collect()
    gc.freeze()  # as the service does once its engine is loaded (`serving.app`)
    # and, as the service, the WAL folded in the background (`serving.checkpointer`)
    checkpointer = Checkpointer(settings.paths.decisions_db, CHECKPOINT_INTERVAL_S).start()
    try:
        # every decision of the bench computes all three families on fresh features
        made = engine.decide(SYMBOLS, now=now, account=batch[0])
        missing = [
            d.symbol
            for d in made.made
            if not all(
                math.isfinite(v) for v in (d.models.p_xgb, d.models.p_lstm, d.models.garch_variance)
            )
        ]
        stale = [s for s, age in made.feature_age_bars.items() if age > 1]
        if len(made.made) != len(SYMBOLS) or missing or stale:
            raise RuntimeError(
                f"the bench home does not compute every family on fresh features: made "
                f"{len(made.made)} of {len(SYMBOLS)}, a family missing for {missing}, stale "
                f"features for {stale}"
            )

        def decide(symbols: Sequence[str], account: str, *, new: bool = True) -> None:
            made = engine.decide(symbols, now=now, account=account).made
            if len(made) != (len(symbols) if new else 0):
                raise RuntimeError(f"{account} made {len(made)} decisions of {len(symbols)}")

        # the accounts the service serves: each account's first decision of the bar reads its
        # book from the store (untimed), the next ones find it held; symbols round-robin over
        # the accounts, the first accounts a warm-up
        for account in held + rereads:
            decide([SYMBOLS[0]], account)
        for account in held[:SINGLE_WARMUP_ACCOUNTS]:
            _timed([partial(decide, [s], account) for s in SYMBOLS[1:]])
        timed = held[SINGLE_WARMUP_ACCOUNTS:]
        one = _timed([partial(decide, [s], a) for s in SYMBOLS[1:] for a in timed])
        again = _timed([partial(decide, [s], a, new=False) for s in SYMBOLS[1:] for a in timed])
        firsts = _timed([partial(decide, [SYMBOL], a) for a in first])

        def reread(symbol: str, account: str) -> None:
            engine._prepared.clear()  # what a commit to the online store leads to
            decide([symbol], account)

        rereading = _timed([partial(reread, s, a) for s in SYMBOLS[1:] for a in rereads])
        catching_up = _timed([partial(decide, [SYMBOL], a) for a in behind])
        _timed([partial(decide, SYMBOLS, a) for a in batch[1:BATCH_WARMUP]])
        fifty = _timed([partial(decide, SYMBOLS, a) for a in batch[BATCH_WARMUP:]])
        figures = [
            *_pair("decision_one_symbol_new", one, "< 1 ms"),
            *_pair("decision_one_symbol_new_online_read_again", rereading, "reference"),
            *_pair("decision_one_symbol_new_first_of_account", firsts, "reference"),
            *_pair("decision_one_symbol_already_decided", again, "reference"),
            *_pair("decision_one_symbol_new_book_one_bar_behind", catching_up, "reference"),
            *_pair("decision_batch_50_symbols_new", fifty, "< 10 ms"),
            *_parts(engine, now),
        ]
    finally:
        checkpointer.stop()
        engine.close()
    return figures


def _pair(name: str, seconds: Sequence[float], target: str) -> list[Figure]:
    p50, p99 = _quantiles_ms(seconds)
    return [
        Figure(f"{name}_p50", p50, "ms", "reference"),
        Figure(f"{name}_p99", p99, "ms", target),
    ]


def _parts(engine: Any, now: datetime) -> list[Figure]:
    """Where a decision's time goes: the online store's read (Feast, what a decision does when
    the store changed), the check that it did not (its change token), the three ONNX champions
    on prepared inputs, the whole path without the book and the record (``evaluate``), and the
    writes: a decision record with the one book it changed (over the version the store last
    wrote), and an account's state with every book (a new account, a catch-up)."""
    from serving.decisions_store import decision_id

    figures = []
    for symbols, label, calls in (
        ((SYMBOL,), "one_symbol", PART_CALLS),
        (SYMBOLS, "batch_50", BATCH_PART_CALLS),
    ):
        read = _repeat(partial(engine.feast.online_read, symbols), calls)
        prepared = engine._prepare(symbols, engine.champions)
        onnx = _repeat(partial(engine._model_outputs, prepared, len(symbols)), calls)
        evaluate = _repeat(partial(engine.evaluate, symbols, now=now), calls)
        figures += [
            Figure(f"decision_{label}_part_online_read_p50", _quantiles_ms(read)[0], "ms",
                   "reference"),
            Figure(f"decision_{label}_part_onnx_three_families_p50", _quantiles_ms(onnx)[0],
                   "ms", "reference"),
            Figure(f"decision_{label}_part_evaluate_no_book_no_record_p50",
                   _quantiles_ms(evaluate)[0], "ms", "reference"),
        ]  # fmt: skip
    token = _repeat(engine.feast.online_version, PART_CALLS)
    figures.append(
        Figure("decision_part_online_change_token_p50", _quantiles_ms(token)[0], "ms", "reference")
    )
    # the write: a decision made for the one-symbol accounts, stored for fresh accounts. A
    # store writes each symbol's book as a row: over the version it last wrote for the account
    # only the books that changed (one here: the decision's order), else every book
    broker, gate = engine.account_state("one-0")
    (decision,) = engine.evaluate([SYMBOL], now=now, account="one-0")
    before = broker.to_snapshot(shared=True)
    broker.submit(decision)
    after = broker.to_snapshot(shared=True)  # the decided symbol's book is a new object
    one_book, every_book = [], []
    for i in range(PART_CALLS):
        account = f"write-{i}"
        began = time.perf_counter()
        first = engine.store.record([], account=account, portfolio=before, gate=gate,
                                    as_of=decision.ts, expect_version=None)  # fmt: skip
        every_book.append(time.perf_counter() - began)
        began = time.perf_counter()
        engine.store.record([decision], account=account, portfolio=after, gate=gate,
                            expect_version=first.version)  # fmt: skip
        one_book.append(time.perf_counter() - began)
        if engine.store.get(decision_id(account, SYMBOL, decision.ts)) is None:
            raise RuntimeError(f"the decision written for {account} is not in the store")
    figures += [
        Figure("decision_one_symbol_part_record_write_p50", _quantiles_ms(one_book)[0], "ms",
               "reference"),
        Figure("decision_part_state_write_every_book_p50", _quantiles_ms(every_book)[0], "ms",
               "reference"),
    ]  # fmt: skip
    return figures


# --- HTTP ----------------------------------------------------------------------------------------


def pinned_app() -> Any:
    """The uvicorn factory of the HTTP figures: ``serving.app`` from the environment's settings,
    with the clock pinned at ``$BENCH_SERVING_NOW`` (ISO 8601, UTC)."""
    from serving.app import create_app
    from sextant.runtime import init_runtime
    from sextant.settings import load_settings

    pinned = datetime.fromisoformat(os.environ[NOW_ENV]).astimezone(UTC)
    settings = load_settings()
    init_runtime(settings)
    return create_app(settings, clock=lambda: pinned)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    """A running uvicorn process: its URL and process id."""

    url: str
    pid: int

    def cpu_seconds(self) -> float:
        """The process's CPU time so far (user + system, all its threads; NaN where the
        platform has no ``/proc``): over a stage, what the service spent, however busy the
        machine was with other work."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return math.nan
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def uvicorn_server(home: BenchHome) -> Iterator[Server]:
    """A real uvicorn process serving the bench home on 127.0.0.1, once it answers."""
    import httpx

    port = _free_port()
    env = {
        **os.environ,
        "SEXTANT_HOME": str(home.settings.home),
        "SEXTANT_SYMBOLS": json.dumps(list(home.settings.symbols)),
        "SEXTANT_CANDLE_SOURCE": home.settings.candle_source,
        NOW_ENV: (home.last_close + CLOCK_OFFSET).isoformat(),
    }
    command = [
        sys.executable, "-m", "uvicorn", "benchmarks.serving:pinned_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--loop", "uvloop", "--http", "httptools",  # what uvicorn's "auto" picks (both locked)
        "--log-level", "warning", "--no-access-log",
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        server = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + SERVER_START_S
            while True:
                if server.poll() is not None:
                    log.seek(0)
                    raise RuntimeError(f"uvicorn exited: {log.read().decode()[-2000:]}")
                try:
                    answer = httpx.get(f"{url}/v1/signals/{SYMBOL}", timeout=5.0)
                    if answer.status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"uvicorn did not answer within {SERVER_START_S:.0f} s")
                time.sleep(0.5)
            yield Server(url, server.pid)
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _settle(url: str) -> None:
    """Wait until the server answers /healthz promptly twice in a row (at most ``SETTLE_S``),
    so that a stage's backlog (requests the client gave up on) never delays the next stage."""
    import httpx

    deadline = time.monotonic() + SETTLE_S
    prompt = 0
    with httpx.Client(base_url=url, trust_env=False, timeout=SETTLE_S) as client:
        while prompt < 2 and time.monotonic() < deadline:
            began = time.perf_counter()
            try:
                client.get("/healthz")
                prompt = prompt + 1 if time.perf_counter() - began < 0.02 else 0
            except httpx.HTTPError:
                prompt = 0
            time.sleep(0.1)


def loadgen(url: str, stages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Run ``stages`` in a load generator process; its results, one per stage."""
    budget = sum(s["duration_s"] + 10 for s in stages) + 30
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.loadgen", url, json.dumps(stages)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=budget,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def _timed_stage(server: Server, stage: dict[str, Any]) -> dict[str, Any]:
    """Run one stage; its result with the server's CPU time per request sent
    (``server_cpu_ms_per_request``)."""
    before = server.cpu_seconds()
    (result,) = loadgen(server.url, [stage])
    spent = server.cpu_seconds() - before
    return {**result, "server_cpu_ms_per_request": spent / max(1, result["sent"]) * 1e3}


def _decisions_stage(name: str, rate: int, duration_s: float = HTTP_DURATION_S) -> dict[str, Any]:
    """POST /v1/decisions, one symbol: each account is asked for S01 .. S49 in turn (its S00
    was decided beforehand by `_first_decisions`, so the service holds its book)."""
    return {
        "name": name,
        "rate": rate,
        "duration_s": duration_s,
        "method": "POST",
        "path": "/v1/decisions",
        "body": json.dumps({"symbol": "{symbol}", "account": f"{name}-{{round}}"}),
        "symbols": list(SYMBOLS[1:]),
    }


def _stage_accounts(stage: dict[str, Any]) -> list[str]:
    count = round(stage["rate"] * stage["duration_s"])
    if "{round}" in stage["body"]:
        count = math.ceil(count / len(stage["symbols"]))
    return [f"{stage['name']}-{i}" for i in range(count)]


def _first_decisions(url: str, stage: dict[str, Any]) -> None:
    """Each of a decisions stage's accounts decides S00 (untimed): the account's first
    request of the bar, which reads its book from the store."""
    accounts = _stage_accounts(stage)
    (result,) = loadgen(
        url,
        [
            {
                "name": f"{stage['name']}-first",
                "rate": FIRST_RATE,
                "duration_s": len(accounts) / FIRST_RATE,
                "method": "POST",
                "path": "/v1/decisions",
                "body": json.dumps({"symbol": SYMBOLS[0], "account": f"{stage['name']}-{{i}}"}),
            }
        ],
    )
    if result["errors"]:
        raise RuntimeError(f"{stage['name']}: first decisions failed: {result['error_kinds']}")
    _settle(url)


def http_figures(home: BenchHome) -> list[Figure]:
    """200/s of new one-symbol decisions, the ladder, /v1/signals at 200/s, the 50-symbol batch."""
    warmup = _decisions_stage("http-warmup", 100, 2.0)
    base = _decisions_stage("http-200", HTTP_BASE_RATE)
    ladder = [_decisions_stage(f"http-ladder-{rate}", rate) for rate in LADDER]
    batch = {
        "name": "http-batch",
        "rate": BATCH_HTTP_RATE,
        "duration_s": HTTP_DURATION_S,
        "method": "POST",
        "path": "/v1/decisions/batch",
        "body": json.dumps({"symbols": list(SYMBOLS), "account": "http-batch-{i}"}),
    }
    signals = {
        "name": "http-signals",
        "rate": HTTP_BASE_RATE,
        "duration_s": HTTP_DURATION_S,
        "method": "GET",
        "path": "/v1/signals/{symbol}",
        "symbols": list(SYMBOLS),
    }
    began = time.perf_counter()
    accounts = [a for s in (warmup, base, batch) for a in _stage_accounts(s)]
    open_accounts(home.settings, home.last_close, accounts)
    _phase(f"{len(accounts)} accounts opened", began)
    figures: list[Figure] = []
    began = time.perf_counter()
    with uvicorn_server(home) as server:
        url = server.url
        _phase("uvicorn started", began)
        _first_decisions(url, warmup)
        _note(*loadgen(url, [warmup]))
        _settle(url)
        _first_decisions(url, base)
        decisions = _timed_stage(server, base)
        _note(decisions)
        _settle(url)
        figures += _http_pair("http_decision_new_200rps", decisions, "< 5 ms, 0 errors")
        figures.append(
            Figure("http_decision_new_200rps_server_cpu_per_request",
                   decisions["server_cpu_ms_per_request"], "ms", "reference")
        )  # fmt: skip
        held = 0
        for stage in ladder:
            # opened while the server idles (another process writing the store, as in service)
            open_accounts(home.settings, home.last_close, _stage_accounts(stage))
            _settle(url)
            _first_decisions(url, stage)
            result = _timed_stage(server, stage)
            _note(result)
            _settle(url)
            if result["errors"] or not result["p99_ms"] < LADDER_P99_MS:
                break
            held = stage["rate"]
        figures.append(
            Figure("http_decision_new_max_rate_p99_under_50ms", held, "req/s", ">= 500 req/s")
        )
        (signal,) = loadgen(url, [signals])
        _note(signal)
        _settle(url)
        figures += _http_pair("http_signals_200rps", signal, "reference")
        (batched,) = loadgen(url, [batch])
        _note(batched)
        figures += _http_pair(f"http_decision_batch_50_new_{BATCH_HTTP_RATE}rps", batched,
                              "reference")  # fmt: skip
    return figures


def _phase(what: str, began: float) -> None:
    print(f"# {what}: {time.perf_counter() - began:.1f} s", file=sys.stderr, flush=True)


def _note(result: dict[str, Any]) -> None:
    """A stage's whole result on stderr, as a comment beside the figures."""
    print(
        f"# {result['name']} at {result['rate']}/s: {result['ok']} ok, p50 "
        f"{result['p50_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, errors {result['errors']} "
        f"{result['error_kinds']}, achieved {result['achieved_rate']:.0f}/s, client send lag "
        f"p99 {result['send_lag_p99_ms']:.2f} ms"
        + (
            f", server CPU {result['server_cpu_ms_per_request']:.2f} ms per request"
            if "server_cpu_ms_per_request" in result
            else ""
        ),
        file=sys.stderr,
        flush=True,
    )


def _http_pair(name: str, result: dict[str, Any], target: str) -> list[Figure]:
    return [
        Figure(f"{name}_p50", result["p50_ms"], "ms", "reference"),
        Figure(f"{name}_p99", result["p99_ms"], "ms", target),
        Figure(f"{name}_errors", result["errors"], "requests", "0"),
    ]


# --- the suite -----------------------------------------------------------------------------------


def run() -> list[Figure]:
    """Build or reuse the bench home, then the in-process and the HTTP figures."""
    started = time.perf_counter()
    home = bench_home()
    fresh_decisions(home.settings)
    _phase("bench home", started)
    figures = []
    if home.build_seconds is not None:
        figures.append(Figure("serving_bench_home_cold_build", home.build_seconds, "s", "< 240 s"))
    began = time.perf_counter()
    figures += in_process_figures(home)
    _phase("in-process figures", began)
    began = time.perf_counter()
    try:
        figures += http_figures(home)
    except Exception as exc:  # the in-process figures still count; say why HTTP has none
        print(f"serving_http: error {type(exc).__name__}: {exc}", flush=True)
    _phase("HTTP figures", began)
    figures.append(Figure("serving_suite_wall", time.perf_counter() - started, "s", "< 360 s warm"))
    return figures


if __name__ == "__main__":
    for figure in run():
        print(figure.line())
