"""Alembic migrations for store's schema, shipped inside the package."""
from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

HERE = Path(__file__).resolve().parent


def alembic_config(database_url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    cfg.attributes["database_url"] = database_url
    return cfg


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the database at ``database_url`` to ``revision`` (safe to run concurrently); an
    SQLite file is converted to incremental auto-vacuum once, so deletions free disk space."""
    from store.db import get_engine
    from store.storage import ensure_incremental_vacuum

    command.upgrade(alembic_config(database_url), revision)
    ensure_incremental_vacuum(get_engine(database_url))
