"""The decisions store's WAL folded into its file in the background, off the decision path.

SQLite checkpoints the WAL inside whichever commit crosses ``wal_autocheckpoint`` pages, and that
commit then takes tens of milliseconds. The service instead runs `DecisionsStore.checkpoint` every
``interval_s`` from a connection of its own in a thread: SQLite runs it without holding the GIL,
beside the decision writes (a PASSIVE checkpoint blocks no writer), so no decision's commit pays
for one.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from types import TracebackType
from typing import Self

from serving.decisions_store import DecisionsStore

__all__ = ["Checkpointer"]

log = logging.getLogger(__name__)


class Checkpointer:
    """A thread that checkpoints the store at ``path`` every ``interval_s`` until `stop`."""

    def __init__(self, path: Path, interval_s: float = 1.0) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        self._path = path
        self._interval = interval_s
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sextant-checkpoint", daemon=True)
        self.rounds = 0  # checkpoints run (for tests and logs)

    def start(self) -> Self:
        """Start checkpointing (the store is opened in the thread)."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the checkpoint in progress, if any, and close the connection."""
        self._stopped.set()
        self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        with DecisionsStore.open(self._path) as store:
            while not self._stopped.wait(self._interval):
                try:
                    store.checkpoint()
                    self.rounds += 1
                except Exception as exc:  # a busy store: the next round, or SQLite's own, does it
                    log.warning(
                        "decisions store checkpoint failed: %s: %s", type(exc).__name__, exc
                    )
