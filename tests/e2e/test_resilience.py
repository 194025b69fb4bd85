"""Jobs survive crashes, restarts and cancellation: real Celery worker processes, the
machine's PostgreSQL and Redis (and a private redis-server where the test restarts it).

Invariants checked: no job lost, none trained twice at once (one metric row per step,
enforced by a unique constraint and checked here), resumed jobs end bitwise equal to
uninterrupted ones, and a resume redoes at most one checkpoint interval.
"""
from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors
from sqlalchemy import create_engine, text

from store.db import session_scope
from store.models import Checkpoint, Job
from store.repositories import metrics
from tests.e2e.helpers import MLP_SPEC, digits, post_dataset
from trainyard.commands import redis_server_command
from trainyard.processes import Child, free_port, wait_for_port
from trainyard.stack import Stack

pytestmark = pytest.mark.e2e

FAST_SUPERVISION = {
    "TRAINYARD_LEASE_S": "3",
    "TRAINYARD_REAPER_INTERVAL_S": "0.5",
    "TRAINYARD_REQUEUE_AFTER_S": "4",
    "TRAINYARD_METRICS_FLUSH_EVERY": "5",
}
TRAINING = {"epochs": 3, "batch_size": 8, "optimizer": {"type": "Adam", "lr": 0.003}, "seed": 11,
            "validation_split": 0.2, "checkpoint_every": 10}


def wait_until(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def start_stack(tmp_path_factory, name: str, *, database_url: str, redis_url: str, workers: int) -> Stack:
    data_dir = tmp_path_factory.mktemp(name)
    env = {"DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "TRAINYARD_QUEUE": f"test-{uuid.uuid4().hex[:8]}", **FAST_SUPERVISION}
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=Path(data_dir) / "stack.log", workers=workers)
    stack.start()
    return stack


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, postgres_url, real_redis_url):
    """API and ten workers over the machine's PostgreSQL and Redis."""
    url = f"{postgres_url}&application_name=trainyard-resilience"
    stack = start_stack(tmp_path_factory, "cluster", database_url=url, redis_url=real_redis_url, workers=10)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def dataset_id(cluster):
    x, y = digits(400)
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        return post_dataset(client, x, y, name="digits-400")["id"]


def submit(client: httpx.Client, dataset_id: str, **training) -> str:
    body = {"name": "resilience", "dataset_id": dataset_id, "model": MLP_SPEC, "training": {**TRAINING, **training}}
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def job_rows(stack: Stack, ids: list[str]) -> dict[str, Job]:
    with session_scope(stack.database_url) as s:
        return {j.id: j for j in s.query(Job).filter(Job.id.in_(ids))}


def final_weights(stack: Stack, job_id: str) -> dict[str, np.ndarray]:
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        return load_safetensors(client.get(f"/v1/jobs/{job_id}/checkpoints/latest/download").content)


def assert_history_exact(stack: Stack, job_id: str, total_steps: int) -> list[float]:
    """One loss per step 1..total_steps, and checkpoints that only move forward in time."""
    with session_scope(stack.database_url) as s:
        losses_rows = [m for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]
        steps = [m.step for m in losses_rows]
        losses = [m.value for m in losses_rows]
        ckpt_steps = [c.step for c in
                      s.query(Checkpoint).filter(Checkpoint.job_id == job_id).order_by(Checkpoint.created_at)]
    assert steps == list(range(1, total_steps + 1)), job_id
    # a resume redoes at most the steps since the last checkpoint: a later attempt never
    # writes a checkpoint at or before a step already checkpointed
    assert ckpt_steps == sorted(set(ckpt_steps)), ckpt_steps
    return losses


def terminal(stack: Stack, ids: list[str]):
    rows = job_rows(stack, ids)
    return rows if all(j.status in ("succeeded", "failed", "cancelled") for j in rows.values()) else None


def test_twenty_jobs_survive_random_sigkills(cluster, dataset_id):
    rng = random.Random(0)
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        ids = [submit(client, dataset_id, epochs=10) for _ in range(20)]
    kills, pending, killed, recovery_s = 0, {}, {}, []

    def note_recoveries():
        rows = job_rows(cluster, ids)
        for job_id, (attempt, killed_at) in list(pending.items()):
            if rows[job_id].attempt > attempt:  # another worker took it over
                recovery_s.append(time.monotonic() - killed_at)
                del pending[job_id]
        return rows

    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and not terminal(cluster, ids) and kills < 8:
        time.sleep(rng.uniform(0.3, 1.0))
        rows = note_recoveries()
        running = {j.worker: j for j in rows.values() if j.status == "running"}
        victims = [(i, w) for i, w in enumerate(cluster.workers)
                   if w.alive() and any(k and k.endswith(f":{w.proc.pid}") for k in running)]
        if not victims:
            continue
        index, victim = rng.choice(victims)
        job = next(j for k, j in running.items() if k and k.endswith(f":{victim.proc.pid}"))
        os.killpg(victim.proc.pid, signal.SIGKILL)
        victim.proc.wait()
        pending[job.id] = (job.attempt, time.monotonic())
        killed[job.id] = job.attempt
        kills += 1
        cluster.start_worker(index)
    # a killed job is taken over when a worker frees up: with 20 jobs on 10 workers that is
    # about one job's run, 25 s on one 2-core test machine and 50-70 s on another
    wait_until(lambda: not note_recoveries() or not pending, 240, "killed jobs to be taken over")
    rows = wait_until(lambda: terminal(cluster, ids), 600, "all jobs to finish", interval=0.5)
    assert kills >= 3, "the jobs finished before the test could kill workers"
    assert {j.status for j in rows.values()} == {"succeeded"}, {j.id: j.error for j in rows.values()}
    total = rows[ids[0]].total_steps
    reference = final_weights(cluster, ids[0])
    losses = assert_history_exact(cluster, ids[0], total)
    for job_id in ids[1:]:
        assert assert_history_exact(cluster, job_id, total) == losses
        weights = final_weights(cluster, job_id)
        assert all(np.array_equal(weights[k], reference[k]) for k in reference), job_id
    recovered = [j for j in rows.values() if j.attempt > 1]
    assert all(rows[job_id].attempt > attempt for job_id, attempt in killed.items())  # each kill recovered
    print(f"\nsigkill: 20 jobs, {kills} kills, lost 0, duplicated 0, recovered {len(recovered)}, "
          f"attempts {sorted(j.attempt for j in rows.values())}, time to recover (s) "
          f"{[round(t, 1) for t in recovery_s]} (lease 3 s)")


def test_cancel_ten_running_jobs_within_ten_seconds(cluster, dataset_id):
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        ids = [submit(client, dataset_id, epochs=500) for _ in range(10)]
        wait_until(lambda: all(j.status == "running" and j.step >= 10 for j in job_rows(cluster, ids).values()),
                   120, "ten running jobs with a checkpoint")
        other = submit(client, dataset_id, epochs=1)
        started = time.monotonic()
        for job_id in ids:
            r = client.post(f"/v1/jobs/{job_id}/cancel")
            assert r.status_code == 200 and r.json()["cancel_requested"], r.text
        rows = wait_until(lambda: terminal(cluster, ids), 10, "cancelled jobs")
        took = time.monotonic() - started
        assert {j.status for j in rows.values()} == {"cancelled"}
        for job_id in ids:
            assert client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"], "checkpoints kept"
            assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 409
        assert all(w.alive() for w in cluster.workers), "cancel stops the job, not the worker"
        done = wait_until(lambda: terminal(cluster, [other]), 60, "the other job")
        assert done[other].status == "succeeded" and done[other].attempt == 1
    print(f"\ncancel: 10 running jobs cancelled in {took:.2f}s")


def test_queued_job_cancels_at_once(cluster, dataset_id):
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        blockers = [submit(client, dataset_id, epochs=50) for _ in range(10)]
        queued = submit(client, dataset_id)
        r = client.post(f"/v1/jobs/{queued}/cancel")
        assert r.status_code == 200 and r.json()["status"] == "cancelled"
        for job_id in blockers:
            client.post(f"/v1/jobs/{job_id}/cancel")
        wait_until(lambda: terminal(cluster, blockers), 20, "blockers cancelled")
        assert job_rows(cluster, [queued])[queued].attempt == 0  # never ran


def test_duplicated_message_trains_once(cluster, dataset_id):
    from celery import Celery

    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        job_id = submit(client, dataset_id, epochs=1)
    sender = Celery(broker=cluster.env["REDIS_URL"])
    for _ in range(2):
        sender.send_task("trainyard.train", args=[job_id], queue=f"{cluster.env['TRAINYARD_QUEUE']}.cpu")
    rows = wait_until(lambda: terminal(cluster, [job_id]), 60, "the job")
    time.sleep(1.0)  # let the extra deliveries be consumed
    job = job_rows(cluster, [job_id])[job_id]
    assert rows[job_id].status == "succeeded" and job.attempt == 1
    assert_history_exact(cluster, job_id, job.total_steps)


def test_sigterm_checkpoints_and_requeues_then_resumes_exactly(cluster, dataset_id):
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        reference = submit(client, dataset_id, epochs=4)
        wait_until(lambda: terminal(cluster, [reference]), 120, "the reference job")
        job_id = submit(client, dataset_id, epochs=4)
        job = wait_until(lambda: (j := job_rows(cluster, [job_id])[job_id]).status == "running" and j.step > 15 and j,
                         60, "the job to run")
        index, worker = next((i, w) for i, w in enumerate(cluster.workers) if job.worker.endswith(f":{w.proc.pid}"))
        started = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGTERM)
        worker.proc.wait(timeout=30)
        took = time.monotonic() - started
        with session_scope(cluster.database_url) as s:  # checkpointed where it stopped
            assert max(c.step for c in s.query(Checkpoint).filter(Checkpoint.job_id == job_id)) > 15
        cluster.start_worker(index)
        rows = wait_until(lambda: terminal(cluster, [job_id]), 120, "the resumed job")
        assert rows[job_id].status == "succeeded" and rows[job_id].attempt == 2
    total = rows[job_id].total_steps
    assert assert_history_exact(cluster, job_id, total) == assert_history_exact(cluster, reference, total)
    ref, got = final_weights(cluster, reference), final_weights(cluster, job_id)
    assert all(np.array_equal(got[k], ref[k]) for k in ref)
    print(f"\nsigterm: worker exited {took:.2f}s after SIGTERM with its job checkpointed and requeued")


def test_postgres_connections_terminated_under_running_jobs(cluster, dataset_id, postgres_url):
    admin = create_engine(postgres_url)
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        ids = [submit(client, dataset_id) for _ in range(6)]
        wait_until(lambda: any(j.status == "running" for j in job_rows(cluster, ids).values()), 60, "a running job")
        terminated = 0
        for _ in range(5):
            with admin.connect() as conn:
                terminated += conn.execute(text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = 'trainyard-resilience' AND pid <> pg_backend_pid()")).scalar()
            time.sleep(0.4)
        rows = wait_until(lambda: terminal(cluster, ids), 120, "jobs after connection loss", interval=0.5)
    admin.dispose()
    assert terminated > 0
    assert {j.status for j in rows.values()} == {"succeeded"}, {j.id: j.error for j in rows.values()}
    for job_id in ids:
        assert_history_exact(cluster, job_id, rows[job_id].total_steps)
    print(f"\npostgres: {terminated} connections terminated; 6/6 jobs succeeded with complete metrics")


def test_redis_restart_with_jobs_queued_and_running(tmp_path_factory, postgres_url, tmp_path):
    port = free_port()
    redis_args = redis_server_command(port, tmp_path, persistent=False)
    broker = Child("redis", redis_args, dict(os.environ)).start(subprocess.DEVNULL)
    wait_for_port("127.0.0.1", port, 20, broker.proc)
    stack = start_stack(tmp_path_factory, "redis-restart", database_url=postgres_url,
                        redis_url=f"redis://127.0.0.1:{port}/0", workers=2)
    try:
        x, y = digits(400)
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            ds = post_dataset(client, x, y)["id"]
            ids = [submit(client, ds) for _ in range(6)]
            wait_until(lambda: any(j.status == "running" for j in job_rows(stack, ids).values()), 60, "a running job")
            broker.stop()  # queued messages are gone with it (no persistence)
            time.sleep(1.0)
            broker = Child("redis", redis_args, dict(os.environ)).start(subprocess.DEVNULL)
            wait_for_port("127.0.0.1", port, 20, broker.proc)
            started = time.monotonic()
            rows = wait_until(lambda: terminal(stack, ids), 180, "jobs after the Redis restart", interval=0.5)
            took = time.monotonic() - started
        assert {j.status for j in rows.values()} == {"succeeded"}, {j.id: j.error for j in rows.values()}
        for job_id in ids:
            assert_history_exact(stack, job_id, rows[job_id].total_steps)
        print(f"\nredis restart: 6/6 jobs finished {took:.1f}s after Redis came back; none duplicated")
    finally:
        stack.stop()
        broker.stop()


def rank_processes(parent_pid: int) -> list[int]:
    """Follower ranks of a worker's data-parallel job: multiprocessing spawn children of the
    worker's training child (itself a spawn child of the worker)."""
    spawned: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"spawn_main" in cmdline:
            spawned[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    children = {pid for pid, ppid in spawned.items() if ppid == parent_pid}
    return [pid for pid, ppid in spawned.items() if ppid in children]


def test_killed_rank_retries_the_data_parallel_job_with_no_orphan(cluster, dataset_id):
    with httpx.Client(base_url=cluster.base_url, timeout=30) as client:
        job_id = submit(client, dataset_id, epochs=8, devices=2, batch_size=4)
    job = wait_until(lambda: (j := job_rows(cluster, [job_id])[job_id]).status == "running" and j.step > 12 and j,
                     90, "the two-rank job to run")
    worker = next(w for w in cluster.workers if job.worker.endswith(f":{w.proc.pid}"))
    followers = wait_until(lambda: rank_processes(worker.proc.pid), 10, "the follower rank")
    os.kill(followers[0], signal.SIGKILL)
    killed_at = time.monotonic()
    wait_until(lambda: not rank_processes(worker.proc.pid) or job_rows(cluster, [job_id])[job_id].attempt > 1,
               15, "the job to react to its lost rank")
    rows = wait_until(lambda: terminal(cluster, [job_id]), 180, "the retried job", interval=0.5)
    assert rows[job_id].status == "succeeded" and rows[job_id].attempt >= 2, rows[job_id].error
    assert_history_exact(cluster, job_id, rows[job_id].total_steps)
    assert all(not rank_processes(w.proc.pid) for w in cluster.workers if w.alive()), "no rank process left"
    print(f"\nrank kill: job retried and succeeded {time.monotonic() - killed_at:.1f}s after its rank was killed")
