"""The one config style: frozen, strict, unknown keys refused, ConfigError naming field and value."""

from __future__ import annotations

import math
from typing import Self

import pytest
from pydantic import ValidationError, model_validator

from sextant.config import (
    Fraction,
    Names,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SextantConfig,
    Timeframe,
    config_hash,
)
from sextant.errors import ConfigError


class Inner(SextantConfig):
    share: Fraction = 0.5
    timeframe: Timeframe = "1h"


class Outer(SextantConfig):
    count: PositiveInt = 3
    retries: NonNegativeInt = 0
    rate: PositiveFloat = 1.0
    enabled: bool = True
    names: Names = ("a",)
    inner: Inner = Inner()

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.retries > self.count:
            raise ConfigError(f"Outer.retries ({self.retries}) must not exceed count")
        return self


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"count": True}, r"Outer.count must be a valid integer, got True"),
        ({"count": 2.0}, r"Outer.count must be a valid integer, got 2.0"),
        ({"count": 0}, r"Outer.count must be at least 1, got 0"),
        ({"rate": "1.5"}, r"Outer.rate must be a valid number, got '1.5'"),
        ({"rate": False}, r"Outer.rate must be a valid number, got False"),
        ({"rate": math.nan}, r"Outer.rate must be a finite number, got nan"),
        ({"rate": math.inf}, r"Outer.rate must be a finite number, got inf"),
        ({"rate": 0.0}, r"Outer.rate must be positive, got 0.0"),
        ({"enabled": 1}, r"Outer.enabled must be a valid boolean, got 1"),
        ({"names": [1]}, r"Outer.names.0 must be a valid string, got 1"),
        ({"retries": 4}, r"Outer.retries \(4\) must not exceed count"),
        ({"colour": "red"}, r"unknown Outer keys: colour; known: count, enabled, inner, "),
        ({"inner": {"share": 0.0}}, r"Inner.share must be in \(0, 1\], got 0.0"),
        ({"inner": {"timeframe": "1x"}}, r"Inner.timeframe must be a timeframe such as"),
        ({"inner": {"depth": 2}}, r"unknown Inner keys: depth"),
    ],
)
def test_every_bad_value_is_a_config_error_naming_owner_field_and_value(
    values: dict[str, object], message: str
) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=message):
        Outer.from_dict(values)


def test_values_are_frozen_and_a_changed_copy_is_validated() -> None:
    # Arrange
    config = Outer()
    # Act / Assert
    with pytest.raises(ValidationError, match="frozen"):
        config.count = 5  # type: ignore[misc]
    assert config.replace(count=5).count == 5 and config.count == 3
    with pytest.raises(ConfigError, match=r"Outer\.count must be at least 1"):
        config.replace(count=0)
    with pytest.raises(ConfigError, match="unknown Outer keys: size"):
        config.replace(size=1)


def test_from_dict_builds_nested_configs_and_round_trips() -> None:
    # Act: lists are accepted for tuples (JSON and TOML have none), an int for a float
    config = Outer.from_dict({"names": ["x", "y"], "rate": 2, "inner": {"share": 1}})
    # Assert
    assert config.names == ("x", "y") and config.rate == 2.0 and config.inner == Inner(share=1.0)
    assert Outer.from_dict(config.as_dict()) == config
    assert Outer.from_dict(config.model_dump(mode="json")) == config


def test_config_hash_is_canonical_and_sees_every_value() -> None:
    # Arrange
    config = Outer(names=("x",))
    # Act
    digest = config_hash(config)
    # Assert
    assert len(digest) == 16 and int(digest, 16) >= 0
    assert config_hash(Outer(names=("x",))) == digest
    assert config_hash(config.model_dump(mode="json")) == digest  # e.g. read back from a tag
    assert config_hash(dict(reversed(config.as_dict().items()))) == digest  # order-free
    assert config_hash(config.replace(inner=Inner(share=0.25))) != digest
    both = config_hash({"outer": config, "inner": Inner()})
    assert both == config_hash({"inner": Inner(), "outer": config}) != digest
