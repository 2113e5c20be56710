"""Shared pieces of the benchmark suites."""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sextant.runtime import disable_telemetry

__all__ = ["SHARED_DATA", "Figure", "best_of"]

SHARED_DATA = Path(
    os.environ.get("SEXTANT_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data")
)

disable_telemetry()
logging.basicConfig(
    level=logging.ERROR
)  # figures only on stdout; warnings about the fixed inputs are known


@dataclass(frozen=True, slots=True)
class Figure:
    """One benchmark figure, printed as `name: value unit (target ...)`."""

    name: str
    value: float
    unit: str
    target: str

    def line(self) -> str:
        value = f"{self.value:.0f}" if float(self.value).is_integer() else f"{self.value:.4g}"
        return f"{self.name}: {value} {self.unit} (target {self.target})"


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, float]:
    """Best and median wall time in seconds over ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)
