"""``trainyard``: serve (everything, embedded default), api, worker, migrate."""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from config.settings import get_settings
from trainyard.commands import api_command, worker_command


def _serve(args: argparse.Namespace) -> int:
    from trainyard.stack import Stack

    settings = get_settings()
    stack = Stack(host=args.host, port=args.port, data_dir=args.data_dir or settings.data_dir, workers=args.workers)
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
    return code


def _migrate(_: argparse.Namespace) -> int:
    from migrations import upgrade

    upgrade(get_settings().resolved_database_url)
    return 0


def _api(args: argparse.Namespace) -> int:
    _migrate(args)
    command = api_command(args.host, args.port)
    os.execv(command[0], command)


def _worker(args: argparse.Namespace) -> int:
    _migrate(args)
    command = worker_command(get_settings().queue, pool=args.pool, concurrency=args.concurrency)
    os.execv(command[0], command)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="trainyard", description="Training as a service.")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run API, worker and (without REDIS_URL) an embedded Redis")
    settings = get_settings()
    serve.add_argument("--host", default=settings.api_host)
    serve.add_argument("--port", type=int, default=settings.api_port)
    serve.add_argument("--data-dir", default=None, help="where SQLite and embedded Redis keep data")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (one job each at a time)")
    serve.set_defaults(func=_serve)
    api = sub.add_parser("api", help="run only the API (after migrating the database)")
    api.add_argument("--host", default=settings.api_host, help="TRAINYARD_API_HOST; 0.0.0.0 to serve other machines")
    api.add_argument("--port", type=int, default=settings.api_port, help="TRAINYARD_API_PORT")
    api.set_defaults(func=_api)
    worker = sub.add_parser("worker", help="run only a Celery worker (after migrating the database)")
    worker.add_argument("--pool", default="solo")
    worker.add_argument("--concurrency", type=int, default=1)
    worker.set_defaults(func=_worker)
    sub.add_parser("migrate", help="upgrade the database schema").set_defaults(func=_migrate)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
