"""Child Python processes for the store's multi-process tests: start, read lines, kill -9.

A child is ``python -m <module> <args>`` run from the repository root with ``SEXTANT_HOME`` set;
a thread drains its stdout into a queue, so a test waits for lines with a deadline and never
blocks on a pipe. Lines a child printed before it was killed are still read (the pipe keeps
them), so "printed" means "happened before the kill".
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

__all__ = ["ROOT", "Child"]

ROOT = Path(__file__).resolve().parents[2]
_EOF = object()


class Child:
    """One child process whose stdout lines are collected as they come."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._queue: queue.Queue[object] = queue.Queue()
        self._eof = False
        self._stderr = ""
        threading.Thread(target=self._drain, daemon=True).start()

    @classmethod
    def start(cls, module: str, *args: str | Path, home: Path) -> Child:
        """Start ``python -m module args`` with ``SEXTANT_HOME=home``; stderr is kept for errors."""
        env = {**os.environ, "SEXTANT_HOME": str(home), "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *map(str, args)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        return cls(proc)

    def _drain(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))
        self._queue.put(_EOF)

    def wait_for(self, done: Callable[[Sequence[str]], bool], timeout_s: float) -> list[str]:
        """Collect lines until ``done(lines)`` holds; fails after ``timeout_s`` or at the
        child's exit without it, with the child's stderr in the message."""
        deadline = time.monotonic() + timeout_s
        while not done(self.lines):
            left = deadline - time.monotonic()
            if left <= 0 or self._eof:
                self.kill9()
                raise AssertionError(
                    f"child {self.proc.args!r} did not get there in {timeout_s} s "
                    f"(exit {self.proc.returncode}); last lines {self.lines[-5:]}; "
                    f"stderr:\n{self.stderr()}"
                )
            self._take(left)
        return self.lines

    def _take(self, timeout_s: float) -> None:
        try:
            item = self._queue.get(timeout=timeout_s)
        except queue.Empty:
            return
        if item is _EOF:
            self._eof = True
        else:
            self.lines.append(str(item))

    def kill9(self) -> None:
        """SIGKILL the child (no cleanup runs in it), then read what it had printed."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.finish(timeout_s=10)

    def finish(self, timeout_s: float) -> int:
        """Wait for the child to exit and every line to be read, close its pipes; its exit code."""
        code = self.proc.wait(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self._eof and time.monotonic() < deadline:
            self._take(deadline - time.monotonic())
        assert self.proc.stdout is not None and self.proc.stderr is not None
        if self._eof:  # the drain thread is done with stdout
            self.proc.stdout.close()
        if not self.proc.stderr.closed:
            self._stderr = self.proc.stderr.read()
            self.proc.stderr.close()
        return code

    def stderr(self) -> str:
        """The child's stderr (once ``finish`` or ``kill9`` has run)."""
        return self._stderr
