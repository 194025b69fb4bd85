"""The whole service on one machine: embedded Redis (when no REDIS_URL), migrations, the
API (uvicorn) and a Celery worker. ``trainyard serve`` and the end-to-end tests both use it."""
from __future__ import annotations

import os
import time
from pathlib import Path

import httpx

from config import queues
from config.settings import settings_from
from migrations import upgrade
from trainyard.commands import api_command, redis_server_command, worker_command, worker_environment
from trainyard.processes import Child, free_port, wait_for_port


class Stack:
    """Starts and stops the service's processes. ``env`` overrides the environment
    (DATABASE_URL, REDIS_URL, TRAINYARD_*); unset URLs select the embedded default."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 8000, data_dir: str | Path = ".trainyard",
                 env: dict[str, str] | None = None, log_file: Path | None = None, workers: int = 1):
        self.host, self.port, self.n_workers = host, port, workers
        self.data_dir = Path(data_dir).resolve()
        self.env = {**os.environ, **(env or {})}
        self.env["TRAINYARD_DATA_DIR"] = str(self.data_dir)
        self.log_file = log_file
        self.children: list[Child] = []
        self.workers: list[Child] = []
        self._out = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def database_url(self) -> str:
        return settings_from(self.env).resolved_database_url

    def start(self) -> Stack:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._out = out = open(self.log_file, "ab") if self.log_file else None
        try:
            if not self.env.get("REDIS_URL"):
                self._start_embedded_redis(out)
            self.env["DATABASE_URL"] = self.database_url
            upgrade(self.database_url)
            api = Child("api", api_command(self.host, self.port, log_level="warning"), self.env, stop_timeout=10)
            self.children.append(api.start(out))
            for i in range(self.n_workers):
                self.start_worker(i)
            wait_for_port(self.host, self.port, 60, api.proc)
            self._wait_healthy(60)
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, index: int) -> Child:
        """Start (or restart) worker ``index``: a Celery worker running one job at a time."""
        env, n_gpus = worker_environment(None, self.env)
        queue = queues.name(settings_from(env).queue, queues.GPU if n_gpus else queues.CPU)
        worker = Child(f"worker-{index}", worker_command(queue, hostname=f"trainyard-{os.getpid()}-{index}@%h"),
                       env, stop_timeout=30)
        worker.start(self._out)
        if index < len(self.workers):
            self.children[self.children.index(self.workers[index])] = worker
            self.workers[index] = worker
        else:
            self.workers.append(worker)
            self.children.append(worker)
        return worker

    def _start_embedded_redis(self, out) -> None:
        port = free_port()
        redis = Child("redis", redis_server_command(port, self.data_dir, persistent=True), self.env, stop_timeout=10)
        self.children.append(redis.start(out))
        wait_for_port("127.0.0.1", port, 20, redis.proc)
        self.env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"

    def _wait_healthy(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = httpx.get(f"{self.base_url}/v1/health", timeout=2)
                if last.status_code == 200:
                    return
            except httpx.HTTPError as exc:
                last = exc
            time.sleep(0.2)
        raise TimeoutError(f"API not healthy within {timeout}s: {last}")

    def dead_child(self) -> Child | None:
        return next((c for c in self.children if not c.alive()), None)

    def stop(self) -> None:
        """Stop the workers (each checkpoints and requeues its job), the API, then Redis."""
        for child in reversed(self.children):
            child.stop()
        self.children.clear()
        self.workers.clear()
        if self._out:
            self._out.close()
            self._out = None
