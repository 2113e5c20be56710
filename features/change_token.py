"""Whether a SQLite database changed since a read: a token for caching reads of it exactly.

The decision service reads the same online vectors for every request of a bar: they change only
when `sextant features materialize` writes the online store, once per bar; and it polls the
model registry's aliases, which move only when a model is promoted. `ChangeToken.token()`
returns a value that differs whenever the database's content may have changed, so a reader can
keep what it read under the token it saw *before* reading and reuse it while the token stands.

The token is SQLite's ``PRAGMA data_version`` on a read-only connection of its own, which changes
whenever another connection (any process, the library's own included) commits to the file, with
the file's identity (device, inode), which changes when the file is replaced. A database this
cannot watch (not SQLite: Redis or a tracking server in the scale-out profile, or no file yet)
has no token (None): every read goes to the store.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

__all__ = ["ChangeToken", "sqlite_uri_path"]


def sqlite_uri_path(uri: str) -> Path | None:
    """The file of a SQLAlchemy-style ``sqlite:///path`` URI (None for any other URI)."""
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri == prefix or uri.endswith(":memory:"):
        return None
    return Path(uri[len(prefix) :].split("?", 1)[0])


class ChangeToken:
    """Change tokens of one SQLite database file (``path``; None: a store without one)."""

    def __init__(self, path: Path | None) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._generation = 0  # bumped whenever the file is (re)opened

    def token(self) -> tuple[int, int] | None:
        """A token that changes with the database's content, or None when it cannot be watched.

        Take it before reading: data read after a token was taken is at least as new as it.
        """
        if self._path is None:
            return None
        with self._lock:
            try:
                stat = self._path.stat()
            except FileNotFoundError:
                self._drop()
                return None
            identity = (stat.st_dev, stat.st_ino)
            try:
                if self._con is None or identity != self._identity:
                    self._drop()
                    uri = f"{self._path.resolve().as_uri()}?mode=ro"
                    self._con = sqlite3.connect(uri, uri=True, check_same_thread=False)
                    self._identity = identity
                    self._generation += 1
                version = int(self._con.execute("PRAGMA data_version").fetchone()[0])
            except sqlite3.Error:  # unreadable now: do not trust any cached read
                self._drop()
                return None
            return self._generation, version

    def close(self) -> None:
        """Close the watching connection (a later `token` reopens it)."""
        with self._lock:
            self._drop()

    def _drop(self) -> None:
        if self._con is not None:
            self._con.close()
        self._con = None
        self._identity = None
