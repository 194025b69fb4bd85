"""An in-process API client over a real database (SQLite and PostgreSQL) and a real Redis."""
from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from config.settings import Settings, get_settings
from store.db import session_scope
from store.models import Checkpoint, Dataset, Job, Metric


@pytest.fixture
def settings(database_url, embedded_redis_url) -> Settings:
    return Settings(database_url=database_url, redis_url=embedded_redis_url, queue=f"test-{uuid.uuid4().hex[:8]}")


@pytest.fixture
def client(settings):
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c


@pytest.fixture
def row_counts(settings):
    """Counts rows of every table, to prove a rejected request wrote nothing."""

    def counts() -> dict[str, int]:
        with session_scope(settings.resolved_database_url) as s:
            return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                    for m in (Dataset, Job, Metric, Checkpoint)}

    return counts
