"""training.precision in the worker's loop (in-process, real database): a "16-mixed" plan that
reaches a CPU worker fails clearly naming training.precision; on a GPU worker (marked gpu) it
trains under autocast with a GradScaler, close to the float32 run."""
from __future__ import annotations

import numpy as np
import pytest

import engine
from config.settings import Settings
from store.db import session_scope
from store.repositories import datasets, jobs, metrics
from tests.worker.jobs import new_job
from worker import precision
from worker.lifecycle import run_job

TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "Adam", "lr": 0.01}, "seed": 3,
            "validation_split": 0.25, "clip_grad_norm": 5.0}
SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 16, "out_features": 2}]}


def _dataset(url: str) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 4)).astype(np.float32)
    with session_scope(url) as s:
        return datasets.create(s, name="d", inputs=x, targets=(x[:, 0] > 0).astype(np.int64),
                               task="classification").id


def _losses(url: str, job_id: str) -> list[float]:
    with session_scope(url) as s:
        return [r.value for r in metrics.for_job(s, job_id=job_id) if r.name == "loss"]


def test_mixed_plan_on_a_cpu_worker_fails_naming_the_field(database_url):
    ds = _dataset(database_url)
    job_id = new_job(database_url, dataset_id=ds, model=SPEC, training=TRAINING,
                     plan_changes={"training": {**TRAINING, "precision": "16-mixed"}})
    assert run_job(job_id, Settings(database_url=database_url, device="cpu")) == "failed"
    with session_scope(database_url) as s:
        job = jobs.get(s, job_id=job_id)
        assert job.failure_kind == "user" and "training.precision 16-mixed needs a GPU worker" in job.error


def test_precision_32_is_a_no_op_region_and_a_disabled_scaler():
    region, scaler = precision.for_training("32", "cpu")
    loss = engine.ones(())
    with region():
        assert not engine.amp.is_autocast_enabled("cpu") and not engine.amp.is_autocast_enabled("cuda")
    assert not scaler.is_enabled() and scaler.scale(loss) is loss
    with pytest.raises(precision.PrecisionUnavailable, match="bfloat16"):
        precision.for_training("bf16-mixed", "cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not engine.cuda.is_available(), reason="needs a CUDA GPU with cupy")
def test_mixed_job_trains_on_the_gpu_close_to_float32(database_url):
    ds = _dataset(database_url)
    gpu = Settings(database_url=database_url, device="cuda")
    full = new_job(database_url, dataset_id=ds, model=SPEC, training=TRAINING)
    mixed = new_job(database_url, dataset_id=ds, model=SPEC, training={**TRAINING, "precision": "16-mixed"})
    assert run_job(full, gpu) == run_job(mixed, gpu) == "succeeded"
    a, b = _losses(database_url, full), _losses(database_url, mixed)
    assert len(a) == len(b) == 8 and all(np.isfinite(b))
    np.testing.assert_allclose(b, a, rtol=2e-2, atol=2e-3)
