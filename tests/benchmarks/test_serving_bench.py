"""The serving bench's own measuring helpers (the bench itself runs under `make bench`)."""

from __future__ import annotations

import math
import os
import time

from benchmarks.serving import Server


def test_a_server_process_cpu_time_grows_with_its_work() -> None:
    server = Server("http://127.0.0.1:1", os.getpid())  # this process stands in for uvicorn

    before = server.cpu_seconds()
    busy_until = time.process_time() + 0.1
    while time.process_time() < busy_until:
        pass
    after = server.cpu_seconds()

    assert before > 0.0
    assert 0.05 <= after - before < 1.0  # /proc counts in clock ticks (10 ms here)


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    assert math.isnan(Server("http://127.0.0.1:1", -1).cpu_seconds())
