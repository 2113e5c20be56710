"""Human-readable output of the CLI (rich tables on stdout)."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["print_table"]


def print_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    """Print rows as a table; an empty result prints the title and '(none)'."""
    # Piped output is not wrapped at 80 columns: tables stay one line per row for grep and logs.
    console = Console(width=None if sys.stdout.isatty() else 200)
    table = Table(title=title, show_lines=False)
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_cell(row.get(c)) for c in columns))
    console.print(table)
    if not rows:
        console.print("(none)")


_ISO = re.compile(r"^(\d{4}-\d{2}-\d{2})T(\d{2}:\d{2})(:\d{2}(\.\d+)?)?(\+00:00|Z)$")


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    match = _ISO.match(text)
    if match:  # UTC timestamps shown compactly; --json keeps full ISO 8601
        seconds = match.group(3) if match.group(3) not in (None, ":00") else ""
        return f"{match.group(1)} {match.group(2)}{seconds}"
    return text
