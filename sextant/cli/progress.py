"""Progress bars for long downloads (drawn on stderr, so --json output stays clean)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeRemainingColumn

__all__ = ["progress_reporter"]


@contextmanager
def progress_reporter(*, enabled: bool) -> Iterator[Callable[[str, int, int], None] | None]:
    """Yield a ``report(label, done, total)`` callback drawing one bar per label, or None."""
    if not enabled:
        yield None
        return
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    tasks: dict[str, TaskID] = {}

    def report(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = progress.add_task(label, total=max(total, 1))
        progress.update(tasks[label], completed=min(done, total), total=max(total, 1))

    with progress:
        yield report
