"""A bounded load client in its own process: requests at a fixed rate against a loopback URL.

``python -m tests.serving.load_client URL OUT RATE MAX_S STOP_FILE TARGET [TARGET ...]`` where
each TARGET is ``METHOD PATH [JSON]`` in one argument (``"GET /v1/signals/BTC/USDT"``,
``'POST /v1/decisions {"symbol": "BTC/USDT"}'``), cycled in order. Requests are sent on schedule
(open loop, each its own task) until ``STOP_FILE`` exists or ``MAX_S`` passed; the client prints
``started`` after its first answer and writes every request to ``OUT`` as JSON lines:
``{"sent": s, "target": i, "status": code or null, "error": text or null, "body": json}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx

MAX_REQUESTS = 5_000  # a hard bound whatever the arguments say


async def run(
    url: str, out: Path, rate: float, max_s: float, stop: Path, targets: list[str]
) -> None:
    parsed = []
    for target in targets:
        method, _, rest = target.partition(" ")
        path, _, body = rest.partition(" ")
        parsed.append((method, path, json.loads(body) if body else None))
    results: list[dict[str, Any]] = []
    started = asyncio.Event()
    # idle connections are dropped by the client before uvicorn's 5 s keep-alive timeout closes
    # them: otherwise a request sent as the server closes its side fails with ReadError (a race
    # of the two timers, not a failed request of the service)
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64, keepalive_expiry=2.0)

    async with httpx.AsyncClient(base_url=url, timeout=10.0, limits=limits) as http:

        async def one(i: int, sent: float) -> None:
            method, path, body = parsed[i % len(parsed)]
            row: dict[str, Any] = {"sent": sent, "target": i % len(parsed), "status": None}
            try:
                response = await http.request(method, path, json=body)
                row["status"] = response.status_code
                row["body"] = response.json()
            except Exception as exc:  # a failed request is a result here, not a crash
                row["error"] = f"{type(exc).__name__}: {exc}"
            results.append(row)
            if not started.is_set():
                started.set()
                print("started", flush=True)

        tasks = []
        begin = time.monotonic()
        for i in range(MAX_REQUESTS):
            due = begin + i / rate
            if due - begin > max_s or stop.exists():
                break
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(i, due - begin)))
        await asyncio.gather(*tasks)
    out.write_text("\n".join(json.dumps(r) for r in sorted(results, key=lambda r: r["sent"])))
    print("done", flush=True)


if __name__ == "__main__":
    url, out, rate, max_s, stop, *targets = sys.argv[1:]
    asyncio.run(run(url, Path(out), float(rate), float(max_s), Path(stop), targets))
