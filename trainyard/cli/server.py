"""The operator's commands: run the whole service, or one of its processes."""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from config.settings import get_settings
from trainyard.commands import api_command, worker_command

Host = Annotated[str | None, typer.Option(help="default: TRAINYARD_API_HOST (127.0.0.1); 0.0.0.0 serves "
                                                "other machines")]
Port = Annotated[int | None, typer.Option(help="default: TRAINYARD_API_PORT (8000)")]


def serve(host: Host = None, port: Port = None,
          data_dir: Annotated[Path | None, typer.Option(help="where SQLite and embedded Redis keep data")] = None,
          workers: Annotated[int, typer.Option(help="worker processes (one job each at a time)")] = 1) -> None:
    """Run API, worker and (without REDIS_URL) an embedded Redis on this machine."""
    from trainyard.stack import Stack

    settings = get_settings()
    stack = Stack(host=host or settings.api_host, port=port or settings.api_port,
                  data_dir=data_dir or settings.data_dir, workers=workers)
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    redis = "" if os.environ.get("REDIS_URL") else ", embedded Redis"
    print(f"Starting Trainyard (API, worker{redis}) ...", flush=True)
    stack.start()
    url = stack.base_url
    print(f"Trainyard is running.\n  Dashboard: {url}/\n  API:       {url}/v1  (docs: {url}/docs)\n"
          f"  Database:  {stack.database_url}\n  Press Ctrl-C to stop.", flush=True)
    code = 0
    try:
        while not stopping:
            dead = stack.dead_child()
            if dead:
                print(f"trainyard: {dead.name} exited with {dead.proc.returncode}; stopping", file=sys.stderr)
                code = 1
                break
            time.sleep(0.5)
    finally:
        print("Stopping Trainyard ...", flush=True)
        stack.stop()
    raise typer.Exit(code)


def migrate() -> None:
    """Upgrade the database schema (alembic upgrade head on DATABASE_URL)."""
    from migrations import upgrade

    upgrade(get_settings().resolved_database_url)


def api(host: Host = None, port: Port = None) -> None:
    """Run only the API (after migrating the database)."""
    migrate()
    settings = get_settings()
    command = api_command(host or settings.api_host, port or settings.api_port)
    os.execv(command[0], command)


def worker(pool: Annotated[str, typer.Option(help="Celery pool")] = "solo",
           concurrency: Annotated[int, typer.Option(help="tasks at once")] = 1,
           gpus: Annotated[str | None, typer.Option(help="GPUs this host's workers use: all, none or e.g. 0,1,3 "
                                                         "(default: TRAINYARD_GPUS, all)")] = None,
           processes: Annotated[int, typer.Option(help="worker processes sharing those GPUs, one job each at a "
                                                       "time (default: one per GPU; 1 without GPUs)")] = 0) -> None:
    """Run this host's Celery workers (after migrating the database): with GPUs on the GPU
    queue, one process per GPU by default, each job holding the GPUs it asks for; without,
    one process on the CPU queue. Several processes are supervised (restarted when one dies)."""
    from config import queues
    from trainyard.commands import worker_environment
    from trainyard.processes import Child, supervise

    migrate()
    try:
        env, n_gpus = worker_environment(gpus, dict(os.environ))
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--gpus") from exc
    queue = queues.name(get_settings().queue, queues.GPU if n_gpus else queues.CPU)
    n = processes or max(n_gpus, 1)
    if n == 1:
        command = worker_command(queue, pool=pool, concurrency=concurrency)
        os.execve(command[0], command, env)
        return  # (execve does not return, except where a test replaced it)
    children = [Child(f"worker-{i}", worker_command(queue, pool=pool, concurrency=concurrency,
                                                    hostname=f"worker{i}@%h"), env, stop_timeout=60)
                for i in range(n)]
    stopping = False

    def _stop(signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    print(f"trainyard worker: {n} processes on {queue}" + (f" sharing {n_gpus} GPUs" if n_gpus else ""), flush=True)
    for child in children:
        child.start()
    supervise(children, lambda: stopping, report=lambda m: print(f"trainyard worker: {m}", file=sys.stderr))
