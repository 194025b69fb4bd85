"""POST/GET /v1/jobs and results: a valid job is committed then enqueued; bad ones write nothing."""
from __future__ import annotations

import copy

import pytest
import redis

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4, "out_features": 3}]}
TRAINING = {"epochs": 2, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 1, "validation_split": 0.25}


@pytest.fixture
def dataset_id(client):
    body = {"name": "d", "inputs": [[[0, 1], [2, 3]]] * 4, "targets": [0, 1, 2, 0]}
    return client.post("/v1/datasets", json=body).json()["id"]


def _job(ds_id, **changes):
    body = {"name": "j", "dataset_id": ds_id, "model": copy.deepcopy(SPEC), "training": copy.deepcopy(TRAINING)}
    body.update(changes)
    return body


def test_submit_commits_then_enqueues(client, settings, dataset_id):
    r = client.post("/v1/jobs", json=_job(dataset_id))
    assert r.status_code == 202, r.text
    job = r.json()
    # the plan counts the steps at submit time: 2 epochs of 2 batches
    assert job["status"] == "queued" and job["progress"] == {"epoch": 0, "epochs": 2, "step": 0, "total_steps": 4}
    assert job["plan"]["steps_per_epoch"] == 2 and set(job["plan"]["heads"]) == {"output"}
    assert job["training"]["optimizer"] == {"type": "SGD", "lr": 0.1, "momentum": 0.0, "dampening": 0.0,
                                           "weight_decay": 0.0, "nesterov": False}
    assert client.get(f"/v1/jobs/{job['id']}").json()["id"] == job["id"]
    assert [j["id"] for j in client.get("/v1/jobs").json()["items"]] == [job["id"]]
    # the Celery message waits in the job queue, naming the job
    broker = redis.Redis.from_url(settings.redis_url)
    assert broker.llen(f"{settings.queue}.cpu") == 1  # no GPU worker is live: the CPU queue
    assert job["id"].encode() in broker.lindex(f"{settings.queue}.cpu", 0)
    assert client.get(f"/v1/jobs/{job['id']}/metrics").json() == {"job_id": job["id"], "steps": [], "epochs": [],
                                                               "series": {}, "last_step": 0}
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints").json() == {"items": []}
    assert client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/download").status_code == 404


def _model_with(layer):
    return {"layers": [{"type": "Flatten"}, layer]}


@pytest.mark.parametrize(
    "changes, loc, words",
    [
        ({"model": _model_with({"type": "Linearr", "in_features": 4, "out_features": 3})},
         ["body", "model", "layers", 1, "type"], "unknown layer type 'Linearr'"),
        ({"model": _model_with({"type": "Linear", "in_features": 4, "out_feature": 3})},
         ["body", "model", "layers", 1, "out_feature"], "no argument 'out_feature'"),
        ({"model": _model_with({"type": "Linear", "in_features": 4})},
         ["body", "model", "layers", 1], "out_features"),
        ({"model": {"layers": []}}, ["body", "model", "layers"], "non-empty"),
        ({"model": {"graph": {}}}, ["body", "model", "graph", "nodes"], "non-empty list"),
        ({"dataset_id": "missing"}, ["body", "dataset_id"], "does not exist"),
        ({"training": {**TRAINING, "epochs": 0}}, ["body", "training", "epochs"], "greater than or equal to 1"),
        ({"training": {**TRAINING, "optimizer": {"type": "Adamm", "lr": 1}}}, ["body", "training", "optimizer"],
     "Adam"),
        ({"training": {**TRAINING, "optimizer": {"type": "SGD", "lr": -1}}},
     ["body", "training", "optimizer", "SGD", "lr"], "greater than 0"),
        ({"training": {**TRAINING, "validation_split": 1.5}}, ["body", "training", "validation_split"], "less than 1"),
        ({"training": {**TRAINING, "epochz": 3}}, ["body", "training", "epochz"], "Extra inputs"),
    ],
)
def test_bad_jobs_are_rejected_naming_the_field(client, settings, row_counts, dataset_id, changes, loc, words):
    before = row_counts()
    r = client.post("/v1/jobs", json=_job(dataset_id, **changes))
    assert r.status_code == 422, r.text
    errs = r.json()["detail"]
    assert any(e["loc"] == loc for e in errs), errs
    assert any(words in e["msg"] for e in errs), errs
    assert row_counts() == before
    assert redis.Redis.from_url(settings.redis_url).llen(f"{settings.queue}.cpu") == 0


def test_unknown_job_is_404(client):
    for path in ("/v1/jobs/x", "/v1/jobs/x/metrics", "/v1/jobs/x/checkpoints"):
        assert client.get(path).status_code == 404


def test_health_reports_database_and_broker(client):
    assert client.get("/v1/health").json() == {"status": "ok", "database": "ok", "broker": "ok"}


def test_dashboard_is_served(client):
    r = client.get("/")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
