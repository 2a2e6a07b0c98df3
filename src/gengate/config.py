"""Configuration: one TOML file plus `GENGATE_*` environment variables (env wins).

Settings are built by `load_settings`, never at import time, so tests and the CLI
can point gengate at any file, data dir or database.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("gengate.toml")
_RATE = re.compile(r"^\s*([1-9]\d*)\s*/\s*(second|minute|hour)\s*$")
_PERIOD_S = {"second": 1, "minute": 60, "hour": 3600}


class ModelConfig(BaseModel):
    """One model as the operator configures it; unset fields keep the provider's defaults."""

    model_config = ConfigDict(extra="forbid")

    provider: str | None = Field(None, description="provider name; defaults to the model id")
    enabled: bool = True
    description: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    price_credits: Decimal | None = Field(None, ge=0, description="credits per pricing unit")
    concurrency: int | None = Field(
        None, ge=1, le=10_000, description="jobs one worker process runs at once"
    )
    max_running: int | None = Field(
        None, ge=1, description="jobs running at once across the whole fleet (None: no cap)"
    )
    sync_window_s: float = Field(55.0, ge=0, le=600)
    timeout_s: int = Field(600, ge=1, le=86_400)
    max_attempts: int = Field(3, ge=1, le=100)
    queue_ttl_s: int = Field(86_400, ge=1)
    queue_depth: int = Field(10_000, ge=1)
    retry_base_s: float = Field(2.0, ge=0)
    retry_cap_s: float = Field(300.0, ge=0)


class RateLimit(BaseModel):
    """A token bucket: `limit` requests per `period_s`, holding one period's worth."""

    limit: int
    period_s: int

    @property
    def per_second(self) -> float:
        return self.limit / self.period_s


def parse_rate_limit(text: str) -> RateLimit | None:
    if text.strip().lower() in {"off", "none", "0", ""}:
        return None
    match = _RATE.match(text.lower())
    if not match:
        raise ValueError(f"rate limit must look like '1200/minute' or 'off', not {text!r}")
    return RateLimit(limit=int(match.group(1)), period_s=_PERIOD_S[match.group(2)])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="GENGATE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path("./gengate-data")
    database_url: str | None = None
    public_url: str | None = None
    secret_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8000

    rate_limit: str = "1200/minute"
    webhooks_allow_private: bool = False
    max_body_bytes: int = 4 * 1024 * 1024

    link_ttl_s: int = Field(86_400, ge=60)
    retention_days: float = Field(7.0, gt=0)
    job_retention_days: float = Field(
        30.0, gt=0, description="finished job records are deleted after this long"
    )

    lease_ttl_s: float = Field(30.0, gt=0)
    reaper_interval_s: float = Field(1.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    progress_interval_s: float = Field(0.5, ge=0)
    shutdown_grace_s: float = Field(10.0, ge=0)
    claim_batch: int = Field(32, ge=1, le=1000)
    cpu_threads: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)

    bootstrap_credits: Decimal = Decimal(1000)
    log_level: str = "INFO"
    access_log: bool = True

    models: dict[str, ModelConfig] = Field(default_factory=dict)

    @field_validator("rate_limit")
    @classmethod
    def _valid_rate_limit(cls, value: str) -> str:
        parse_rate_limit(value)
        return value

    @property
    def rate_limit_policy(self) -> RateLimit | None:
        return parse_rate_limit(self.rate_limit)

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'gengate.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `config_file` (or `$GENGATE_CONFIG`, or ./gengate.toml when present),
    the environment, and explicit overrides (which win over both)."""
    if config_file is None:
        env_file = os.environ.get("GENGATE_CONFIG")
        if env_file:
            config_file = Path(env_file)
        elif DEFAULT_CONFIG_FILE.is_file():
            config_file = DEFAULT_CONFIG_FILE
    if config_file is not None and not config_file.is_file():
        raise FileNotFoundError(f"config file not found: {config_file}")

    class FileSettings(Settings):
        model_config = SettingsConfigDict(toml_file=config_file)

    clean = {key: value for key, value in overrides.items() if value is not None}
    return FileSettings(**clean)
