"""Service settings, read once from environment variables (prefix TRAINYARD_, plus the
conventional DATABASE_URL and REDIS_URL)."""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Everything an operator can configure. Unset URLs mean the embedded default:
    SQLite in ``data_dir`` and an embedded Redis started by ``trainyard serve``."""

    model_config = SettingsConfigDict(env_prefix="TRAINYARD_", extra="ignore")

    data_dir: Path = Path(".trainyard")
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "TRAINYARD_DATABASE_URL")
    )
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("REDIS_URL", "TRAINYARD_REDIS_URL")
    )
    queue: str = "training"
    api_host: str = "127.0.0.1"
    api_port: int = 8000

    max_request_bytes: int = 64 * 1024 * 1024
    max_dataset_samples: int = 1_000_000
    max_epochs: int = 1000
    metrics_flush_every: int = 50

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'trainyard.db').resolve()}"


@lru_cache
def get_settings() -> Settings:
    return Settings()
