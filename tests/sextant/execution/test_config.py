"""ExecutionConfig: the strict config style, and the kernels' array layout."""

from __future__ import annotations

import pytest

from sextant.config import config_hash
from sextant.errors import ConfigError
from sextant.execution import ExecutionConfig
from sextant.execution import _kernels as k


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"taker_fee": 0.2}, r"ExecutionConfig\.taker_fee must be in \[0, 0\.1\], got 0\.2"),
        ({"initial_equity": 0.0}, r"ExecutionConfig\.initial_equity must be positive"),
        ({"volume_window": 0}, r"ExecutionConfig\.volume_window"),
        ({"apply_funding": 1}, r"ExecutionConfig\.apply_funding"),
        ({"maker_fee": True}, r"ExecutionConfig\.maker_fee"),
        ({"slippage_base_bps": float("nan")}, r"ExecutionConfig\.slippage_base_bps"),
        ({"slipage_base_bps": 1.0}, r"unknown ExecutionConfig keys: slipage_base_bps"),
    ],
)
def test_bad_values_are_config_errors_naming_the_field(
    values: dict[str, object], message: str
) -> None:
    # Act / Assert
    with pytest.raises(ConfigError, match=message):
        ExecutionConfig.from_dict(values)


def test_the_array_follows_the_kernel_layout_and_the_hash_follows_the_values() -> None:
    # Arrange
    config = ExecutionConfig(taker_fee=0.001, volume_window=9, take_profit_maker=False)
    # Act
    array = config.to_array()
    # Assert
    assert array.shape == (k.EX_SIZE,)
    assert array[k.EX_TAKER] == 0.001 and array[k.EX_VOL_ALPHA] == pytest.approx(0.2)
    assert array[k.EX_TP_MAKER] == 0.0 and array[k.EX_FUNDING] == 1.0
    assert config_hash(config) != config_hash(ExecutionConfig())
    assert config_hash(config) == config_hash(ExecutionConfig.from_dict(config.as_dict()))
