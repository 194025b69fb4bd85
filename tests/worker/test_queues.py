"""Separate CPU and GPU queues with real Celery worker processes on the machine's Redis: a GPU
worker (here one that claims two GPUs through TRAINYARD_FAKE_GPUS: no GPU on this machine)
never takes a CPU job, a CPU worker never takes a GPU job, and each registers in the fleet."""
from __future__ import annotations

import subprocess
import time
import uuid

import numpy as np
import pytest
import redis

from api import queue as api_queue
from config import queues
from config.settings import Settings
from store.db import session_scope
from store.repositories import datasets, jobs, workers
from tests.worker.jobs import new_job
from trainyard.commands import worker_command, worker_environment
from trainyard.processes import Child

SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}]}


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise TimeoutError(f"timed out after {timeout}s waiting for {what}")


def _job(url: str, url_settings: Settings, ds_id: str, device: str) -> str:
    training = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "device": device}
    job_id = new_job(url, name=device, dataset_id=ds_id, model=SPEC, training=training)
    api_queue.enqueue_training(url_settings, job_id)
    return job_id


def _status(url: str, job_id: str):
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        return job.status, job.worker, job.attempt


def _worker(tmp_path, env: dict[str, str], gpus: str, name: str) -> Child:
    env, n_gpus = worker_environment(gpus, env)
    queue = queues.name(env["TRAINYARD_QUEUE"], queues.GPU if n_gpus else queues.CPU)
    child = Child(name, worker_command(queue, hostname=f"{name}-{uuid.uuid4().hex[:6]}@%h"), env)
    child.start(open(tmp_path / f"{name}.log", "ab"))
    return child


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_cpu_worker_never_takes_a_gpu_job_and_a_gpu_worker_never_a_cpu_job(database_url, real_redis_url, tmp_path):
    import os

    base = f"test-{uuid.uuid4().hex[:8]}"
    settings = Settings(database_url=database_url, redis_url=real_redis_url, queue=base)
    x = np.random.default_rng(0).normal(size=(40, 4)).astype(np.float32)
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=(x[:, 0] > 0).astype(np.int64),
                                task="classification").id
    cpu_job, gpu_job = _job(database_url, settings, ds_id, "cpu"), _job(database_url, settings, ds_id, "gpu")
    broker = redis.Redis.from_url(real_redis_url)
    assert (broker.llen(f"{base}.cpu"), broker.llen(f"{base}.gpu")) == (1, 1)
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": real_redis_url, "TRAINYARD_QUEUE": base,
           "TRAINYARD_WORKER_HEARTBEAT_S": "0.5", "TRAINYARD_FAKE_GPUS": "2"}
    started: list[Child] = []
    try:
        gpu_worker = _worker(tmp_path, env, "all", "gpu")  # TRAINYARD_FAKE_GPUS: a 2-GPU worker
        started.append(gpu_worker)
        _wait(lambda: _status(database_url, gpu_job)[0] == "succeeded", 120, "the GPU job on the GPU worker")
        time.sleep(3)  # the idle GPU worker has every chance to take the CPU job: it must not
        assert _status(database_url, cpu_job) == ("queued", None, 0)
        waiting = broker.lrange(f"{base}.cpu", 0, -1)  # (the GPU worker's reaper may have re-sent it: harmless)
        assert waiting and all(cpu_job.encode() in m for m in waiting)
        cpu_worker = _worker(tmp_path, {**env, "TRAINYARD_FAKE_GPUS": ""}, "none", "cpu")
        started.append(cpu_worker)
        _wait(lambda: _status(database_url, cpu_job)[0] == "succeeded", 120, "the CPU job on the CPU worker")
        host = lambda child: f"{_status(database_url, gpu_job)[1].split(':')[0]}:{child.proc.pid}"  # noqa: E731
        assert _status(database_url, gpu_job)[1] == host(gpu_worker)
        assert _status(database_url, cpu_job)[1] == host(cpu_worker)
        # with both up, a second GPU job goes to the GPU worker, never the CPU one
        again = _job(database_url, settings, ds_id, "gpu")
        _wait(lambda: _status(database_url, again)[0] == "succeeded", 120, "the second GPU job")
        assert _status(database_url, again)[1] == host(gpu_worker)
        # both registered in the fleet with their kind and queue
        with session_scope(database_url) as s:
            fleet = {w.name: (w.kind, w.queue, w.gpus) for w in workers.live(s, ttl_s=30)}
        assert fleet == {host(gpu_worker): ("gpu", f"{base}.gpu", ["0", "1"]),
                         host(cpu_worker): ("cpu", f"{base}.cpu", [])}
    finally:
        for child in started:
            child.stop()
        broker.delete(f"{base}.cpu", f"{base}.gpu")
    with session_scope(database_url) as s:  # a worker that stops leaves the fleet
        assert workers.live(s, ttl_s=30) == []
    assert subprocess.run(["pgrep", "-f", base], capture_output=True).stdout == b""
