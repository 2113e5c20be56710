"""Typed, frozen, strict settings read from ``SEXTANT_*`` environment variables and ``.env``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from sextant.errors import ConfigError
from sextant.paths import StatePaths
from sextant.timeframes import timeframe_ms

__all__ = ["PositiveFloat", "PositiveInt", "Settings", "load_settings"]

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


class Settings(BaseSettings):
    """Every knob of sextant; unknown ``SEXTANT_*`` keys are errors, values are immutable."""

    model_config = SettingsConfigDict(
        env_prefix="SEXTANT_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="forbid",
        frozen=True,
    )

    home: Path = Path(".sextant")
    log_level: str = "INFO"
    telemetry: bool = (
        False  # third-party telemetry (Prefect, MLflow, LangChain, Feast) stays off unless True
    )

    # market data
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    timeframe: str = "1h"
    exchange: str = "binance"
    candle_source: str = "auto"  # stored source the features use; auto = the freshest, then longest
    ccxt_api_url: str | None = (
        None  # replaces scheme+host of every REST endpoint (proxy, testnet, loopback)
    )
    ccxt_page_limit: PositiveInt = 1000
    ccxt_max_tries: PositiveInt = 5
    ccxt_backoff_s: PositiveFloat = 1.0
    ccxt_backoff_max_s: PositiveFloat = 60.0
    http_timeout_s: PositiveFloat = 30.0
    http_max_tries: PositiveInt = 5  # Fear & Greed and news feeds
    http_backoff_s: PositiveFloat = 1.0
    http_backoff_max_s: PositiveFloat = 60.0

    # orchestration: retries of a failed flow task (transient source errors only)
    task_retries: Annotated[int, Field(ge=0)] = 3
    task_retry_delay_s: PositiveFloat = 5.0  # first delay; doubles per retry

    # alternative data
    fng_url: str = "https://api.alternative.me/fng/"
    fng_publication_lag: timedelta = timedelta(
        hours=1
    )  # a day's value is published after 00:00 UTC
    news_feeds: tuple[str, ...] = ()
    news_publication_lag: timedelta = timedelta(
        0
    )  # extra delay for archived headlines, see docs/data.md

    @field_validator("timeframe")
    @classmethod
    def _known_timeframe(cls, value: str) -> str:
        try:
            timeframe_ms(value)
        except ConfigError as exc:  # pydantic reports ValueErrors with the field's name
            raise ValueError(str(exc)) from exc
        return value

    @field_validator("ccxt_api_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"expected http(s)://host[:port], got {value!r}")
        return value

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.home.expanduser().resolve())


def load_settings(**overrides: object) -> Settings:
    """Read settings from the environment and ``.env``; ``overrides`` win. Raises ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(
            f"SEXTANT_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigError(f"invalid settings: {problems}") from exc
