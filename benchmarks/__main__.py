"""Run every benchmark (or those named on the command line) and print one line per figure."""

from __future__ import annotations

import sys

from benchmarks import ingest
from benchmarks.common import Figure

SUITES = {"ingest": ingest.run}


def main(argv: list[str]) -> int:
    """Print each suite's figures; a suite that cannot run says why on its own line."""
    chosen = argv or list(SUITES)
    for name in chosen:
        try:
            figures: list[Figure] = SUITES[name]()
        except Exception as exc:  # a broken suite must not hide the others' figures
            print(f"{name}: error {type(exc).__name__}: {exc}")
            continue
        for figure in figures:
            print(figure.line())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
