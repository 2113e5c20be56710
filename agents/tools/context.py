"""The evidence the read-only tools read: the decisions store, the market store, MLflow, the ledger.

``Evidence`` is built from the settings and opens each store lazily, read-only: the decisions
store (SQLite, shared with the writing service) once, on first use; the market store (DuckDB, one
read-write process per file) for one query batch at a time, so an ingest is never held off for
long; the MLflow registry through a client bound to the settings' URIs. Nothing here writes.
It also resolves what a person types ("btc", "BTC", "btc/usdt") to a configured symbol, and keeps
an in-process cache for deterministic, costly results (XGBoost contributions per decision).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from serving.decisions_store import DecisionsStore
from serving.market import open_market
from sextant.errors import DataValidationError, UnknownSymbolError
from sextant.settings import Settings

if TYPE_CHECKING:
    from mlflow import MlflowClient

__all__ = ["Evidence", "UnknownRecordError", "json_float", "utc_text"]


class UnknownRecordError(DataValidationError):
    """No stored record has this id (a decision, an anomaly); the message names kind and id."""

    def __init__(self, kind: str, record_id: str, hint: str = "") -> None:
        self.kind = kind
        self.record_id = record_id
        message = f"no {kind} with id {record_id!r} is recorded"
        super().__init__(f"{message}{': ' + hint if hint else ''}", field=f"{kind}_id")


def utc_text(moment: datetime) -> str:
    """ISO-8601 text of a tz-aware moment, in UTC (what every tool output carries)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise DataValidationError(f"{moment!r} is naive; tools need tz-aware UTC", field="time")
    return moment.astimezone(UTC).isoformat()


def json_float(value: Any) -> float | None:
    """A float for a tool output: NaN, infinities and None become None (strict JSON)."""
    if value is None:
        return None
    number = float(value)
    return number if math.isfinite(number) else None


class Evidence:
    """Read-only access to one home's recorded evidence; a context manager that closes cleanly.

    ``account`` is the paper account that decisions and the portfolio default to (the settings'
    ``paper_account``). Safe to share between threads of one process.
    """

    def __init__(self, settings: Settings, *, account: str | None = None) -> None:
        self.settings = settings
        self.account = account or settings.paper_account
        self._decisions: DecisionsStore | None = None
        self._client: MlflowClient | None = None
        self._lock = threading.RLock()
        self.cache: dict[tuple[str, ...], Any] = {}  # deterministic results (contributions)

    # -- stores -----------------------------------------------------------------------------

    @property
    def decisions(self) -> DecisionsStore:
        """The decisions store, opened read-only on first use (``ConfigError`` before any record)."""
        with self._lock:
            if self._decisions is None:
                self._decisions = DecisionsStore.open(
                    self.settings.paths.decisions_db, readonly=True
                )
            return self._decisions

    @contextmanager
    def market(self) -> Iterator[Any]:
        """The market store, read-only, for one batch of queries (then released for ingests).

        Typed ``Any``: its class lives in ``features``, which ``agents`` may not import (even
        for typing); it is what ``serving.market.open_market`` returns.
        """
        store = open_market(self.settings)
        try:
            yield store
        finally:
            store.close()

    @property
    def registry(self) -> MlflowClient:
        """An MLflow client bound to the settings' tracking and registry URIs (reads only)."""
        with self._lock:
            if self._client is None:
                from serving.champions import registry_client  # MLflow: imported on use

                self._client = registry_client(self.settings)
            return self._client

    def ledger(self) -> list[dict[str, Any]]:
        """Every promotion decision of the home's ledger, oldest first."""
        from models.registry import read_ledger  # scipy and MLflow load in seconds: on use

        return read_ledger(self.settings.paths.home)

    # -- what a person types ----------------------------------------------------------------

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols this home trades."""
        return tuple(self.settings.symbols)

    def resolve_symbol(self, text: str) -> str:
        """The configured symbol ``text`` names: the symbol itself, or its base asset ("BTC").

        ``UnknownSymbolError`` naming the text and the symbols traded otherwise.
        """
        wanted = text.strip().upper().replace("-", "/")
        for symbol in self.symbols:
            if wanted in (symbol.upper(), symbol.split("/")[0].upper()):
                return symbol
        raise UnknownSymbolError(
            f"unknown symbol {text!r}: this home trades {', '.join(self.symbols)}", symbol=text
        )

    def decision(self, decision_id: str) -> dict[str, Any]:
        """The stored decision record (``UnknownRecordError`` naming the id when absent)."""
        record = self.decisions.get(decision_id)
        if record is None:
            raise UnknownRecordError(
                "decision", decision_id, "list decisions to find ids (list_decisions)"
            )
        return record

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close what was opened (the decisions store); the cache is dropped."""
        with self._lock:
            if self._decisions is not None:
                self._decisions.close()
                self._decisions = None
            self._client = None
            self.cache.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
