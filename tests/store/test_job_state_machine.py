"""A hypothesis state machine over submit / claim / progress / finish / cancel / worker
kill / reaper sequences, checked against a model: the database never loses a job, never
lets two workers own one, never reopens a finished job, and fences stale workers out."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import update

from migrations import upgrade
from store.db import session_scope
from store.models import Job, utcnow
from store.repositories import datasets, jobs

WORKERS = ["w0", "w1", "w2"]
MAX_RESTARTS = 2


class JobStateMachine(RuleBasedStateMachine):
    url: str  # set by the test

    @initialize()
    def setup(self):
        with session_scope(self.url) as s:
            s.execute(update(Job).values(status="cancelled"))  # previous examples' jobs are done
            self.dataset = datasets.create(s, name="d", inputs=np.zeros((1, 1), np.float32),
                                           targets=np.zeros(1, np.int64), task="classification").id
        self.model: dict[str, dict] = {}  # job id -> {"status", "attempt", "cancel"}
        self.holding: dict[str, tuple[str, int]] = {}  # worker -> (job, attempt) it believes it runs

    def _db(self, job_id):
        with session_scope(self.url) as s:
            j = jobs.get(s, job_id=job_id)
            return j.status, j.attempt

    @rule()
    def submit(self):
        with session_scope(self.url) as s:
            job_id = jobs.create(s, name="j", dataset_id=self.dataset, model_spec={}, training={},
                                 max_restarts=MAX_RESTARTS).id
        self.model[job_id] = {"status": "queued", "attempt": 0, "cancel": False}

    @precondition(lambda self: self.model and len(self.holding) < len(WORKERS))
    @rule(data=st.data())
    def claim(self, data):
        worker = data.draw(st.sampled_from([w for w in WORKERS if w not in self.holding]))
        job_id = data.draw(st.sampled_from(list(self.model)))
        with session_scope(self.url) as s:
            attempt = jobs.claim(s, job_id=job_id, worker=worker, lease_s=60)
        m = self.model[job_id]
        if m["status"] == "queued":
            assert attempt == m["attempt"] + 1
            m.update(status="running", attempt=attempt)
            self.holding[worker] = (job_id, attempt)
        else:
            assert attempt is None

    def _owns(self, job_id, attempt):
        m = self.model[job_id]
        return m["status"] == "running" and m["attempt"] == attempt

    @precondition(lambda self: self.holding)
    @rule(data=st.data())
    def progress(self, data):
        worker = data.draw(st.sampled_from(sorted(self.holding)))
        job_id, attempt = self.holding[worker]
        with session_scope(self.url) as s:
            ok = jobs.set_progress(s, job_id=job_id, attempt=attempt, epoch=1, step=1)
            owned, cancel = jobs.heartbeat(s, job_id=job_id, attempt=attempt, lease_s=60)
        assert ok == owned == self._owns(job_id, attempt)
        assert cancel == (owned and self.model[job_id]["cancel"])

    @precondition(lambda self: self.holding)
    @rule(data=st.data(), outcome=st.sampled_from(["succeeded", "failed", "cancelled"]))
    def finish(self, data, outcome):
        worker = data.draw(st.sampled_from(sorted(self.holding)))
        job_id, attempt = self.holding.pop(worker)
        with session_scope(self.url) as s:
            ok = jobs.finish(s, job_id=job_id, attempt=attempt, status=outcome)
        assert ok == self._owns(job_id, attempt)
        if ok:
            self.model[job_id]["status"] = outcome

    @precondition(lambda self: self.holding)
    @rule(data=st.data())
    def release(self, data):
        worker = data.draw(st.sampled_from(sorted(self.holding)))
        job_id, attempt = self.holding.pop(worker)
        with session_scope(self.url) as s:
            ok = jobs.release(s, job_id=job_id, attempt=attempt, reason="graceful stop")
        assert ok == self._owns(job_id, attempt)
        if ok:
            self.model[job_id]["status"] = "queued"

    @precondition(lambda self: self.holding)
    @rule(data=st.data())
    def kill_worker(self, data):
        """SIGKILL: the worker vanishes and its lease lapses."""
        worker = data.draw(st.sampled_from(sorted(self.holding)))
        job_id, attempt = self.holding.pop(worker)
        with session_scope(self.url) as s:
            s.execute(update(Job).where(Job.id == job_id, Job.attempt == attempt)
                      .values(lease_expires_at=utcnow().replace(year=2000)))

    @rule()
    def reap(self):
        live = {job_id for job_id, _ in self.holding.values()}
        with session_scope(self.url) as s:
            sent, failed = jobs.reap(s, requeue_after_s=3600)
        expired = {j for j, m in self.model.items() if m["status"] == "running" and j not in live}
        assert set(failed) | (set(sent) & expired) == expired
        for job_id in failed:
            assert self.model[job_id]["attempt"] > MAX_RESTARTS
            self.model[job_id]["status"] = "failed"
        for job_id in set(sent) & expired:
            self.model[job_id]["status"] = "queued"

    @precondition(lambda self: self.model)
    @rule(data=st.data())
    def cancel(self, data):
        job_id = data.draw(st.sampled_from(list(self.model)))
        with session_scope(self.url) as s:
            result = jobs.request_cancel(s, job_id=job_id)
        m = self.model[job_id]
        expected = {"queued": "cancelled", "running": "running"}.get(m["status"])
        assert result == expected
        if m["status"] == "queued":
            m["status"] = "cancelled"
        if result:
            m["cancel"] = True

    @invariant()
    def database_matches_model(self):
        for job_id, m in self.model.items():
            assert self._db(job_id) == (m["status"], m["attempt"])

    @invariant()
    def one_owner_per_job(self):
        owners = [(j, a) for j, a in self.holding.values() if self._owns(j, a)]
        assert len(owners) == len({j for j, _ in owners})


def test_job_state_machine(tmp_path):
    JobStateMachine.url = f"sqlite:///{tmp_path / 'sm.db'}"
    upgrade(JobStateMachine.url)
    JobStateMachine.TestCase.settings = settings(
        max_examples=40, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    JobStateMachine.TestCase().runTest()
