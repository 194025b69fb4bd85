"""training.precision at submit, over SQLite and PostgreSQL: mixed precision on a job routed to
the CPU queue (no GPU worker live, or device "cpu") is a 422 naming training.precision with
nothing written; a GPU job may ask for 16-mixed; "32" is accepted and trains as before."""
from __future__ import annotations

import numpy as np
import pytest

from config.settings import Settings
from store.db import session_scope
from store.repositories import metrics
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}


@pytest.fixture
def dataset_id(client) -> str:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    r = client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(),
                                          "targets": (x[:, 0] > 0).astype(int).tolist()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _body(dataset_id: str, **training) -> dict:
    return {"name": "p", "dataset_id": dataset_id, "model": SPEC,
            "training": {"epochs": 2, "batch_size": 8, "seed": 1, "optimizer": {"type": "SGD", "lr": 0.1},
                         **training}}


@pytest.mark.parametrize("precision, device, says", [
    ("16-mixed", None, "needs a GPU job"),  # no GPU worker is live here: routed to the CPU queue
    ("16-mixed", "cpu", "needs a GPU job"),
    ("bf16-mixed", "gpu", "bfloat16"),
])
def test_mixed_precision_on_a_cpu_job_is_a_422_naming_the_field(client, settings, dataset_id, row_counts,
                                                                precision, device, says):
    before = row_counts()
    extra = {"device": device} if device else {}
    r = client.post("/v1/jobs", json=_body(dataset_id, precision=precision, **extra))
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["pointer"] == "/training/precision" and says in err["msg"], err
    assert row_counts() == before


def test_a_gpu_job_may_ask_for_16_mixed(client, dataset_id):
    r = client.post("/v1/jobs", json=_body(dataset_id, precision="16-mixed", device="gpu"))
    assert r.status_code == 202, r.text
    assert r.json()["training"]["precision"] == "16-mixed" and r.json()["plan"]["device_kind"] == "gpu"


def test_an_unknown_precision_is_a_422(client, dataset_id):
    r = client.post("/v1/jobs", json=_body(dataset_id, precision="8"))
    assert r.status_code == 422 and r.json()["detail"][0]["pointer"] == "/training/precision", r.text


def test_precision_32_trains_exactly_as_a_job_without_it(client, settings, dataset_id):
    plain = client.post("/v1/jobs", json=_body(dataset_id)).json()
    explicit = client.post("/v1/jobs", json=_body(dataset_id, precision="32")).json()
    assert plain["training"]["precision"] == explicit["training"]["precision"] == "32"
    worker = Settings(database_url=settings.database_url, device="cpu")
    assert run_job(plain["id"], worker) == run_job(explicit["id"], worker) == "succeeded"
    with session_scope(settings.resolved_database_url) as s:
        curves = [[(r.step, r.value) for r in metrics.for_job(s, job_id=j) if r.name == "loss"]
                  for j in (plain["id"], explicit["id"])]
    assert len(curves[0]) == 8 and curves[0] == curves[1]
