"""The job state machine's compare-and-set transitions, against SQLite and PostgreSQL."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from store.db import session_scope
from store.models import utcnow
from store.repositories import datasets, jobs


@pytest.fixture
def job_id(database_url):
    with session_scope(database_url) as s:
        ds = datasets.create(s, name="d", inputs=np.zeros((2, 1), np.float32), targets=np.zeros(2, np.int64),
                             task="classification")
        return jobs.create(s, name="j", dataset_id=ds.id, model_spec={}, training={"epochs": 1}, max_restarts=1).id


def _status(url, job_id):
    with session_scope(url) as s:
        return jobs.get(s, job_id=job_id).status


def test_claim_is_exclusive_and_fences_stale_attempts(database_url, job_id):
    with session_scope(database_url) as s:
        assert jobs.claim(s, job_id=job_id, worker="a", lease_s=30) == 1
        assert jobs.claim(s, job_id=job_id, worker="b", lease_s=30) is None
        assert jobs.release(s, job_id=job_id, attempt=1, reason="stop")
        assert jobs.claim(s, job_id=job_id, worker="b", lease_s=30) == 2
        assert not jobs.set_progress(s, job_id=job_id, attempt=1, epoch=1, step=3)  # stale attempt
        assert jobs.heartbeat(s, job_id=job_id, attempt=1, lease_s=30) == (False, False)
        assert not jobs.finish(s, job_id=job_id, attempt=1, status="succeeded")
        assert jobs.set_progress(s, job_id=job_id, attempt=2, epoch=1, step=3)
        assert jobs.finish(s, job_id=job_id, attempt=2, status="succeeded")
        assert not jobs.finish(s, job_id=job_id, status="failed")  # terminal stays terminal


def test_reaper_requeues_lapsed_leases_then_fails_after_max_restarts(database_url, job_id):
    def future():
        return utcnow() + timedelta(seconds=31)
    with session_scope(database_url) as s:
        jobs.claim(s, job_id=job_id, worker="a", lease_s=30)
        assert jobs.reap(s, requeue_after_s=300) == ([], [])
        assert jobs.reap(s, now=future(), requeue_after_s=300) == ([job_id], [])
        assert jobs.get(s, job_id=job_id).status == "queued"
        assert jobs.claim(s, job_id=job_id, worker="b", lease_s=30) == 2
        assert jobs.reap(s, now=future(), requeue_after_s=300) == ([], [job_id])  # max_restarts=1 used
        job = jobs.get(s, job_id=job_id)
        s.refresh(job)
        assert job.status == "failed" and job.failure_kind == "infrastructure"


def test_reaper_resends_queued_jobs_whose_message_may_be_lost(database_url, job_id):
    with session_scope(database_url) as s:
        jobs.mark_enqueued(s, job_id=job_id)
        assert jobs.reap(s, requeue_after_s=60) == ([], [])
        later = utcnow() + timedelta(seconds=61)
        assert jobs.reap(s, now=later, requeue_after_s=60) == ([job_id], [])
        assert jobs.reap(s, now=later, requeue_after_s=60) == ([], [])  # sent once per interval


def test_cancel(database_url, job_id):
    with session_scope(database_url) as s:
        assert jobs.request_cancel(s, job_id=job_id) == "cancelled"
        assert jobs.request_cancel(s, job_id=job_id) is None
        assert jobs.claim(s, job_id=job_id, worker="a", lease_s=30) is None
