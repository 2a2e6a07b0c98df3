"""Configuration: one TOML file plus `GENGATE_*` environment variables (env wins).

Settings are built by `load_settings`, never at import time, so tests and the CLI
can point gengate at any file, data dir or database.
"""

from __future__ import annotations

import os
import re
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

DEFAULT_CONFIG_FILE = Path("gengate.toml")
_RATE = re.compile(r"^\s*([1-9]\d*)\s*/\s*(second|minute|hour)\s*$")
_PERIOD_S = {"second": 1, "minute": 60, "hour": 3600}
#: Delays before each webhook attempt (Standard Webhooks guidance): at once, 5 s, 5 min,
#: 30 min, 2 h, 5 h, 10 h, 14 h, 20 h, 24 h.
DEFAULT_WEBHOOK_SCHEDULE_S: tuple[float, ...] = (
    *(0, 5, 300, 1800, 7200),
    *(18_000, 36_000, 50_400, 72_000, 86_400),
)


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


#: SigV4 presigned URLs live at most 7 days, and link expiries are rounded up to the hour.
S3_MAX_LINK_TTL_S = 7 * 86_400 - 3_600


class StorageConfig(BaseModel):
    """Where output and upload files live: `local` (the data dir's `files/` folder,
    served by gengate) or `s3` (an S3-compatible bucket, serving presigned links)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["local", "s3"] = "local"
    bucket: str | None = Field(None, min_length=1, max_length=255)
    prefix: str = Field("", max_length=200, description="a folder inside the bucket")
    endpoint_url: str | None = Field(None, description="for S3-compatible services, not AWS")
    region: str = "us-east-1"
    access_key_id: str | None = None
    secret_access_key: SecretStr | None = None
    addressing_style: Literal["auto", "virtual", "path"] = "auto"

    @model_validator(mode="after")
    def _bucket_for_s3(self) -> StorageConfig:
        if self.backend == "s3" and not self.bucket:
            raise ValueError("storage.bucket is required when storage.backend is 's3'")
        return self


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
    webhooks_deliver: bool = Field(True, description="run the webhook delivery loop here")
    webhooks_timeout_s: float = Field(10.0, gt=0, le=300)
    webhooks_concurrency: int = Field(32, ge=1, le=1000)
    webhooks_retry_schedule_s: list[float] = Field(
        default_factory=lambda: list(DEFAULT_WEBHOOK_SCHEDULE_S), min_length=1, max_length=50
    )
    webhooks_jitter: float = Field(0.1, ge=0, le=1)
    webhooks_secret_overlap_s: float = Field(86_400.0, ge=0)
    max_body_bytes: int = 4 * 1024 * 1024

    link_ttl_s: int = Field(86_400, ge=60)
    retention_days: float = Field(7.0, gt=0)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1)
    upload_ttl_s: int = Field(86_400, ge=60, description="uploads are deleted after this long")
    # Input media URLs (`image_url`, `audio_url`) get their own switch, apart from
    # webhooks: a fetched file comes back to the caller inside the output, so letting it
    # reach private hosts would expose what they serve, not just knock on them.
    media_allow_private: bool = Field(
        False, description="let media URLs in inputs reach loopback and private addresses"
    )
    media_max_bytes: int = Field(20 * 1024 * 1024, ge=1, description="largest input media file")
    media_fetch_timeout_s: float = Field(
        30.0, gt=0, le=600, description="deadline for fetching one input media URL"
    )
    job_retention_days: float = Field(
        30.0, gt=0, description="finished job records are deleted after this long"
    )

    lease_ttl_s: float = Field(30.0, gt=0)
    reaper_interval_s: float = Field(1.0, gt=0)
    poll_interval_s: float = Field(1.0, gt=0)
    progress_interval_s: float = Field(0.5, ge=0)
    shutdown_grace_s: float = Field(10.0, ge=0)
    claim_batch: int = Field(32, ge=1, le=1000)
    # Event streams wake on notifications and also re-read on this timer, so a lost
    # notification (a relay reconnecting, split SQLite processes) costs this much latency.
    events_poll_interval_s: float = Field(1.0, gt=0, le=60)
    events_keepalive_s: float = Field(
        15.0, gt=0, le=300, description="seconds between keep-alive comments of event streams"
    )
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

    @field_validator("webhooks_retry_schedule_s")
    @classmethod
    def _valid_webhook_schedule(cls, value: list[float]) -> list[float]:
        if any(delay < 0 or delay > 30 * 86_400 for delay in value):
            raise ValueError("webhook retry delays must be between 0 and 30 days")
        return value

    @model_validator(mode="after")
    def _links_fit_the_storage(self) -> Settings:
        if self.storage.backend == "s3" and self.link_ttl_s > S3_MAX_LINK_TTL_S:
            raise ValueError(
                f"link_ttl_s is at most {S3_MAX_LINK_TTL_S} with the s3 storage backend "
                "(presigned URLs live at most 7 days)"
            )
        return self

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
