"""The per-owner cap on concurrently running jobs: an owner at the cap waits, others run."""
from __future__ import annotations

import numpy as np

from config.settings import Settings
from store.db import session_scope
from store.repositories import datasets, jobs
from tests.worker.jobs import new_job
from worker import lifecycle

TRAINING = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 0, "validation_split": 0.25}
SPEC = {"layers": [{"type": "Linear", "in_features": 2, "out_features": 2}]}


def _job(url: str, owner: str) -> str:
    with session_scope(url) as s:
        ds = datasets.create(s, name="d", inputs=np.zeros((8, 2), np.float32), targets=np.arange(8) % 2,
                             task="classification", owner=owner)
        ds_id = ds.id
    return new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING, owner=owner)


def test_owner_at_cap_waits_while_others_run(database_url, monkeypatch):
    sent = []
    monkeypatch.setattr(lifecycle, "_send", lambda job_id, countdown=None: sent.append((job_id, countdown)))
    settings = Settings(database_url=database_url, max_running_per_owner=1, cap_retry_s=2.0)
    running, waiting, other = _job(database_url, "alice"), _job(database_url, "alice"), _job(database_url, "bob")
    with session_scope(database_url) as s:
        assert jobs.claim(s, job_id=running, worker="elsewhere", lease_s=30) == 1

    assert lifecycle.run_job(waiting, settings) == "deferred"
    assert sent == [(waiting, 2.0)]
    with session_scope(database_url) as s:
        assert (jobs.get(s, job_id=waiting).status, jobs.get(s, job_id=waiting).attempt) == ("queued", 0)
    assert lifecycle.run_job(other, settings) == "succeeded"  # bob is not capped by alice

    with session_scope(database_url) as s:
        jobs.finish(s, job_id=running, attempt=1, status="succeeded")
    assert lifecycle.run_job(waiting, settings) == "succeeded"  # alice is under the cap again
