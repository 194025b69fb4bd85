"""Fair claiming across owners, on SQLite and PostgreSQL: a message about one owner's job
starts another owner's job when that owner runs fewer jobs, so a second owner's job starts on
the next free worker however many jobs the first owner queued; the passed-over job is due for
a new message at the reaper's next pass. And the per-owner cap on queued jobs at submit."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi import HTTPException

from api.routes.jobs import create_job
from config.settings import Settings
from plan.request import JobCreate
from store.db import session_scope
from store.repositories import datasets, jobs
from tests.worker.jobs import new_job
from worker import lifecycle

TRAINING = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 0, "validation_split": 0.25}
SPEC = {"layers": [{"type": "Linear", "in_features": 2, "out_features": 2}]}


def _dataset(url: str, owner: str) -> str:
    with session_scope(url) as s:
        return datasets.create(s, name="d", inputs=np.zeros((8, 2), np.float32), targets=np.arange(8) % 2,
                               task="classification", owner=owner).id


def _many(url: str, owner: str, n: int, plan_changes: dict | None = None) -> list[str]:
    """``n`` queued jobs of ``owner``, planned once (as POST /v1/jobs plans) and stored n times."""
    first = new_job(url, dataset_id=_dataset(url, owner), model=SPEC, training=TRAINING, owner=owner,
                    plan_changes=plan_changes)
    with session_scope(url) as s:
        job = jobs.get(s, job_id=first)
        ids = [first] + [jobs.create(s, owner=owner, name=f"j{i}", dataset_id=job.dataset_id, model_spec=SPEC,
                                     training=job.training, plan=job.plan, total_steps=job.total_steps).id
                         for i in range(n - 1)]
        for job_id in ids:
            jobs.mark_enqueued(s, job_id=job_id)
    return ids


def _status(url: str, job_id: str) -> tuple[str, bool]:
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        return job.status, job.enqueued_at is not None


def test_second_owners_job_starts_on_the_next_free_worker(database_url):
    settings = Settings(database_url=database_url)
    alice = _many(database_url, "alice", 500)
    bob = _many(database_url, "bob", 2)
    with session_scope(database_url) as s:  # a worker runs alice's first job
        assert jobs.claim(s, job_id=alice[0], worker="w1", lease_s=30) == 1

    # the next free worker takes the next message (alice's second job) and starts bob's oldest
    claimed = lifecycle._claim(alice[1], settings)
    assert claimed.job_id == bob[0] and claimed.attempt == 1
    assert _status(database_url, bob[0]) == ("running", True)
    assert _status(database_url, alice[1]) == ("queued", False)  # unsent: the reaper sends it again
    with session_scope(database_url) as s:
        due, _ = jobs.reap(s, requeue_after_s=300)
    assert due == [alice[1]]

    # both owners run one job now: a message starts its own job
    assert lifecycle._claim(alice[2], settings).job_id == alice[2]
    # alice runs two, bob one: bob's next job goes first
    assert lifecycle._claim(alice[3], settings).job_id == bob[1]
    # bob has nothing queued: alice's jobs run in turn
    assert lifecycle._claim(alice[4], settings).job_id == alice[4]


def test_fair_pick_keeps_to_the_messages_device_kind(database_url):
    alice = _many(database_url, "alice", 3)
    _many(database_url, "carol", 1, plan_changes={"device_kind": "gpu"})  # not for this (cpu) message's queue
    with session_scope(database_url) as s:
        jobs.claim(s, job_id=alice[0], worker="w1", lease_s=30)
        assert jobs.fair_pick(s, job=jobs.get(s, job_id=alice[1])).id == alice[1]


def test_an_owner_at_the_running_cap_is_deferred_not_diverted(database_url):
    settings = Settings(database_url=database_url, max_running_per_owner=1)
    alice, bob = _many(database_url, "alice", 2), _many(database_url, "bob", 1)
    with session_scope(database_url) as s:
        jobs.claim(s, job_id=alice[0], worker="w1", lease_s=30)
    assert lifecycle._claim(alice[1], settings) is lifecycle.CAPPED  # re-sent later; bob's own message runs his
    assert _status(database_url, bob[0]) == ("queued", True)
    assert lifecycle._claim(bob[0], settings).job_id == bob[0]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_queued_jobs_per_owner_are_capped_at_submit(database_url):
    settings = Settings(database_url=database_url, max_queued_per_owner=3)
    ds = _dataset(database_url, "alice")
    body = JobCreate(name="j", dataset_id=ds, model=SPEC, training=TRAINING)
    with session_scope(database_url) as s:
        ids = [create_job(s, body, settings, "alice").id for _ in range(3)]
        with pytest.raises(HTTPException) as refused:
            create_job(s, body, settings, "alice")
        assert refused.value.status_code == 429 and "max_queued_per_owner (3)" in refused.value.detail
        assert refused.value.headers["Retry-After"]
        bob_ds = datasets.create(s, name="d", inputs=np.zeros((8, 2), np.float32), targets=np.arange(8) % 2,
                                 task="classification", owner="bob").id
        create_job(s, body.model_copy(update={"dataset_id": bob_ds}), settings, "bob")  # bob has his own quota
        jobs.claim(s, job_id=ids[0], worker="w1", lease_s=30)  # one started: room for one more
        create_job(s, body, settings, "alice")
