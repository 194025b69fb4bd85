"""Multi-node data parallel with CPU ranks: two real Celery worker processes standing for two
hosts on loopback addresses (127.0.0.1 and 127.0.0.2), each running half the ranks of a 4- or
16-rank job (TRAINYARD_HOST_RANKS). The claiming worker serves the TCP store and asks for a
second host; the other worker joins through the store. The job trains equal to one process at
4x / 16x the batch, and the job's log names which host ran which ranks."""
from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid

import numpy as np
import pytest
import redis
from safetensors.numpy import load as load_safetensors

from api import queue as api_queue
from config import queues
from config.settings import Settings
from store.db import session_scope
from store.repositories import checkpoints, datasets, events, jobs, metrics
from tests.worker.jobs import new_job
from trainyard.commands import worker_command, worker_environment
from trainyard.processes import Child
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 6, "out_features": 16}, {"type": "Tanh"},
                   {"type": "Linear", "in_features": 16, "out_features": 3}]}


def _job(url: str, ds_id: str, devices: int, batch_size: int) -> str:
    training = {"epochs": 2, "batch_size": batch_size, "optimizer": {"type": "SGD", "lr": 0.2, "momentum": 0.9},
                "seed": 4, "validation_split": 0.2, "devices": devices, "checkpoint_every": 5, "device": "cpu"}
    return new_job(url, name=f"d{devices}", dataset_id=ds_id, model=SPEC, training=training)


def _result(url: str, job_id: str):
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        weights = load_safetensors(checkpoints.latest_with_data(s, job_id=job_id).data)
        losses = [m.value for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]
        logs = [json.dumps(e.data) for e in events.after(s, job_id=job_id, seq=0, kinds=("log",))]
        return job, weights, losses, logs


def _host(tmp_path, env: dict[str, str], address: str) -> Child:
    env, _ = worker_environment("none", {**env, "TRAINYARD_WORKER_ADDRESS": address})
    queue = queues.name(env["TRAINYARD_QUEUE"], queues.CPU)
    child = Child(f"host-{address}", worker_command(queue, hostname=f"h{address}-{uuid.uuid4().hex[:6]}@%h"), env)
    child.start(open(tmp_path / f"worker-{address}.log", "ab"))
    return child


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("ranks", [4, 16])
def test_cpu_ranks_over_two_loopback_hosts_train_like_one_process_at_that_many_times_the_batch(
        database_url, real_redis_url, tmp_path, ranks):
    """4 ranks (2 a host) and the issue's 16 (8 a host, each host's worker training in its
    memory-capped child): the same weights and losses as one process at 4x / 16x the batch."""
    per_host, per_rank = ranks // 2, 128 // ranks
    rng = np.random.default_rng(1)
    x = rng.normal(size=(800, 6)).astype(np.float32)  # 640 train samples: 5 global batches of 128
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=y, task="classification").id
    single = _job(database_url, ds_id, 1, 128)
    assert run_job(single, Settings(database_url=database_url, train_in_child=False)) == "succeeded"

    base = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": real_redis_url, "TRAINYARD_QUEUE": base,
           "TRAINYARD_HOST_RANKS": str(per_host), "TRAINYARD_DEVICE": "cpu", "TRAINYARD_JOIN_TIMEOUT_S": "240"}
    hosts = [_host(tmp_path, env, "127.0.0.1"), _host(tmp_path, env, "127.0.0.2")]
    try:
        multi = _job(database_url, ds_id, ranks, per_rank)
        api_queue.enqueue_training(Settings(database_url=database_url, redis_url=real_redis_url, queue=base), multi)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            with session_scope(database_url) as s:
                status = jobs.get(s, job_id=multi).status
            if status in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(0.5)
    finally:
        for h in hosts:
            h.stop()
        redis.Redis.from_url(real_redis_url).delete(f"{base}.cpu", f"{base}.gpu")
    logs_of = {h.name: (tmp_path / f"worker-{h.name[5:]}.log").read_text(errors="replace")[-3000:] for h in hosts}
    (j1, w1, l1, _), (j4, w4, l4, log4) = _result(database_url, single), _result(database_url, multi)
    assert j4.status == "succeeded", (j4.error, logs_of)
    assert j4.attempt == 1 and j4.total_steps == j1.total_steps == 10 and j4.step == 10
    assert np.allclose(l4, l1, rtol=1e-5, atol=1e-6)
    for key in w1:
        assert np.allclose(w4[key], w1[key], rtol=1e-4, atol=1e-5), key
    assert j4.final_metrics["val_loss"] == pytest.approx(j1.final_metrics["val_loss"], rel=1e-4)
    # placed by the scheduler: the first half of the ranks where the job was claimed, the rest
    # on the host that joined
    placement = [line for line in log4 if f"{ranks} ranks over 2 hosts" in line]
    assert placement, log4
    first, second = f"0-{per_host - 1}", f"{per_host}-{ranks - 1}"
    assert f"127.0.0.1:{first}" in placement[0] and f"127.0.0.2:{second}" in placement[0] or \
        f"127.0.0.2:{first}" in placement[0] and f"127.0.0.1:{second}" in placement[0], placement
    assert subprocess.run(["pgrep", "-f", base], capture_output=True).stdout == b""


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_lost_host_fails_the_attempt_and_the_job_resumes_from_its_checkpoint(database_url, real_redis_url, tmp_path):
    """Kill the joined host (its worker and its ranks, SIGKILL) once the job has a checkpoint:
    the claiming host's ranks see the lost connection, the attempt goes back to the queue, a
    new host on the same address joins the next attempt, and the job ends with the weights of
    an uninterrupted run."""
    import signal

    from store.repositories import workers

    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=y, task="classification").id

    def job(devices: int, batch: int) -> str:
        training = {"epochs": 12, "batch_size": batch, "optimizer": {"type": "SGD", "lr": 0.05, "momentum": 0.9},
                    "seed": 4, "validation_split": 0.2, "devices": devices, "checkpoint_every": 5, "device": "cpu"}
        return new_job(database_url, name=f"d{devices}", dataset_id=ds_id, model=SPEC, training=training)

    single = job(1, 32)
    assert run_job(single, Settings(database_url=database_url, train_in_child=False)) == "succeeded"
    base = f"test-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": real_redis_url, "TRAINYARD_QUEUE": base,
           "TRAINYARD_HOST_RANKS": "2", "TRAINYARD_DEVICE": "cpu", "TRAINYARD_JOIN_TIMEOUT_S": "120"}
    hosts = {a: _host(tmp_path, env, a) for a in ("127.0.0.1", "127.0.0.2")}
    started = list(hosts.values())
    try:
        multi = job(4, 8)
        api_queue.enqueue_training(Settings(database_url=database_url, redis_url=real_redis_url, queue=base), multi)

        def joined_host():
            with session_scope(database_url) as s:
                if not checkpoints.latest_with_data(s, job_id=multi) or jobs.get(s, job_id=multi).status != "running":
                    return None
                for w in workers.live(s, ttl_s=30):
                    if any(j["job_id"] == multi and j["ranks"] == [2, 3] for j in w.jobs):
                        return w.address, int(w.name.rsplit(":", 1)[1])
            return None

        deadline = time.monotonic() + 240
        victim = None
        while victim is None and time.monotonic() < deadline:
            victim = joined_host()
            time.sleep(0.1)
        assert victim is not None, "the job never ran on two hosts with a checkpoint"
        address, pid = victim
        assert hosts[address].proc.pid == pid
        os.killpg(pid, signal.SIGKILL)  # the host is gone: its worker and its two ranks
        hosts[address].proc.wait()
        replacement = _host(tmp_path, env, address)  # a new machine takes the address
        started.append(replacement)
        while time.monotonic() < deadline + 300:
            with session_scope(database_url) as s:
                if jobs.get(s, job_id=multi).status in ("succeeded", "failed", "cancelled"):
                    break
            time.sleep(0.5)
    finally:
        for h in started:
            h.stop()
        redis.Redis.from_url(real_redis_url).delete(f"{base}.cpu", f"{base}.gpu")
    (j1, w1, l1, _), (j4, w4, l4, log4) = _result(database_url, single), _result(database_url, multi)
    assert j4.status == "succeeded", j4.error
    assert j4.attempt >= 2  # the attempt that lost its host, then the one that resumed
    assert any("RankLost" in line or "was lost" in line for line in log4), log4[-5:]
    resumed = [int(m) for line in log4 for m in re.findall(r"resuming from step (\d+)", line)]
    assert resumed and resumed[-1] > 0  # from the checkpoint, not from the start
    assert np.allclose(l4, l1, rtol=1e-5, atol=1e-6) and j4.step == j1.step == 60
    for key in w1:
        assert np.allclose(w4[key], w1[key], rtol=1e-4, atol=1e-5), key
