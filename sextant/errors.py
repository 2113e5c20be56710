"""The sextant exception hierarchy; each class documents how a caller recovers.

Risk rejections are results (``RiskDecision``), never exceptions.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataValidationError",
    "ModelUnavailableError",
    "RecordConflictError",
    "SextantError",
    "SourceRequestError",
    "SourceUnavailableError",
]


class SextantError(Exception):
    """Base of every error sextant raises on purpose."""


class ConfigError(SextantError):
    """Configuration is wrong or inconsistent. Recovery: stop, fix the configuration, rerun."""


class SourceRequestError(ConfigError):
    """A data source refused the request itself (unknown symbol, bad parameter).

    Recovery: do not retry; the same request will fail again. Fix the symbol or option.
    """


class DataValidationError(SextantError):
    """Input data is unreadable or violates its schema.

    Recovery: reject that input (rows go to quarantine where the input is readable at all),
    keep everything already stored, and carry on with the valid inputs.
    """

    def __init__(self, message: str, *, origin: str | None = None, field: str | None = None):
        self.origin = origin
        self.field = field
        parts = [message]
        if field:
            parts.append(f"field={field}")
        if origin:
            parts.append(f"input={origin}")
        super().__init__(" | ".join(parts))


class RecordConflictError(DataValidationError):
    """A write contradicts a record already stored under the same id (a decision re-made for a
    recorded bar with different content).

    Recovery: the stored record stands (it was acknowledged and may have been acted on) and the
    whole write is rolled back, so do not act on the new one; resume from the stored state,
    after the latest recorded bar.
    """

    def __init__(self, message: str, *, record_id: str, origin: str | None = None):
        self.record_id = record_id
        super().__init__(message, origin=origin, field="id")


class StateChangedError(RecordConflictError):
    """An account's stored state changed between a writer's read and its write (another process
    recorded in between). Recovery: nothing was written; read the state again and decide again.
    """


class UnknownSymbolError(DataValidationError):
    """A symbol that this home does not trade (not in the settings' symbols)."""

    def __init__(self, message: str, *, symbol: str):
        self.symbol = symbol
        super().__init__(message, field="symbol")


class SourceUnavailableError(SextantError):
    """A source failed transiently (network, rate limit, 5xx). Recovery: retry with backoff."""


class ModelUnavailableError(SextantError):
    """A model cannot produce an output. Recovery: serve flat for that family, trip the breaker."""
