"""Exact resume, in-process against a real database: a job stopped gracefully or killed
mid-epoch and resumed ends with the same weights, bitwise, and the same metric history."""
from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from config.settings import Settings
from store.db import session_scope
from store.models import utcnow
from store.repositories import checkpoints, datasets, jobs, metrics
from tests.worker.jobs import new_job
from worker import lifecycle, reporting
from worker.supervision import WORKER_SHUTDOWN

SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
                   {"type": "Dropout", "p": 0.2}, {"type": "Linear", "in_features": 16, "out_features": 3}]}
TRAINING = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.01}, "seed": 5,
            "validation_split": 0.2, "checkpoint_every": 3}


class Killed(BaseException):
    """Stands in for SIGKILL: escapes every handler, leaving the job 'running'."""


@pytest.fixture
def settings(database_url):
    return Settings(database_url=database_url, lease_s=30)


@pytest.fixture
def sent(monkeypatch):
    messages: list[str] = []
    monkeypatch.setattr(lifecycle, "_send", messages.append)
    yield messages
    WORKER_SHUTDOWN.clear()


def _new_job(url: str) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64) + (x[:, 2] > 1)
    with session_scope(url) as s:
        ds = datasets.create(s, name="d", inputs=x, targets=y, task="classification")
        ds_id = ds.id
    return new_job(url, dataset_id=ds_id, model=SPEC, training=TRAINING)


def _interrupt_at(monkeypatch, step: int, action) -> None:
    original = reporting.Reporter.step

    def record_step(self, epoch, s, values, samples, **kwargs):
        original(self, epoch, s, values, samples, **kwargs)
        if s == step:
            monkeypatch.setattr(reporting.Reporter, "step", original)
            action()

    monkeypatch.setattr(reporting.Reporter, "step", record_step)


def _outcome(url: str, job_id: str):
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        weights = load_safetensors(checkpoints.latest_with_data(s, job_id=job_id).data)
        steps = [(m.step, m.value) for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]
        # wall time and memory differ between runs; every other epoch metric must not
        epochs = [(m.step, m.name, m.value) for m in metrics.for_job(s, job_id=job_id, kind="epoch")
                  if m.name not in ("epoch_time_s", "peak_rss_bytes")]
        return job, weights, steps, epochs


def _assert_same_run(url, reference_id, resumed_id):
    ref, w_ref, steps_ref, epochs_ref = _outcome(url, reference_id)
    job, w, steps, epochs = _outcome(url, resumed_id)
    assert job.status == "succeeded" and job.attempt == 2
    assert sorted(w) == sorted(w_ref)
    for key in w_ref:
        assert np.array_equal(w[key], w_ref[key]), key  # bitwise
    assert steps == steps_ref  # no duplicated or missing step, same losses
    assert epochs == epochs_ref
    def same(final):
        return {k: v for k, v in final.items() if k not in ("epoch_time_s", "peak_rss_bytes")}

    assert same(job.final_metrics) == same(ref.final_metrics)


def test_graceful_stop_mid_epoch_resumes_exactly(settings, sent, monkeypatch):
    url = settings.resolved_database_url
    reference = _new_job(url)
    assert lifecycle.run_job(reference, settings) == "succeeded"

    job_id = _new_job(url)
    _interrupt_at(monkeypatch, 11, WORKER_SHUTDOWN.set)
    assert lifecycle.run_job(job_id, settings) == "requeued"
    assert sent == [job_id]
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.status == "queued" and job.step == 11
        assert checkpoints.latest_with_data(s, job_id=job_id).step == 11  # saved where it stopped
    WORKER_SHUTDOWN.clear()
    assert lifecycle.run_job(job_id, settings) == "succeeded"
    _assert_same_run(url, reference, job_id)


def test_killed_worker_is_reaped_and_resumes_from_last_checkpoint(settings, sent, monkeypatch):
    url = settings.resolved_database_url
    reference = _new_job(url)
    assert lifecycle.run_job(reference, settings) == "succeeded"

    job_id = _new_job(url)
    _interrupt_at(monkeypatch, 11, lambda: (_ for _ in ()).throw(Killed()))
    with pytest.raises(Killed):
        lifecycle.run_job(job_id, settings)
    with session_scope(url) as s:
        assert jobs.get(s, job_id=job_id).status == "running"
        # steps 10 and 11 were logged after the last checkpoint (step 9): resume must redo them
        assert max(m.step for m in metrics.for_job(s, job_id=job_id)) == 11
        assert checkpoints.latest_with_data(s, job_id=job_id).step == 9
        assert jobs.reap(s, requeue_after_s=300) == ([], [])  # lease still valid
        later = utcnow() + timedelta(seconds=settings.lease_s + 1)
        assert jobs.reap(s, now=later, requeue_after_s=300) == ([job_id], [])
    assert lifecycle.run_job(job_id, settings) == "succeeded"  # resumes at step 9
    _assert_same_run(url, reference, job_id)


def test_duplicate_delivery_trains_once(settings, sent):
    url = settings.resolved_database_url
    job_id = _new_job(url)
    assert lifecycle.run_job(job_id, settings) == "succeeded"
    assert lifecycle.run_job(job_id, settings) == "skipped"
    with session_scope(url) as s:
        assert jobs.get(s, job_id=job_id).attempt == 1
