"""Data-parallel jobs on CPU ranks: devices=2 with batch B trains like one device with batch
2B (same global batches, gradients averaged), and leaves no rank process behind."""
from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

from config.settings import Settings
from store.db import session_scope
from store.repositories import checkpoints, datasets, jobs, metrics
from tests.worker.jobs import new_job
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 6, "out_features": 16}, {"type": "Tanh"},
                   {"type": "Linear", "in_features": 16, "out_features": 3}]}


def _job(url: str, ds_id: str, devices: int, batch_size: int) -> str:
    training = {"epochs": 3, "batch_size": batch_size, "optimizer": {"type": "SGD", "lr": 0.2, "momentum": 0.9},
                "seed": 4, "validation_split": 0.2, "devices": devices, "checkpoint_every": 5}
    return new_job(url, name=f"d{devices}", dataset_id=ds_id, model=SPEC, training=training)


def _result(url: str, job_id: str):
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        weights = load_safetensors(checkpoints.latest_with_data(s, job_id=job_id).data)
        losses = [m.value for m in metrics.for_job(s, job_id=job_id, kind="step") if m.name == "loss"]
        return job, weights, losses


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_two_cpu_ranks_match_one_device_at_the_same_total_batch(database_url):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 6)).astype(np.float32)  # 160 train samples: 5 global batches of 32
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    with session_scope(database_url) as s:
        ds_id = datasets.create(s, name="d", inputs=x, targets=y, task="classification").id
    settings = Settings(database_url=database_url)
    single, double = _job(database_url, ds_id, 1, 32), _job(database_url, ds_id, 2, 16)
    assert run_job(single, settings) == "succeeded"
    assert run_job(double, settings) == "succeeded"
    (j1, w1, l1), (j2, w2, l2) = _result(database_url, single), _result(database_url, double)
    assert j2.total_steps == j1.total_steps == 15 and j2.step == 15
    assert np.allclose(l2, l1, rtol=1e-5, atol=1e-6)
    for key in w1:
        assert np.allclose(w2[key], w1[key], rtol=1e-4, atol=1e-5), key
    assert j2.final_metrics["val_accuracy"] == pytest.approx(j1.final_metrics["val_accuracy"], abs=1 / 40)
    assert j2.final_metrics["val_loss"] == pytest.approx(j1.final_metrics["val_loss"], rel=1e-4)
    assert multiprocessing.active_children() == []  # the follower rank is gone
