"""Run every benchmark (or those named on the command line) and print one line per figure."""

from __future__ import annotations

import importlib
import sys

# suite name -> module with `run() -> list[Figure]`; imported lazily so one broken suite
# cannot hide the others' figures
SUITES = (
    "ingest",
    "ta",
    "features",
    "online",
    "backtest",
    "models",
    "serving",
    "monitoring",
    "explain",
)


def main(argv: list[str]) -> int:
    """Print each suite's figures; a suite that cannot run says why on its own line."""
    for name in argv or SUITES:
        try:
            figures = importlib.import_module(f"benchmarks.{name}").run()
        except Exception as exc:
            print(f"{name}: error {type(exc).__name__}: {exc}")
            continue
        for figure in figures:
            print(figure.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
