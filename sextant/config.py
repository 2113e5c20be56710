"""One configuration style for sextant: frozen, strict pydantic models, constrained types, one hash.

Every config (decision, training, model families, promotion, backtest execution) subclasses
`SextantConfig`: each field is validated when the config is built, unknown keys are errors,
values are immutable, a bool is never a number, a string never becomes one, and NaN or infinity
is never a setting. Any failure is a ``ConfigError`` naming ``Owner.field`` and the value.

The constrained types below are declared here once; `sextant.settings` uses them too. Cross-field
checks are ``@model_validator(mode="after")`` methods that raise ``ConfigError`` themselves.
`config_hash` is the one digest of a configuration (or of several, in a mapping) that MLflow runs
and decision records carry.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Strict, ValidationError
from pydantic_core import ErrorDetails, to_jsonable_python

from sextant.errors import ConfigError
from sextant.timeframes import timeframe_ms

__all__ = [
    "Fraction",
    "Names",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenFraction",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "SextantConfig",
    "Timeframe",
    "config_hash",
    "int_range",
    "interval",
]


def _bound(value: float) -> str:
    return f"{value:g}"


def interval(
    lo: float = -math.inf,
    hi: float = math.inf,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
) -> AfterValidator:
    """A range check for a float field (``Annotated[float, interval(0, 1, lo_open=True)]``).

    The message reads ``must be in (0, 1]``, ``must be positive`` or ``must be >= 0``; a NaN or an
    infinity is refused whatever the bounds.
    """
    if math.isinf(hi):
        text = (
            "must be positive"
            if lo == 0 and lo_open
            else f"must be {'>' if lo_open else '>='} {_bound(lo)}"
        )
    else:
        left, right = "(" if lo_open else "[", ")" if hi_open else "]"
        text = f"must be in {left}{_bound(lo)}, {_bound(hi)}{right}"

    def check(value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be finite")
        below = value <= lo if lo_open else value < lo
        above = value >= hi if hi_open else value > hi
        if below or above:
            raise ValueError(text)
        return value

    return AfterValidator(check)


def int_range(lo: int, hi: int | None = None) -> AfterValidator:
    """A range check for an int field: ``must be at least 1`` or ``must be in [0, 2]``."""
    text = f"must be at least {lo}" if hi is None else f"must be in [{lo}, {hi}]"

    def check(value: int) -> int:
        if value < lo or (hi is not None and value > hi):
            raise ValueError(text)
        return value

    return AfterValidator(check)


def _known_timeframe(value: str) -> str:
    try:
        timeframe_ms(value)
    except ConfigError as exc:  # pydantic turns a ValueError into a field error
        raise ValueError("must be a timeframe such as '15m', '1h', '4h' or '1d'") from exc
    return value


PositiveInt = Annotated[int, int_range(1)]
NonNegativeInt = Annotated[int, int_range(0)]
PositiveFloat = Annotated[float, interval(0.0, lo_open=True)]
NonNegativeFloat = Annotated[float, interval(0.0)]
Probability = Annotated[float, interval(0.0, 1.0)]  # [0, 1]
Fraction = Annotated[float, interval(0.0, 1.0, lo_open=True)]  # (0, 1]: a share that cannot be 0
OpenFraction = Annotated[float, interval(0.0, 1.0, lo_open=True, hi_open=True)]  # (0, 1)
Timeframe = Annotated[str, AfterValidator(_known_timeframe)]  # '15m', '1h', '4h', '1d', ...
# a tuple of names; a list is accepted too, since JSON and TOML files have no tuples
Names = Annotated[tuple[str, ...], Strict(False)]


class SextantConfig(BaseModel):
    """Base of every sextant config: frozen, unknown keys refused, strict types, ConfigError.

    Build with keywords (``XgbConfig(max_depth=6)``) or from a plain mapping (`from_dict`, which
    builds nested configs from nested mappings); derive a changed copy with `replace`, which
    validates again (pydantic's ``model_copy(update=...)`` would not).
    """

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,  # no coercion: True is not 1, "2" is not 2.0 (an int is still a valid float)
        allow_inf_nan=False,
        validate_default=True,
    )

    def __init__(self, /, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise ConfigError(
                _describe(
                    type(self).__name__, exc.errors(include_url=False), type(self).model_fields
                )
            ) from exc

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """Build from a plain mapping (a parsed config file, MLflow tags); unknown keys are errors."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"{cls.__name__} must be a mapping of settings, got {values!r}")
        built: dict[str, Any] = {}
        for name, value in values.items():
            field = cls.model_fields.get(name)
            nested = field.annotation if field is not None else None
            if (
                isinstance(nested, type)
                and issubclass(nested, SextantConfig)
                and isinstance(value, Mapping)
            ):
                value = nested.from_dict(value)  # errors then name the nested config
            built[name] = value
        return cls(**built)

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, validated like any new config."""
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})

    def as_dict(self) -> dict[str, Any]:
        """Field values by name, nested configs as dicts (for MLflow params and `from_dict`)."""
        return self.model_dump()


def _describe(owner: str, errors: Iterable[ErrorDetails], known: Iterable[str]) -> str:
    """One line naming every problem: ``Owner.field must be ..., got value``; unknown keys first."""
    unknown: dict[tuple[str, ...], list[str]] = {}
    problems: list[str] = []
    for error in errors:
        loc = tuple(str(part) for part in error["loc"])
        where = ".".join((owner, *loc))
        kind, message = error["type"], error["msg"]
        if kind == "extra_forbidden":
            unknown.setdefault(loc[:-1], []).append(loc[-1])
            continue
        if kind == "missing":
            problems.append(f"{where} is required")
            continue
        if kind == "value_error":  # our validators' own wording
            message = message.removeprefix("Value error, ")
        elif message.startswith("Input should "):
            message = "must " + message.removeprefix("Input should ")
        problems.append(f"{where} {message}, got {error['input']!r}")
    for parent, names in reversed(unknown.items()):
        text = f"unknown {'.'.join((owner, *parent))} keys: {', '.join(sorted(names))}"
        if not parent:
            text += f"; known: {', '.join(sorted(known))}"
        problems.insert(0, text)
    return "; ".join(problems)


def config_hash(config: object) -> str:
    """Short, stable digest of a configuration: sha256 of its canonical JSON, 16 hex digits.

    ``config`` is a `SextantConfig`, a mapping of several (``{"decision": ..., "execution": ...}``)
    or their JSON form (a config's ``model_dump(mode="json")`` hashes like the config itself, so a
    configuration read back from an MLflow tag compares with a live one). Keys are sorted, so
    field order never matters; any changed value changes the digest.
    """
    text = json.dumps(to_jsonable_python(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
