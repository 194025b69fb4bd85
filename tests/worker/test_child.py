"""The supervised training child (worker.child) against a real database: it trains exactly
as the in-process attempt does, a model over its memory cap fails as ``oom`` with the peak
and the estimate (the worker process untouched), and cancel and the time limit kill a child
stuck in one long step after the grace period."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import update

from config.settings import Settings
from store.db import session_scope
from store.models import Job, utcnow
from store.repositories import datasets, events, jobs, metrics
from tests.worker.jobs import new_job
from worker import child
from worker.lifecycle import run_job

TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 3, "validation_split": 0.25}
SMALL = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}]}


def _dataset(url: str, n: int = 40, features: int = 4) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, features)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    with session_scope(url) as s:
        return datasets.create(s, name="d", inputs=x, targets=y, task="classification").id


def _wide(features: int, width: int, depth: int) -> dict:
    layers = [{"type": "Linear", "in_features": features, "out_features": width}, {"type": "ReLU"}]
    for _ in range(depth):
        layers += [{"type": "Linear", "in_features": width, "out_features": width}, {"type": "ReLU"}]
    return {"layers": layers + [{"type": "Linear", "in_features": width, "out_features": 2}]}


def _losses(url: str, job_id: str) -> list[float]:
    with session_scope(url) as s:
        return [r.value for r in metrics.for_job(s, job_id=job_id) if r.kind == "step" and r.name == "loss"]


def test_child_trains_like_the_in_process_attempt(database_url):
    settings = Settings(database_url=database_url)
    ds = _dataset(database_url)
    here = new_job(database_url, dataset_id=ds, model=SMALL, training=TRAINING)
    there = new_job(database_url, dataset_id=ds, model=SMALL, training=TRAINING)
    assert run_job(here, settings) == "succeeded"
    assert child.run_supervised(there, settings) == "succeeded"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=there)
        assert (job.status, job.attempt, job.step, job.worker.endswith(f":{os.getpid()}")) == ("succeeded", 1, 8, True)
    assert _losses(database_url, there) == _losses(database_url, here)  # bitwise: same seed, same steps
    assert child.run_supervised(there, settings) == "skipped"


def test_memory_hog_fails_as_oom_with_peak_and_estimate(database_url):
    # ~1.1 GB of weights, gradients and momentum-free SGD state under a 700 MB ceiling
    settings = Settings(database_url=database_url, worker_memory_bytes=700 * 2**20)
    ds = _dataset(database_url, n=64, features=64)
    job_id = new_job(database_url, dataset_id=ds, model=_wide(64, 4096, 8), training=TRAINING)
    assert child.run_supervised(job_id, settings) == "failed"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert (job.status, job.failure_kind, job.attempt) == ("failed", "oom", 1)
        assert "peak RSS" in job.error and "memory cap 700 MiB" in job.error
        assert f"estimates {job.plan['memory_bytes'] / 2**20:.1f} MiB" in job.error
    # the worker (this process) is fine and a job that fits runs next
    ok = new_job(database_url, dataset_id=_dataset(database_url), model=SMALL, training=TRAINING)
    assert child.run_supervised(ok, settings) == "succeeded"


def _long_step_job(url: str, **training) -> str:
    """Steps of 5-60 s here (2 x 4096-wide layers over a 8192-sample batch; the engine's speed
    and the load decide), 20 epochs of one step so the job cannot end before the test acts."""
    ds = _dataset(url, n=8192, features=64)
    return new_job(url, dataset_id=ds, model=_wide(64, 4096, 2),
                   training={**TRAINING, "epochs": 20, "batch_size": 8192, "validation_split": 0.0, **training})


def _when_training(url: str, job_id: str, then) -> threading.Thread:
    """Call ``then()`` a few seconds into the job's first step (once its log says it trains)."""
    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with session_scope(url) as s:
                logs = events.after(s, job_id=job_id, seq=0, kinds=("log",))
                if any("attempt 1 on" in json.dumps(e.data) for e in logs):
                    break
            time.sleep(0.1)
        time.sleep(2.0)  # past building the model, into the first step (5-60 s here)
        then()

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_cancel_kills_a_child_stuck_in_a_long_step_after_the_grace(database_url):
    settings = Settings(database_url=database_url, step_grace_s=2.0)
    job_id = _long_step_job(database_url)

    def cancel():
        with session_scope(database_url) as s:
            jobs.request_cancel(s, job_id=job_id)
        cancelled_at.append(time.monotonic())

    cancelled_at: list[float] = []
    watcher = _when_training(database_url, job_id, cancel)
    assert child.run_supervised(job_id, settings) == "cancelled"
    took = time.monotonic() - cancelled_at[0]
    watcher.join()
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert (job.status, job.step) == ("cancelled", 0)  # it never finished that step
        assert "did not reach its next step within 2s and was killed" in job.error
    print(f"\ncancel during a long step: cancelled {took:.1f}s after the request (grace 2 s)")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_time_limit_kills_a_child_stuck_in_a_long_step(database_url):
    settings = Settings(database_url=database_url, step_grace_s=2.0)
    job_id = _long_step_job(database_url, time_limit_s=5)
    started = time.monotonic()
    assert child.run_supervised(job_id, settings) == "failed"
    took = time.monotonic() - started
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert (job.status, job.failure_kind, job.step) == ("failed", "timeout", 0)
    print(f"\ntime limit 5 s during a long step: failed after {took:.1f}s (grace 2 s)")


def test_cancelling_a_job_whose_worker_is_dead_is_at_once(database_url):
    job_id = new_job(database_url, dataset_id=_dataset(database_url), model=SMALL, training=TRAINING)
    live = new_job(database_url, dataset_id=_dataset(database_url), model=SMALL, training=TRAINING)
    with session_scope(database_url) as s:
        jobs.claim(s, job_id=job_id, worker="gone:1", lease_s=30)
        jobs.claim(s, job_id=live, worker="here:1", lease_s=30)
        # the dead worker's last renewal was 10 s ago; the live one's just now
        s.execute(update(Job).where(Job.id == job_id).values(lease_expires_at=utcnow() + timedelta(seconds=20)))
    with session_scope(database_url) as s:
        assert jobs.request_cancel(s, job_id=job_id, lease_s=30) == "cancelled"
        assert jobs.request_cancel(s, job_id=live, lease_s=30) == "running"  # its worker stops it
    with session_scope(database_url) as s:
        dead, running = jobs.get(s, job_id=job_id), jobs.get(s, job_id=live)
        assert (dead.status, dead.attempt, dead.failure_kind) == ("cancelled", 1, "cancelled")
        assert (running.status, running.cancel_requested) == ("running", True)
        # a flagged job whose worker then dies is cancelled by the reaper, never run again
        due, failed = jobs.reap(s, now=utcnow() + timedelta(seconds=60), requeue_after_s=300)
        assert live not in due and not failed
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=live)
        assert (job.status, job.attempt) == ("cancelled", 1)


def test_a_worker_refuses_the_prefork_pool(tmp_path):
    """Under prefork a SIGTERM could neither checkpoint nor requeue a job: the worker will not start."""
    env = {**os.environ, "TRAINYARD_DATA_DIR": str(tmp_path), "REDIS_URL": "redis://127.0.0.1:1/0"}
    run = subprocess.run([sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "--pool", "prefork",
                          "--concurrency", "1", "--queues", "unused"], env=env, cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert "do not support Celery's prefork pool" in run.stdout + run.stderr
