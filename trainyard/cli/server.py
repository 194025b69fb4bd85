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
           concurrency: Annotated[int, typer.Option(help="tasks at once")] = 1) -> None:
    """Run only a Celery worker on TRAINYARD_QUEUE (after migrating the database)."""
    migrate()
    command = worker_command(get_settings().queue, pool=pool, concurrency=concurrency)
    os.execv(command[0], command)
