"""The serving benchmarks' load generator: open-loop timing, bounds, errors, loopback only.

Each test starts a tiny asyncio HTTP/1.1 server on 127.0.0.1 that answers after a fixed service
time, one request at a time (a server with one worker), so what the client measures is known.
"""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from benchmarks.loadgen import Stage, check_loopback, percentile, run_stages

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """What the test server saw; ``service_s`` per request, serialized by a lock."""

    service_s: float
    fail_paths: frozenset[str] = frozenset()
    bodies: list[bytes] = field(default_factory=list)
    url: str = ""


async def _handle(server: Server, lock: asyncio.Lock, reader: asyncio.StreamReader,
                  writer: asyncio.StreamWriter) -> None:  # fmt: skip
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode().split("\r\n")
            path = lines[0].split(" ")[1]
            length = 0
            for line in lines[1:]:
                if line.lower().startswith("content-length:"):
                    length = int(line.split(":", 1)[1])
            body = await reader.readexactly(length) if length else b""
            async with lock:
                await asyncio.sleep(server.service_s)
            server.bodies.append(body)
            status = "500 Internal Server Error" if path in server.fail_paths else "200 OK"
            if path == "/chunked":  # a streamed answer: two chunks and the last
                writer.write(
                    f"HTTP/1.1 {status}\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "1\r\n{\r\n1\r\n}\r\n0\r\n\r\n".encode()
                )
            else:
                writer.write(f"HTTP/1.1 {status}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def serving(server: Server) -> AsyncIterator[Server]:
    lock = asyncio.Lock()
    listener = await asyncio.start_server(lambda r, w: _handle(server, lock, r, w), "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"http://127.0.0.1:{port}"
    async with listener:
        yield server


def run(server: Server, *stages: Stage) -> list:  # type: ignore[type-arg]
    async def go() -> list:  # type: ignore[type-arg]
        async with serving(server):
            return await run_stages(server.url, stages)

    return asyncio.run(go())


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="percentile"):
        percentile(values, 0)


def test_a_fast_server_is_measured_at_its_service_time() -> None:
    (result,) = run(Server(service_s=0.002), Stage("fast", 100, 0.3, "GET", "/ok"))
    assert result.sent == result.ok == 30
    assert result.errors == 0
    assert 2.0 <= result.p50_ms < 20.0, result


def test_chunked_answers_keep_the_connection() -> None:
    server = Server(service_s=0.001)
    chunked, plain = run(
        server,
        Stage("chunked", 100, 0.1, "GET", "/chunked"),
        Stage("plain", 100, 0.1, "GET", "/ok"),
    )
    assert chunked.ok == plain.ok == 10
    assert chunked.errors == plain.errors == 0


def test_queueing_behind_a_slow_server_counts_from_the_due_time() -> None:
    """30 requests due over 0.3 s, each served in 40 ms one at a time: the last is answered
    about 1.2 s after the first was due, so it waited about 0.9 s. A closed-loop client (or one
    timing from the actual send) would see about 40 ms for every request."""
    server = Server(service_s=0.04)
    (result,) = run(server, Stage("slow", 100, 0.3, "GET", "/ok", timeout_s=5.0))
    assert result.ok == 30
    assert result.p50_ms > 300.0, result
    assert result.max_ms > 700.0, result
    # the client itself sent on time: the delay is the server's queue
    assert result.send_lag_p99_ms < 50.0, result


def test_errors_and_the_in_flight_bound_are_counted() -> None:
    server = Server(service_s=0.05, fail_paths=frozenset({"/fail"}))
    failing, bounded = run(
        server,
        Stage("failing", 50, 0.2, "GET", "/fail"),
        Stage("bounded", 200, 0.1, "GET", "/ok", max_in_flight=2, timeout_s=5.0),
    )
    assert failing.ok == 0
    assert failing.errors == failing.sent == 10
    assert failing.error_kinds == {"http_500": 10}
    # 20 due within 0.1 s while each takes 50 ms: only 2 are ever outstanding
    assert bounded.sent + bounded.dropped == 20
    assert bounded.dropped >= 15
    assert bounded.errors == bounded.dropped
    assert bounded.error_kinds == {"dropped": bounded.dropped}


def test_timeouts_are_errors() -> None:
    (result,) = run(Server(service_s=0.3), Stage("late", 10, 0.2, "GET", "/ok", timeout_s=0.1))
    assert result.ok == 0
    assert result.error_kinds == {"timeout": 2}


def test_each_request_fills_its_number_and_symbol() -> None:
    server = Server(service_s=0.0)
    stage = Stage(
        "templated",
        100,
        0.05,
        "POST",
        "/v1/decisions",
        body='{"symbol": "{symbol}", "account": "acct-{i}"}',
        symbols=("A/USDT", "B/USDT"),
    )
    run(server, stage)
    sent = sorted((json.loads(b) for b in server.bodies), key=lambda b: b["account"])
    assert sent == [
        {"symbol": "A/USDT", "account": "acct-0"},
        {"symbol": "B/USDT", "account": "acct-1"},
        {"symbol": "A/USDT", "account": "acct-2"},
        {"symbol": "B/USDT", "account": "acct-3"},
        {"symbol": "A/USDT", "account": "acct-4"},
    ]


def test_round_names_an_account_asked_for_each_symbol_in_turn() -> None:
    server = Server(service_s=0.0)
    stage = Stage(
        "rounds",
        100,
        0.05,
        "POST",
        "/v1/decisions",
        body='{"symbol": "{symbol}", "account": "acct-{round}"}',
        symbols=("A/USDT", "B/USDT"),
    )
    run(server, stage)
    sent = sorted((b["account"], b["symbol"]) for b in map(json.loads, server.bodies))
    assert sent == [
        ("acct-0", "A/USDT"),
        ("acct-0", "B/USDT"),
        ("acct-1", "A/USDT"),
        ("acct-1", "B/USDT"),
        ("acct-2", "A/USDT"),
    ]


@pytest.mark.parametrize(
    "url", ["http://10.0.0.1:8000", "http://example.com", "http://192.168.1.2", "file:///x"]
)
def test_only_loopback_is_a_target(url: str) -> None:
    with pytest.raises(ValueError, match=r"loopback|no host"):
        check_loopback(url)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8000", "http://localhost:1", "http://[::1]:2"])
def test_loopback_addresses_are_accepted(url: str) -> None:
    assert check_loopback(url) == url


def test_bad_stages_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="'x': rate"):
        Stage("x", 0, 1, "GET", "/")
    with pytest.raises(ValueError, match="'y': duration_s"):
        Stage("y", 10, 600, "GET", "/")
    with pytest.raises(ValueError, match="'z': uses \\{symbol\\}"):
        Stage("z", 10, 1, "GET", "/v1/signals/{symbol}")
    with pytest.raises(ValueError, match="unknown stage keys \\['speed'\\]"):
        Stage.from_json({"name": "s", "rate": 1, "duration_s": 1, "method": "GET", "path": "/",
                         "speed": 3})  # fmt: skip


def test_the_command_line_prints_one_json_result_per_stage() -> None:
    """The benchmark runs the generator as its own process: its output is what it parses."""

    async def go() -> str:
        async with serving(Server(service_s=0.001)) as server:
            stages = json.dumps(
                [{"name": "cli", "rate": 50, "duration_s": 0.1, "method": "GET", "path": "/ok"}]
            )
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "benchmarks.loadgen", server.url, stages,
                cwd=REPO, stdout=subprocess.PIPE,
            )  # fmt: skip
            out, _ = await asyncio.wait_for(process.communicate(), 60)
            assert process.returncode == 0
            return out.decode()

    (line,) = asyncio.run(go()).splitlines()
    result = json.loads(line)
    assert result["name"] == "cli"
    assert result["ok"] == 5
    assert result["errors"] == 0
