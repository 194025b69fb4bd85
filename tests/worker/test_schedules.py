"""Schedulers the worker drives: per-epoch ones step once an epoch, OneCycleLR once an
optimizer step, ReduceLROnPlateau on the validation loss; their state resumes with the job."""
from __future__ import annotations

import io

import numpy as np
import pytest

import engine
from config.settings import Settings
from store.db import session_scope
from store.repositories import checkpoints, datasets, metrics
from tests.worker.jobs import new_job
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}


def _run(url: str, scheduler: dict) -> tuple[dict, list[float]]:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    training = {"epochs": 4, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 0,
                "validation_split": 0.2, "scheduler": scheduler}
    with session_scope(url) as s:
        ds = datasets.create(s, name="d", inputs=x, targets=(x[:, 0] > 0).astype(np.int64), task="classification")
        ds_id = ds.id
    job_id = new_job(url, dataset_id=ds_id, model=SPEC, training=training)
    assert run_job(job_id, Settings(database_url=url)) == "succeeded"
    with session_scope(url) as s:
        state = engine.load(io.BytesIO(checkpoints.latest_with_data(s, job_id=job_id, with_state=True).state))
        val = [m.value for m in metrics.for_job(s, job_id=job_id, kind="epoch") if m.name == "val_loss"]
    return state["position"]["scheduler"], val


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_one_cycle_steps_per_optimizer_step(database_url):
    state, _ = _run(database_url, {"type": "OneCycleLR", "max_lr": 0.5, "total_steps": 16})
    assert state["last_epoch"] == 16  # 4 epochs x 4 steps; one more step would raise


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_step_lr_steps_per_epoch(database_url):
    state, _ = _run(database_url, {"type": "StepLR", "step_size": 1, "gamma": 0.5})
    assert state["last_epoch"] == 4 and state["_last_lr"] == [pytest.approx(0.1 * 0.5**4)]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_reduce_on_plateau_watches_the_validation_loss(database_url):
    state, val = _run(database_url, {"type": "ReduceLROnPlateau", "patience": 0, "factor": 0.5})
    assert state["best"] == pytest.approx(min(val))
    assert state["last_epoch"] == 4
