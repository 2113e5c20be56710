"""Settings: SEXTANT_ prefix, .env support, strictness, frozen values, clear errors."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from sextant.errors import ConfigError
from sextant.settings import load_settings


def test_defaults(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SEXTANT_HOME", raising=False)
    settings = load_settings()
    assert settings.home == Path(".sextant")
    assert settings.paths.market_db == tmp_path / ".sextant" / "market.duckdb"
    assert settings.telemetry is False


def test_environment_and_dotenv(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text(
        'SEXTANT_SYMBOLS=["SOL/USDT"]\nSEXTANT_FNG_PUBLICATION_LAG=PT2H\nSEXTANT_TIMEFRAME=4h\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("SEXTANT_TIMEFRAME", "15m")  # the environment wins over .env
    settings = load_settings()
    assert settings.symbols == ("SOL/USDT",)
    assert settings.fng_publication_lag == timedelta(hours=2)
    assert settings.timeframe == "15m"


def test_unknown_key_in_dotenv_is_an_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("SEXTANT_TIMEFRAMES=1h\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="SEXTANT_TIMEFRAMES"):
        load_settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SEXTANT_TIMEFRAME", "7x"),
        ("SEXTANT_CCXT_API_URL", "127.0.0.1:8080"),
        ("SEXTANT_CCXT_MAX_TRIES", "0"),
    ],
)
def test_invalid_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, value: str
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        load_settings()


def test_settings_are_frozen(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings()
    with pytest.raises(Exception, match="frozen"):
        settings.timeframe = "4h"  # type: ignore[misc]


def test_store_settings_default_to_the_embedded_stores_under_the_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    settings = load_settings(home=tmp_path / "h")
    mlflow_dir = tmp_path / "h" / "mlflow"
    assert settings.feast_online_store == {"type": "sqlite"}
    assert settings.feast_offline_store == {"type": "duckdb"}
    assert settings.tracking_uri == f"sqlite:///{mlflow_dir / 'mlflow.db'}"
    assert settings.registry_uri == settings.tracking_uri
    assert settings.artifact_root == (mlflow_dir / "artifacts").as_uri()


def test_store_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(
        "SEXTANT_FEAST_ONLINE_STORE", '{"type": "redis", "connection_string": "cache:6379"}'
    )
    monkeypatch.setenv("SEXTANT_MLFLOW_TRACKING_URI", "http://tracking:5000")
    settings = load_settings()
    assert settings.feast_online_store == {"type": "redis", "connection_string": "cache:6379"}
    assert settings.registry_uri == "http://tracking:5000"
    assert settings.artifact_root is None  # the tracking server's own artifact root


def test_a_feast_store_block_needs_a_type(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SEXTANT_FEAST_OFFLINE_STORE", '{"path": "x"}')
    with pytest.raises(ConfigError, match=r"SEXTANT_FEAST_OFFLINE_STORE.*type"):
        load_settings()
