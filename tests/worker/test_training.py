"""The training task in-process against a real database: success, failure and redelivery."""
from __future__ import annotations

import numpy as np
import pytest

from config.settings import Settings
from plan.splits import split_indices
from store.db import session_scope
from store.repositories import datasets, jobs, metrics
from tests.worker.jobs import new_job
from worker.lifecycle import run_job

TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 3, "validation_split": 0.25}


def _make_job(url: str, spec: dict, plan_changes: dict | None = None) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    with session_scope(url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=y, task="classification").id
    return new_job(url, dataset_id=ds_id, model=spec, training=TRAINING, plan_changes=plan_changes)


def test_job_trains_writes_metrics_and_is_not_trained_twice(database_url):
    settings = Settings(database_url=database_url)
    job_id = _make_job(database_url, {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}]})
    assert run_job(job_id, settings) == "succeeded"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        rows = metrics.for_job(s, job_id=job_id)
        assert (job.status, job.attempt, job.epoch, job.step, job.total_steps) == ("succeeded", 1, 2, 8, 8)
        assert [r.step for r in rows if r.kind == "step" and r.name == "loss"] == list(range(1, 9))
        assert [r.value for r in rows if r.name == "lr"] == [0.1] * 8
        # samples/s is measured between steps: every step but the first of each epoch
        assert [r.step for r in rows if r.name == "samples_per_s"] == [2, 3, 4, 6, 7, 8]
        assert {r.name for r in rows if r.kind == "epoch"} == {"train_loss", "val_loss", "val_accuracy",
                                                               "epoch_time_s", "peak_rss_bytes"}
    assert run_job(job_id, settings) == "skipped"
    with session_scope(database_url) as s:
        assert jobs.get(s, job_id=job_id).attempt == 1
        assert len(metrics.for_job(s, job_id=job_id)) == len(rows)


def test_shape_error_at_runtime_fails_the_job_with_the_message(database_url):
    # the planner refuses such a spec at submit time; a plan that went wrong since still fails cleanly
    settings = Settings(database_url=database_url)
    bad = {"layers": [{"type": "Linear", "in_features": 5, "out_features": 2}]}
    job_id = _make_job(database_url, {"layers": [{"type": "Linear", "in_features": 4, "out_features": 2}]},
                       plan_changes={"model": bad})
    assert run_job(job_id, settings) == "failed"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.status == "failed" and job.finished_at is not None
        assert "5" in job.error and "4" in job.error


@pytest.mark.parametrize("n, split", [(10, 0.2), (7, 0.5), (5, 0.0), (3, 0.01)])
def test_split_is_a_partition(n, split):
    train, val = split_indices(n, split, seed=1)
    assert sorted(np.concatenate([train, val]).tolist()) == list(range(n))
    assert len(val) == (max(1, round(n * split)) if split else 0)


def _job_with(url: str, inputs: np.ndarray, targets: np.ndarray, **training) -> str:
    with session_scope(url) as s:
        ds_id = datasets.create(s, name="d", inputs=inputs, targets=targets, task="classification").id
    spec = {"layers": [{"type": "Linear", "in_features": inputs.shape[1], "out_features": 2}]}
    return new_job(url, dataset_id=ds_id, model=spec, training={**TRAINING, **training})


def test_non_finite_loss_fails_as_a_user_error(database_url):
    # identical inputs with alternating labels and a huge step: the logits overflow to inf
    x, y = np.ones((16, 3), np.float32), np.arange(16) % 2
    job_id = _job_with(database_url, x, y, optimizer={"type": "SGD", "lr": 1e38})
    assert run_job(job_id, Settings(database_url=database_url)) == "failed"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.failure_kind == "user" and "loss became" in job.error


def test_time_limit_fails_the_job(database_url):
    x = np.random.default_rng(0).normal(size=(64, 3)).astype(np.float32)
    job_id = _job_with(database_url, x, (x[:, 0] > 0).astype(np.int64), epochs=1000, batch_size=1, time_limit_s=1)
    assert run_job(job_id, Settings(database_url=database_url)) == "failed"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.failure_kind == "timeout" and "time limit" in job.error and job.step > 0
