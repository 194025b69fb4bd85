"""Queued jobs recover within seconds of an outage ending, under the DEFAULT supervision
settings (requeue_after_s stays 300 s: what used to hide the stall), with real Celery workers
over the machine's PostgreSQL and a private redis-server this test stops, starts and flushes.

- jobs submitted while Redis is down: each is sent by the reaper's next pass once it is back
  (a job is marked sent only after the broker accepted its message);
- the broker loses its data (FLUSHALL) with jobs queued: the reaper sees its marker gone and
  sends every queued job again;
- the workers' database is cut (a TCP proxy) while messages arrive: each message that met
  the outage is retried, never dropped;
- a job whose worker was SIGKILLed is cancelled at once, spending no attempt.
Each reports tried / refused / lost / duplicated / recovery time.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC
from pathlib import Path

import httpx
import pytest
import redis as redis_lib
from sqlalchemy.engine import make_url

from tests.e2e.helpers import MLP_SPEC, digits, post_dataset
from tests.e2e.test_resilience import assert_history_exact, job_rows, terminal, wait_until
from trainyard.commands import redis_server_command
from trainyard.processes import Child, free_port, wait_for_port
from trainyard.stack import Stack

pytestmark = pytest.mark.e2e

RECOVERY_S = 30.0  # the bound: every queued job started within 30 s of the services being back
TRAINING = {"epochs": 2, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.003}, "seed": 5,
            "validation_split": 0.2}


class Broker:
    """A private redis-server on its own port (never the machine's), without persistence."""

    def __init__(self, tmp_path: Path):
        self.port = free_port()
        self.args = redis_server_command(self.port, tmp_path, persistent=False)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.child: Child | None = None

    def start(self) -> Broker:
        self.child = Child("redis", self.args, dict(os.environ)).start(subprocess.DEVNULL)
        wait_for_port("127.0.0.1", self.port, 20, self.child.proc)
        return self

    def stop(self) -> None:
        if self.child is not None:
            self.child.stop()
            self.child = None


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut (connections dropped and refused)."""

    def __init__(self, host: str, port: int):
        self.target = (host, port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._lock = threading.Lock()

    def start(self) -> Proxy:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def cut(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            try:
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked on it; close alone does not
            except OSError:
                pass
            listener.close()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # cut
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.close()
                except OSError:
                    pass


def _stack(tmp_path_factory, name: str, *, database_url: str, redis_url: str, workers: int) -> Stack:
    data_dir = tmp_path_factory.mktemp(name)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "TRAINYARD_QUEUE": f"test-{uuid.uuid4().hex[:8]}"}
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=Path(data_dir) / "stack.log", workers=workers)
    for setting in ("LEASE_S", "REAPER_INTERVAL_S", "REQUEUE_AFTER_S"):  # the defaults, whatever our environment
        stack.env.pop(f"TRAINYARD_{setting}", None)
    return stack.start()


def _submit(client: httpx.Client, dataset_id: str, **training) -> httpx.Response:
    return client.post("/v1/jobs", json={"name": "recovery", "dataset_id": dataset_id, "model": MLP_SPEC,
                                         "training": {**TRAINING, **training}})


def _started(stack: Stack, ids: list[str]):
    rows = job_rows(stack, ids)
    return rows if all(j.started_at is not None for j in rows.values()) else None


def _starts(stack: Stack, ids: list[str], since: float) -> str:
    """When the jobs started, in seconds after the wall-clock time ``since``: first and last."""
    times = sorted((j.started_at if j.started_at.tzinfo else j.started_at.replace(tzinfo=UTC)).timestamp() - since
                   for j in job_rows(stack, ids).values())
    return f"first started {times[0]:.1f}s, last {times[-1]:.1f}s after"


def _check_all_ran_once(stack: Stack, ids: list[str]) -> dict:
    rows = wait_until(lambda: terminal(stack, ids), 240, "the jobs to finish", interval=0.5)
    assert {j.status for j in rows.values()} == {"succeeded"}, {j.id: j.error for j in rows.values()}
    assert {j.attempt for j in rows.values()} == {1}  # none trained twice
    for job_id in ids:
        assert_history_exact(stack, job_id, rows[job_id].total_steps)  # one loss per step
    return rows


def test_jobs_submitted_while_redis_is_down_run_once_it_is_back(tmp_path_factory, postgres_url, tmp_path):
    broker = Broker(tmp_path).start()
    stack = _stack(tmp_path_factory, "redis-down", database_url=postgres_url, redis_url=broker.url, workers=4)
    try:
        x, y = digits(300)
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ds = post_dataset(client, x, y)["id"]
            broker.stop()
            answers = [_submit(client, ds) for _ in range(4)]
            accepted = [r.json()["id"] for r in answers if r.status_code == 202]
            refused = [r for r in answers if r.status_code != 202]
            assert all(r.status_code == 503 for r in refused), [r.text for r in refused]
            assert accepted, "the API accepted no job while the broker was down"
            time.sleep(6.0)  # the reapers' passes meet the outage too
            broker.start()
            back = time.time()
            wait_until(lambda: _started(stack, accepted), RECOVERY_S, "every accepted job to start", interval=0.2)
        _check_all_ran_once(stack, accepted)
        print(f"\nredis down at submit: tried 4, refused {len(refused)}, lost 0, duplicated 0; "
              f"{_starts(stack, accepted, back)} Redis was back (4 workers, requeue_after_s 300)")
    finally:
        stack.stop()
        broker.stop()


def test_broker_that_lost_its_data_gets_every_queued_job_again(tmp_path_factory, postgres_url, tmp_path):
    broker = Broker(tmp_path).start()
    stack = _stack(tmp_path_factory, "flushall", database_url=postgres_url, redis_url=broker.url, workers=4)
    try:
        x, y = digits(300)
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ds = post_dataset(client, x, y)["id"]
            blockers = [_submit(client, ds, epochs=500).json()["id"] for _ in range(4)]
            wait_until(lambda: all(j.status == "running" for j in job_rows(stack, blockers).values()), 120,
                       "every worker busy")
            queued = [_submit(client, ds).json()["id"] for _ in range(4)]
            assert redis_lib.Redis.from_url(broker.url).flushall()  # the 4 messages are gone
            flushed = time.time()
            for job_id in blockers:
                assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
            wait_until(lambda: _started(stack, queued), RECOVERY_S, "every queued job to start", interval=0.2)
        _check_all_ran_once(stack, queued)
        assert {j.status for j in job_rows(stack, blockers).values()} == {"cancelled"}
        print(f"\nbroker FLUSHALL: tried 4 queued, refused 0, lost 0, duplicated 0; "
              f"{_starts(stack, queued, flushed)} the flush (4 workers, requeue_after_s 300)")
    finally:
        stack.stop()
        broker.stop()


def test_messages_that_meet_a_database_outage_are_retried_not_dropped(tmp_path_factory, postgres_url, tmp_path):
    broker = Broker(tmp_path).start()
    url = make_url(postgres_url)
    proxy = Proxy(url.host or "127.0.0.1", url.port or 5432).start()
    stack = _stack(tmp_path_factory, "db-outage", database_url=postgres_url, redis_url=broker.url, workers=0)
    direct = stack.env["DATABASE_URL"]
    stack.env["DATABASE_URL"] = url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
    for i in range(4):  # the workers reach the database through the proxy; the API and this test directly
        stack.start_worker(i)
    stack.env["DATABASE_URL"] = direct
    try:
        x, y = digits(300)
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ds = post_dataset(client, x, y)["id"]
            first = _submit(client, ds).json()["id"]
            wait_until(lambda: terminal(stack, [first]), 120, "a first job (the workers are up)")
            proxy.cut()
            ids = [_submit(client, ds).json()["id"] for _ in range(4)]  # consumed while the database is away
            time.sleep(20.0)
            assert {j.status for j in job_rows(stack, ids).values()} == {"queued"}
            proxy.start()
            back = time.time()
            wait_until(lambda: _started(stack, ids), RECOVERY_S, "every job to start", interval=0.2)
        _check_all_ran_once(stack, ids)
        print(f"\ndatabase outage under consumed messages: tried 4, refused 0, lost 0, duplicated 0; "
              f"{_starts(stack, ids, back)} the database was back (4 workers, requeue_after_s 300)")
    finally:
        stack.stop()
        broker.stop()
        proxy.cut()


def test_cancelling_a_job_whose_worker_died_is_at_once_and_spends_no_attempt(tmp_path_factory, postgres_url,
                                                                              tmp_path):
    broker = Broker(tmp_path).start()
    stack = _stack(tmp_path_factory, "dead-cancel", database_url=postgres_url, redis_url=broker.url, workers=1)
    try:
        x, y = digits(300)
        with httpx.Client(base_url=stack.base_url, timeout=60) as client:
            ds = post_dataset(client, x, y)["id"]
            job_id = _submit(client, ds, epochs=500).json()["id"]
            wait_until(lambda: (j := job_rows(stack, [job_id])[job_id]).status == "running" and j.step > 5, 120,
                       "the job to run")
            os.killpg(stack.workers[0].proc.pid, signal.SIGKILL)  # the worker and its training child
            time.sleep(7.0)  # its lease (30 s) is still valid, but no longer renewed
            r = client.post(f"/v1/jobs/{job_id}/cancel")
            assert r.status_code == 200 and r.json()["status"] == "cancelled", r.text
            stack.start_worker(0)
            time.sleep(12.0)  # a new worker's reaper passes (every 5 s) find nothing to resume
        job = job_rows(stack, [job_id])[job_id]
        assert (job.status, job.attempt) == ("cancelled", 1)
        print("\ncancel with the worker dead: cancelled at once, attempt 1 (no lease wait, no attempt spent)")
    finally:
        stack.stop()
        broker.stop()
