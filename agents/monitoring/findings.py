"""What a detector reports: a ``Finding``, with the statistic, its threshold and the evidence.

Every detector in `agents.monitoring` is a pure function over frames that returns findings, one
per (kind, symbol, bar) that crossed its threshold. A finding carries what an explanation may
cite: the statistic's name and value, the threshold it crossed, and the evidence (the values it
was computed from, or a reference to them), so "what was that spike?" is answered with exact,
recorded numbers. The monitor stores findings as anomaly records (`serving.decisions_store`);
the id is derived from (kind, symbol, bar), so detecting the same thing again stores nothing new.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sextant.errors import DataValidationError

__all__ = ["Category", "Finding", "Severity", "anomaly_id"]


class Category(StrEnum):
    """What kind of thing went wrong: the market itself, our data about it, or our models."""

    MARKET = "market"
    DATA = "data"
    MODEL = "model"


class Severity(StrEnum):
    """How far past its threshold: ``warning`` at the threshold, ``critical`` well beyond it
    (each detector documents where its critical line is)."""

    WARNING = "warning"
    CRITICAL = "critical"


def anomaly_id(kind: str, symbol: str | None, bar_ts: datetime) -> str:
    """``<bar UTC>-<kind>-<12 hex of blake2b(kind, symbol, bar)>``: stable, sortable by time."""
    bar = _utc(bar_ts, "bar_ts")
    digest = hashlib.blake2b(
        f"{kind}\x1f{symbol or ''}\x1f{bar.isoformat()}".encode(), digest_size=6
    ).hexdigest()
    return f"{bar.strftime('%Y%m%dT%H%M%SZ')}-{kind}-{digest}"


@dataclass(frozen=True, slots=True)
class Finding:
    """One detection: ``statistic`` = ``value`` crossed ``threshold`` at ``bar_ts``.

    ``bar_ts`` is when the anomalous thing happened (a bar's open for market data, the bar close
    a drift window ends at for models); ``symbol`` is None for what is not per symbol (a source's
    quarantine rate, the decision mix of an account). ``evidence`` is JSON-serialisable: the
    window of values the statistic was computed from (or a reference to stored data) and
    whatever the detector's docstring says it keeps. ``detail`` is one human sentence.
    """

    kind: str
    category: Category
    symbol: str | None
    bar_ts: datetime
    severity: Severity
    statistic: str
    value: float
    threshold: float
    detail: str
    evidence: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.kind or not self.kind.replace("_", "").isalnum() or not self.kind.islower():
            raise DataValidationError(
                f"finding kind must be lower_snake_case, got {self.kind!r}", field="kind"
            )
        _utc(self.bar_ts, "bar_ts")
        for name in ("value", "threshold"):
            number = getattr(self, name)
            if not isinstance(number, int | float) or math.isnan(number):
                raise DataValidationError(
                    f"{self.kind}: {name} must be a number, got {number!r}", field=name
                )

    @property
    def id(self) -> str:
        """The stable anomaly id (see ``anomaly_id``)."""
        return anomaly_id(self.kind, self.symbol, self.bar_ts)

    def as_record(self) -> dict[str, Any]:
        """The stored form (the monitor adds ``detected_at``)."""
        return {
            "id": self.id,
            "kind": self.kind,
            "category": self.category.value,
            "symbol": self.symbol,
            "bar_ts": _utc(self.bar_ts, "bar_ts").isoformat(),
            "severity": self.severity.value,
            "statistic": self.statistic,
            "value": float(self.value),
            "threshold": float(self.threshold),
            "detail": self.detail,
            "evidence": dict(self.evidence),
        }


def _utc(ts: datetime, what: str) -> datetime:
    if ts.tzinfo is None or ts.utcoffset() is None:
        raise DataValidationError(f"{what} must be timezone-aware (UTC), got {ts!r}", field=what)
    return ts.astimezone(UTC)
