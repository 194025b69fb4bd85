"""A job that outgrows its memory, or sits in one very long step, against real Celery worker
processes (SQLite, the embedded Redis): the memory hog fails as ``oom`` with its peak and
estimate, once, and every worker lives on to run the next job; a cancel of the long step
kills its training child after the grace period, not at the step's end."""
from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from store.db import session_scope
from store.repositories import events
from tests.e2e.test_resilience import job_rows, terminal, wait_until
from trainyard.processes import free_port
from trainyard.stack import Stack

pytestmark = pytest.mark.e2e

TRAINING = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 3, "validation_split": 0.0}


def _wide(features: int, width: int, depth: int) -> dict:
    layers = [{"type": "Linear", "in_features": features, "out_features": width}, {"type": "ReLU"}]
    for _ in range(depth):
        layers += [{"type": "Linear", "in_features": width, "out_features": width}, {"type": "ReLU"}]
    return {"layers": layers + [{"type": "Linear", "in_features": width, "out_features": 2}]}


def _stack(tmp_path_factory, name: str, **settings: str):
    data_dir = tmp_path_factory.mktemp(name)
    env = {k: "" for k in ("DATABASE_URL", "REDIS_URL", "TRAINYARD_DATABASE_URL", "TRAINYARD_REDIS_URL")}
    env.update({"TRAINYARD_QUEUE": f"test-{uuid.uuid4().hex[:8]}", **settings})
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=Path(data_dir) / "stack.log", workers=2)
    return stack.start()


@pytest.fixture()
def capped(tmp_path_factory):
    """Two workers whose training children may map at most 700 MiB."""
    stack = _stack(tmp_path_factory, "oom", TRAINYARD_WORKER_MEMORY_BYTES=str(700 * 2**20))
    yield stack
    stack.stop()


@pytest.fixture()
def graced(tmp_path_factory):
    """Two workers that give a stopping training child 3 s to reach its next step."""
    stack = _stack(tmp_path_factory, "grace", TRAINYARD_STEP_GRACE_S="3")
    yield stack
    stack.stop()


def _dataset(client: httpx.Client, n: int, features: int) -> str:
    x = np.random.default_rng(0).normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int)
    r = client.post("/v1/datasets", json={"name": "wide", "inputs": x.tolist(), "targets": y.tolist()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _submit(client: httpx.Client, dataset_id: str, model: dict, **training) -> str:
    r = client.post("/v1/jobs", json={"name": "hog", "dataset_id": dataset_id, "model": model,
                                      "training": {**TRAINING, **training}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _training(stack: Stack, job_id: str) -> bool:
    """The job's log says its attempt began training (data loaded, model built)."""
    with session_scope(stack.database_url) as s:
        return any("attempt 1 on" in json.dumps(e.data) for e in events.after(s, job_id=job_id, seq=0, kinds=("log",)))


def test_memory_hog_fails_as_oom_once_and_every_worker_lives(capped):
    with httpx.Client(base_url=capped.base_url, timeout=60) as client:
        ds = _dataset(client, 64, 64)
        hog = _submit(client, ds, _wide(64, 4096, 8))  # ~2.2 GB estimated: far past the 700 MiB ceiling
        rows = wait_until(lambda: terminal(capped, [hog]), 180, "the memory hog", interval=0.5)
        job = rows[hog]
        assert (job.status, job.failure_kind, job.attempt) == ("failed", "oom", 1), job.error
        assert "peak RSS" in job.error and "memory cap 700 MiB" in job.error and "estimates" in job.error
        assert all(w.alive() for w in capped.workers), "the hog took a worker down"
        small = [_submit(client, ds, _wide(64, 16, 1)) for _ in range(2)]
        done = wait_until(lambda: terminal(capped, small), 120, "the next jobs", interval=0.5)
        assert {j.status for j in done.values()} == {"succeeded"}
        time.sleep(6.0)  # a reaper pass later: the hog was not restarted anywhere
        assert job_rows(capped, [hog])[hog].attempt == 1
    print(f"\nmemory hog: failed as oom on attempt 1, workers alive; {job.error[:160]}")


def test_cancel_kills_a_job_stuck_in_one_long_step_within_the_grace(graced):
    capped = graced
    with httpx.Client(base_url=capped.base_url, timeout=60) as client:
        ds = _dataset(client, 8192, 64)
        # one step of 15-60 s here (the engine's speed and the load); epochs so the job cannot end first
        job_id = _submit(client, ds, _wide(64, 4096, 2), batch_size=8192, epochs=20)
        wait_until(lambda: _training(capped, job_id), 120, "the job to train")
        time.sleep(2.0)  # past building the model, into its first step
        cancelled = time.monotonic()
        assert client.post(f"/v1/jobs/{job_id}/cancel").status_code == 200
        rows = wait_until(lambda: terminal(capped, [job_id]), 30, "the cancelled job", interval=0.2)
        took = time.monotonic() - cancelled
        job = rows[job_id]
        assert (job.status, job.step) == ("cancelled", 0), job.error
        assert "did not reach its next step within 3s and was killed" in job.error
        assert all(w.alive() for w in capped.workers)
    print(f"\ncancel in a long step: cancelled {took:.1f}s after the request (grace 3 s)")
