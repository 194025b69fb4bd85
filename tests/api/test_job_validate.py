"""POST /v1/jobs/validate: the submit path's checks without the job. A good body answers the
plan POST /v1/jobs would run; a bad one the same 422 (same loc and message) submit gives; and
neither writes a row, fine-tunes included (their checkpoint snapshot is rolled back)."""
from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Weights
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 8}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 8, "out_features": 3}]}
TRAINING = {"epochs": 2, "batch_size": 10, "optimizer": {"type": "SGD", "lr": 0.1}, "validation_split": 0.2}


@pytest.fixture
def dataset_id(client):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    r = client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(), "targets": y.tolist()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def _body(dataset_id, **training):
    return {"name": "v", "dataset_id": dataset_id, "model": SPEC, "training": {**TRAINING, **training}}


def _weights(settings) -> int:
    with session_scope(settings.resolved_database_url) as s:
        return s.scalar(select(func.count()).select_from(Weights))


def test_a_good_body_answers_the_plan_submit_would_run_and_stores_nothing(client, dataset_id, row_counts):
    before = row_counts()
    r = client.post("/v1/jobs/validate", json=_body(dataset_id))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["valid"] is True
    # 50 samples, 20% held out: 40 to train on in batches of 10
    assert body["plan"]["train_samples"] == 40 and body["plan"]["steps_per_epoch"] == 4
    assert body["plan"]["total_steps"] == 8
    assert body["plan"]["input_shape"] == [4]
    assert body["estimate"]["cpu"]["seconds"] > 0
    assert row_counts() == before
    submitted = client.post("/v1/jobs", json=_body(dataset_id)).json()
    assert submitted["plan"]["total_steps"] == body["plan"]["total_steps"]
    assert submitted["plan"]["flops_per_sample"] == body["plan"]["flops_per_sample"]


@pytest.mark.parametrize("change, pointer, says", [
    ({"training": {**TRAINING, "batch_size": 0}}, "/training/batch_size", "greater than or equal to 1"),
    ({"training": {**TRAINING, "optimizer": {"type": "SGD", "lr": -1}}}, "/training/optimizer/SGD/lr", "greater"),
    ({"dataset_id": "nope"}, "/dataset_id", "does not exist"),
    ({"model": {"layers": [{"type": "Linear", "in_features": 5, "out_features": 3}]}}, "/model/layers/0",
     "in_features"),
    ({"training": {**TRAINING, "epochs": 1, "typo": 1}}, "/training/typo", "Extra inputs"),
])
def test_a_bad_body_gets_the_422_submit_gives(client, dataset_id, row_counts, change, pointer, says):
    before = row_counts()
    body = {**_body(dataset_id), **change}
    r = client.post("/v1/jobs/validate", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["pointer"] == pointer and says in err["msg"], err
    submitted = client.post("/v1/jobs", json=body)
    assert submitted.status_code == 422 and submitted.json()["detail"][0] == err
    assert row_counts() == before


def test_a_fine_tune_is_checked_against_its_source_and_leaves_no_snapshot(client, settings, dataset_id, row_counts):
    parent = client.post("/v1/jobs", json=_body(dataset_id)).json()
    assert run_job(parent["id"], settings) == "succeeded"
    before, weights = row_counts(), _weights(settings)
    r = client.post("/v1/jobs/validate", json=_body(dataset_id, init={"job_id": parent["id"], "checkpoint": "best"}))
    assert r.status_code == 200, r.text
    assert r.json()["plan"]["init"]["weights_id"]
    wider = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 9}, {"type": "ReLU"},
                        {"type": "Linear", "in_features": 9, "out_features": 3}]}
    r = client.post("/v1/jobs/validate", json={**_body(dataset_id, init={"job_id": parent["id"]}), "model": wider})
    assert r.status_code == 422
    errs = r.json()["detail"]
    assert {e["pointer"] for e in errs} == {"/training/init"}
    msgs = " ".join(e["msg"] for e in errs)
    assert "0.weight" in msgs and "0.bias" in msgs and "2.weight" in msgs, msgs
    assert row_counts() == before and _weights(settings) == weights


def test_the_zoo_listing_names_every_model_and_its_arguments(client, dataset_id):
    r = client.get("/v1/specs/zoo")
    assert r.status_code == 200, r.text
    models = {m["name"]: m for m in r.json()["items"]}
    assert {"mlp", "simple_cnn", "resnet18", "linear_svm"} <= set(models)
    mlp = {a["name"]: a for a in models["mlp"]["args"]}
    assert mlp["hidden"] == {"name": "hidden", "type": "list", "default": [128, 64]}
    assert mlp["num_classes"]["default"] is None
    assert models["linear_svm"]["loss"] == "MultiMarginLoss"
    # what it lists is what a job accepts: the mlp with its listed argument values validates
    args = {a["name"]: a["default"] for a in models["mlp"]["args"] if a["default"] is not None}
    r = client.post("/v1/jobs/validate", json={**_body(dataset_id), "model": {"zoo": "mlp", "args": args}})
    assert r.status_code == 200, r.text


def test_the_spec_page_and_the_plan_give_one_memory_estimate(client, dataset_id):
    """/v1/specs/validate's training_memory_bytes is the planner's estimate (Adam, the default
    optimizer), not a second formula that disagrees with what submit checks."""
    body = _body(dataset_id, optimizer={"type": "Adam", "lr": 0.01}, batch_size=16)
    plan = client.post("/v1/jobs/validate", json=body).json()["plan"]
    spec = client.post("/v1/specs/validate", json={"model": SPEC, "dataset_id": dataset_id, "batch_size": 16})
    assert spec.status_code == 200, spec.text
    assert spec.json()["totals"]["training_memory_bytes"] == plan["memory_bytes"] > 0
