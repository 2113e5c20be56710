"""Typed, frozen, strict settings read from ``SEXTANT_*`` environment variables and ``.env``."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    AliasChoices,
    Field,
    JsonValue,
    SecretStr,
    ValidationError,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict

from sextant.config import NonNegativeInt, PositiveFloat, PositiveInt, Timeframe
from sextant.errors import ConfigError
from sextant.paths import StatePaths

__all__ = ["FeastStoreBlock", "Settings", "load_settings"]


def _typed_block(value: dict[str, JsonValue]) -> dict[str, JsonValue]:
    kind = value.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f'needs a "type" (e.g. "sqlite", "redis", "duckdb"), got {value!r}')
    return value


# One Feast store block as feature_store.yaml would hold it: {"type": ..., <that store's fields>};
# Feast validates the fields of its type.
FeastStoreBlock = Annotated[dict[str, JsonValue], AfterValidator(_typed_block)]


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
        False  # third-party telemetry (Prefect, MLflow, LangChain, Feast, FastAPI) off unless True
    )

    # market data
    symbols: tuple[str, ...] = ("BTC/USDT", "ETH/USDT")
    timeframe: Timeframe = "1h"  # also what decision sizing annualizes with (bars per year)
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
    task_retries: NonNegativeInt = 3
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

    # stores: the embedded defaults need no server; pointing these elsewhere (Feast on Redis and a
    # warehouse, an MLflow tracking server) is the scale-out path, with no code change
    # Feast's online_store block; sqlite's path defaults to <home>/feast/online.db
    feast_online_store: FeastStoreBlock = {"type": "sqlite"}
    # Feast's offline_store block; duckdb reads the parquet tables under <home>/features
    feast_offline_store: FeastStoreBlock = {"type": "duckdb"}
    mlflow_tracking_uri: str | None = None  # None: sqlite:///<home>/mlflow/mlflow.db
    mlflow_registry_uri: str | None = None  # None: the tracking URI
    # where experiments created here keep artifacts; None: <home>/mlflow/artifacts, except with
    # an http(s) tracking server, whose own artifact root then applies
    mlflow_artifact_root: str | None = None
    # the online decision service (`sextant serve`) and paper trading (`trade` flow)
    paper_account: str = "paper"  # the decisions store account the service and `trade` act on
    admin_token: SecretStr | None = None  # bearer token of /v1/admin/*; unset: admin disabled
    reload_interval_s: PositiveFloat = 30.0  # how often the service polls the champion aliases
    max_body_bytes: PositiveInt = 65_536  # request bodies above this are refused (413)

    # the LLM explainer (agents.explain.llm_agent): used when OPENAI_BASE_URL or OPENAI_API_KEY
    # is set (any OpenAI-compatible server); otherwise explanations are the offline ones. The two
    # OPENAI_* variables keep their usual names (no SEXTANT_ prefix); the key is never logged
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_API_KEY", "openai_api_key")
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OPENAI_BASE_URL", "openai_base_url")
    )
    llm_model: str = "gpt-4o-mini"  # the model name the server serves
    llm_timeout_s: PositiveFloat = 60.0  # wall-clock limit of one answer, retries included
    llm_max_tokens: PositiveInt = 1_024  # completion tokens per model call
    llm_token_budget: PositiveInt = 32_000  # prompt + completion tokens per answer, all calls
    llm_max_tool_calls: PositiveInt = 8  # evidence tool calls per attempt (the answer excluded)

    @field_validator("ccxt_api_url")
    @classmethod
    def _absolute_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"expected http(s)://host[:port], got {value!r}")
        return value

    @field_validator("openai_base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in {"http", "https"} or not parts.netloc:
            raise ValueError(f"expected http(s)://host[:port][/v1], got {value!r}")
        return value

    @field_validator("openai_api_key")
    @classmethod
    def _key_or_unset(cls, value: SecretStr | None) -> SecretStr | None:
        return value if value is not None and value.get_secret_value() else None

    @field_validator("mlflow_tracking_uri", "mlflow_registry_uri", "mlflow_artifact_root")
    @classmethod
    def _unset_if_empty(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("admin_token")
    @classmethod
    def _token_or_unset(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value():
            return None
        if len(value.get_secret_value()) < 16:
            raise ValueError("must be at least 16 characters (or unset to disable admin)")
        return value

    @field_validator("paper_account")
    @classmethod
    def _account_name(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must be a non-empty name")
        return value

    @property
    def paths(self) -> StatePaths:
        return StatePaths(self.home.expanduser().resolve())

    @property
    def tracking_uri(self) -> str:
        """MLflow's tracking store: the setting, else the home's sqlite database."""
        return self.mlflow_tracking_uri or f"sqlite:///{self.paths.mlflow_dir / 'mlflow.db'}"

    @property
    def registry_uri(self) -> str:
        """MLflow's model registry: the setting, else the tracking store."""
        return self.mlflow_registry_uri or self.tracking_uri

    @property
    def artifact_root(self) -> str | None:
        """Where experiments created here keep artifacts (None: the tracking server decides)."""
        if self.mlflow_artifact_root:
            return self.mlflow_artifact_root
        if urlsplit(self.tracking_uri).scheme in {"http", "https"}:
            return None
        return (self.paths.mlflow_dir / "artifacts").as_uri()


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
