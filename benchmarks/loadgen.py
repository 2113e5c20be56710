"""An open-loop HTTP load generator for the serving benchmarks (run in its own process).

Each stage sends ``rate`` requests per second for ``duration_s`` seconds on a fixed schedule:
request ``i`` is due at ``start + i / rate`` whether or not earlier ones have been answered, and
its latency is measured from that due time, not from when it was actually sent. A server that
falls behind therefore shows its queueing in the figures instead of slowing the client down
(the "coordinated omission" a closed-loop client suffers). The client's own lateness in sending
is reported too (``send_lag_p99_ms``): when it is large, the client, not the server, was the
bottleneck.

The client is a small HTTP/1.1 one over asyncio streams (on uvloop where installed), with a
bounded pool of keep-alive connections: httpx's client costs several times the CPU per request,
and on a 2-core machine shared with the server it became the bottleneck (its own sends fell
hundreds of ms behind schedule at 200 requests/s), measuring the client instead of the server.

Everything is bounded: a stage sends at most ``rate * duration_s`` requests, at most
``max_in_flight`` at once (a request due while that many are outstanding is not sent and counts
as ``dropped``, an error) over at most that many connections, each request within ``timeout_s``
(waiting for a connection included); only loopback addresses are accepted.

Usage: ``python -m benchmarks.loadgen URL STAGES_JSON`` prints one JSON object per stage. A stage
is ``{"name", "rate", "duration_s", "method", "path", "body"?, "symbols"?, "max_in_flight"?,
"timeout_s"?}``; in ``path`` and ``body`` (a JSON text), ``{i}`` is replaced by the request's
number, ``{symbol}`` by ``symbols[i % len(symbols)]`` and ``{round}`` by ``i // len(symbols)``
(how many times the symbols went round before it), so that each request can name its own
account, or an account can be asked for each symbol in turn.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

__all__ = ["Stage", "StageResult", "check_loopback", "percentile", "run_stages"]

LOOPBACK_NAMES = frozenset({"localhost"})


@dataclass(frozen=True, slots=True)
class Stage:
    """One fixed-rate run: what to send, how often, for how long."""

    name: str
    rate: float  # requests per second
    duration_s: float
    method: str
    path: str
    body: str | None = None  # JSON text template
    symbols: tuple[str, ...] = ()
    max_in_flight: int = 256
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        if not (self.rate > 0 and math.isfinite(self.rate)):
            raise ValueError(
                f"stage {self.name!r}: rate must be a positive number, got {self.rate}"
            )
        if not (0 < self.duration_s <= 60):
            raise ValueError(
                f"stage {self.name!r}: duration_s must be in (0, 60] s, got {self.duration_s}"
            )
        if self.max_in_flight < 1:
            raise ValueError(f"stage {self.name!r}: max_in_flight must be >= 1")
        if ("{symbol}" in self.path or "{symbol}" in (self.body or "")) and not self.symbols:
            raise ValueError(f"stage {self.name!r}: uses {{symbol}} but names no symbols")

    @property
    def count(self) -> int:
        """How many requests the stage sends (its bound)."""
        return max(1, round(self.rate * self.duration_s))

    def request(self, i: int) -> tuple[str, bytes | None]:
        """Request ``i``'s path and body, with ``{i}``, ``{symbol}`` and ``{round}`` filled in."""
        symbol = self.symbols[i % len(self.symbols)] if self.symbols else ""
        rounds = str(i // len(self.symbols)) if self.symbols else "0"

        def fill(text: str) -> str:
            return (
                text.replace("{i}", str(i)).replace("{symbol}", symbol).replace("{round}", rounds)
            )

        body = None if self.body is None else fill(self.body).encode()
        return fill(self.path), body

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Stage:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown stage keys {sorted(unknown)}; known: {sorted(known)}")
        values = dict(data)
        if "symbols" in values:
            values["symbols"] = tuple(values["symbols"])
        return cls(**values)


@dataclass(slots=True)
class StageResult:
    """What a stage measured; latencies in ms from each request's due time."""

    name: str
    rate: float
    sent: int = 0
    ok: int = 0
    errors: int = 0  # non-2xx answers, failures, timeouts and dropped requests
    dropped: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    send_lag_p99_ms: float = math.nan
    achieved_rate: float = math.nan  # answers (of any status) per second of the stage

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0 < q <= 100) by the nearest-rank method (NaN when empty)."""
    if not 0 < q <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {q}")
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def check_loopback(url: str) -> str:
    """``url`` unchanged when its host is a loopback address, else ``ValueError``: this load
    generator never sends traffic off the machine."""
    host = urlsplit(url).hostname
    if host is None:
        raise ValueError(f"no host in the load generator's URL {url!r}")
    if host.lower() not in LOOPBACK_NAMES:
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"the load generator only targets loopback addresses, not {host!r}")
    return url


class _Connection:
    """One keep-alive HTTP/1.1 connection: a request written, its answer read (status, headers,
    a body of Content-Length bytes or chunked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def exchange(self, head: bytes, body: bytes | None) -> tuple[int, bool]:
        """Send one request; its status and whether the connection can be reused."""
        self.writer.write(head + body if body else head)
        await self.writer.drain()
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip().lower()
        if "chunked" in headers.get("transfer-encoding", ""):
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)  # the chunk and its CRLF
                if size == 0:
                    break
        elif "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        else:  # the body runs to the connection's end
            await self.reader.read()
            return status, False
        return status, headers.get("connection") != "close"

    def close(self) -> None:
        self.writer.close()


class _Pool:
    """At most ``size`` connections to ``host:port``; a request waits for a free one (its wait
    counts in its latency, which runs from its due time)."""

    def __init__(self, host: str, port: int, size: int) -> None:
        self.host, self.port, self.size = host, port, size
        self.idle: list[_Connection] = []
        self.opened = 0
        self.freed = asyncio.Condition()

    async def acquire(self) -> _Connection:
        async with self.freed:
            while not self.idle and self.opened >= self.size:
                await self.freed.wait()
            if self.idle:
                return self.idle.pop()
            self.opened += 1
        try:
            return _Connection(*await asyncio.open_connection(self.host, self.port))
        except BaseException:
            await self.release(None)
            raise

    async def release(self, connection: _Connection | None) -> None:
        """Give ``connection`` back (None: it was closed or never opened)."""
        async with self.freed:
            if connection is None:
                self.opened -= 1
            else:
                self.idle.append(connection)
            self.freed.notify()

    def close(self) -> None:
        for connection in self.idle:
            connection.close()
        self.idle.clear()


async def run_stage(
    pool: _Pool, stage: Stage, *, clock: Callable[[], float] = time.perf_counter
) -> StageResult:
    """Send ``stage``'s requests on schedule and measure each from its due time."""
    result = StageResult(stage.name, stage.rate)
    latencies: list[float] = []
    lags: list[float] = []
    kinds: Counter[str] = Counter()
    in_flight = 0
    tasks: set[asyncio.Task[None]] = set()
    host = f"{pool.host}:{pool.port}" if ":" not in pool.host else f"[{pool.host}]:{pool.port}"

    async def one(i: int, due: float) -> None:
        nonlocal in_flight
        path, body = stage.request(i)
        head = f"{stage.method} {path} HTTP/1.1\r\nhost: {host}\r\n"
        if body is not None:
            head += f"content-type: application/json\r\ncontent-length: {len(body)}\r\n"
        connection: _Connection | None = None
        try:
            async with asyncio.timeout(stage.timeout_s):
                connection = await pool.acquire()
                status, reusable = await connection.exchange((head + "\r\n").encode(), body)
            latencies.append(clock() - due)
            if 200 <= status < 300:
                result.ok += 1
            else:
                kinds[f"http_{status}"] += 1
            if not reusable:
                connection.close()
                connection = None
            await pool.release(connection)
            connection = None
        except TimeoutError:
            kinds["timeout"] += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            kinds["connection_error"] += 1
        finally:
            if connection is not None:  # failed mid-exchange: its state is unknown
                connection.close()
                await pool.release(None)
            in_flight -= 1

    start = clock()
    for i in range(stage.count):
        due = start + i / stage.rate
        delay = due - clock()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= stage.max_in_flight:
            result.dropped += 1
            continue
        lags.append(clock() - due)
        in_flight += 1
        result.sent += 1
        task = asyncio.create_task(one(i, due))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks))  # each is bounded by its timeout
    elapsed = clock() - start
    if result.dropped:
        kinds["dropped"] += result.dropped
    result.error_kinds = dict(kinds)
    result.errors = sum(kinds.values())
    result.p50_ms = percentile(latencies, 50) * 1e3
    result.p99_ms = percentile(latencies, 99) * 1e3
    result.max_ms = max(latencies, default=math.nan) * 1e3
    result.send_lag_p99_ms = percentile(lags, 99) * 1e3
    result.achieved_rate = len(latencies) / elapsed if elapsed > 0 else math.nan
    return result


async def run_stages(url: str, stages: Sequence[Stage]) -> list[StageResult]:
    """Run ``stages`` one after the other over one pool of keep-alive connections to ``url``
    (``http://`` only: the service is benchmarked on loopback, without TLS)."""
    check_loopback(url)
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"the load generator speaks plain http://, not {url!r}")
    pool = _Pool(parts.hostname, parts.port or 80, max(stage.max_in_flight for stage in stages))
    try:
        return [await run_stage(pool, stage) for stage in stages]
    finally:
        pool.close()


def _run(coroutine: Coroutine[Any, Any, list[StageResult]]) -> list[StageResult]:
    """uvloop's event loop where installed (the client then costs less CPU), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    return uvloop.run(coroutine)


def main(argv: Sequence[str]) -> int:
    """``URL STAGES_JSON``: run the stages, print one JSON result per line."""
    if len(argv) != 2:
        print("usage: python -m benchmarks.loadgen URL STAGES_JSON", file=sys.stderr)
        return 2
    url, spec = argv
    stages = [Stage.from_json(item) for item in json.loads(spec)]
    for result in _run(run_stages(url, stages)):
        print(json.dumps(result.to_json()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
