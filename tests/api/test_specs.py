"""POST /v1/specs/validate, submit-time validation against the dataset, and fuzzing: a
malformed spec, dataset or config is a 4xx with a pointer and a message, never a 500, and
writes nothing."""
from __future__ import annotations

import base64
import copy
import io
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

SEED_CNN = {"layers": [
    {"type": "Conv2d", "in_channels": 1, "out_channels": 32, "kernel_size": 3}, {"type": "ReLU"},
    {"type": "Conv2d", "in_channels": 32, "out_channels": 64, "kernel_size": 3}, {"type": "ReLU"},
    {"type": "Flatten"}, {"type": "Linear", "in_features": 64 * 7 * 7, "out_features": 128}, {"type": "ReLU"},
    {"type": "Linear", "in_features": 128, "out_features": 10}]}
TRAINING = {"epochs": 1, "batch_size": 4, "optimizer": {"type": "SGD", "lr": 0.1}}


def test_seed_cnn_is_rejected_naming_its_first_linear_and_the_features(client):
    r = client.post("/v1/specs/validate", json={"model": SEED_CNN, "input_shape": [1, 28, 28]})
    assert r.status_code == 422, r.text
    err = r.json()["detail"][0]
    assert err["pointer"] == "/model/layers/5" and "Linear" in err["msg"]
    assert "36864" in err["msg"] and "3136" in err["msg"]


def test_validate_returns_the_node_table_and_totals(client):
    r = client.post("/v1/specs/validate", json={"model": {"zoo": "simple_cnn"}, "input_shape": [1, 28, 28],
                                                "num_classes": 10})
    assert r.status_code == 200, r.text
    body = r.json()
    assert [n["type"] for n in body["nodes"]][:3] == ["Conv2d", "ReLU", "MaxPool2d"]
    assert body["nodes"][0]["output_shape"] == [None, 32, 28, 28]
    assert body["outputs"] == {"output": [None, 10]}
    assert body["totals"]["parameters"] == sum(n["parameters"] for n in body["nodes"]) == 421642


@pytest.fixture
def digits_id(client):
    r = client.post("/v1/datasets/builtin", json={"builtin": "digits", "limit": 40})
    assert r.status_code == 201, r.text
    return r.json()["id"]


def test_builtin_preview_and_inline_base64(client):
    r = client.post("/v1/datasets/builtin", json={"builtin": "diabetes", "limit": 30})
    ds = r.json()
    assert ds["task"] == "regression" and ds["targets"]["output"]["dtype"] == "float32"
    p = client.get(f"/v1/datasets/{ds['id']}/preview?rows=2").json()
    assert len(p["inputs"]) == 2 and set(p["statistics"]["output"]) == {"min", "max", "mean", "std"}
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    enc = {"base64": base64.b64encode(x.tobytes()).decode(), "dtype": "float32", "shape": [3, 4]}
    r = client.post("/v1/datasets", json={"name": "b", "inputs": enc, "targets": {"a": [0, 1, 1], "b": [1, 0, 2]}})
    assert r.status_code == 201, r.text
    assert r.json()["targets"]["b"]["num_classes"] == 3
    assert client.get(f"/v1/datasets/{r.json()['id']}/preview").json()["histograms"] == {"a": [1, 2], "b": [1, 1, 1]}


def test_uploads_npz_and_csv(client):
    buf = io.BytesIO()
    np.savez(buf, inputs=np.ones((4, 3), np.float32), targets=np.array([0, 1, 0, 1]))
    r = client.post("/v1/datasets/upload", data={"name": "u"}, files={"file": ("d.npz", buf.getvalue())})
    assert r.status_code == 201 and r.json()["input_shape"] == [3], r.text
    csv = b"a,b,label\n1,2,0\n3,4,1\n5,6,1\n"
    r = client.post("/v1/datasets/upload", data={"name": "c", "target_columns": "label"},
                    files={"file": ("d.csv", csv)})
    assert r.status_code == 201 and r.json()["num_classes"] == 2, r.text
    r = client.post("/v1/datasets/upload", data={"name": "c", "target_columns": "nope"}, files={"file": ("d.csv", csv)})
    assert r.status_code == 422 and r.json()["detail"][0]["pointer"] == "/target_columns"


def test_limits_are_422s_naming_the_limit(client, settings, digits_id, row_counts):
    before = row_counts()
    settings.max_parameters = 1000
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": digits_id, "model": {"zoo": "mlp"},
                                      "training": TRAINING})
    assert r.status_code == 422 and "max_parameters" in r.json()["detail"][0]["msg"]
    settings.max_total_steps = 2
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": digits_id, "model": {"zoo": "linear_svm"},
                                      "training": TRAINING})
    assert r.status_code == 422 and "max_total_steps" in r.json()["detail"][0]["msg"]
    assert row_counts() == before


def test_multitask_job_is_accepted_and_heads_resolved(client, digits_id):
    x = np.random.default_rng(0).normal(size=(8, 4)).tolist()
    ds = client.post("/v1/datasets", json={"name": "m", "inputs": x,
                                           "targets": {"digit": [0, 1, 2, 3] * 2, "parity": [0, 1] * 4}}).json()
    graph = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "body", "type": "Linear", "in_features": 4, "out_features": 8, "inputs": ["x"]},
        {"name": "digit", "type": "Linear", "in_features": 8, "out_features": 4, "inputs": ["body"]},
        {"name": "parity", "type": "Linear", "in_features": 8, "out_features": 2, "inputs": ["body"]}],
        "outputs": {"digit": "digit", "parity": "parity"}}}
    training = {**TRAINING, "loss": {"digit": {"type": "CrossEntropyLoss", "weight": 1.0},
                                     "parity": {"type": "CrossEntropyLoss", "weight": 0.5}},
                "metrics": {"digit": ["accuracy", "f1"], "parity": ["accuracy"]}}
    r = client.post("/v1/jobs", json={"name": "mt", "dataset_id": ds["id"], "model": graph, "training": training})
    assert r.status_code == 202, r.text
    assert r.json()["plan"]["heads"]["parity"]["loss"]["weight"] == 0.5
    assert "heads" not in r.json()["training"]
    bad = copy.deepcopy(graph)
    bad["graph"]["nodes"][2]["out_features"] = 1
    r = client.post("/v1/jobs", json={"name": "mt", "dataset_id": ds["id"], "model": bad, "training": training})
    assert r.status_code == 422 and "parity" in r.json()["detail"][0]["msg"]


# ---- fuzzing -----------------------------------------------------------------------------

VALID_JOB = {"name": "f", "model": {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64,
                                                                      "out_features": 10}]},
             "training": {**TRAINING, "scheduler": {"type": "StepLR", "step_size": 1},
                          "early_stopping": {"metric": "val_loss"}, "metrics": ["accuracy", "top3_accuracy"]}}
VALID_DATASET = {"name": "d", "inputs": [[0.5, 1.0], [2.0, 3.0]], "targets": [0, 1]}
weird = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=20), st.lists(st.integers(-3, 10**9), max_size=4),
                  st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
                  st.recursive(st.integers(0, 3), lambda c: st.lists(c, min_size=1, max_size=2), max_leaves=60))


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


@st.composite
def mutated(draw, base):
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(doc) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent[key]
        action = draw(st.sampled_from(["set", "delete", "add"]))
        if action == "delete" and isinstance(parent, dict):
            del parent[path[-1]]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.sampled_from(["type", "x", "é", "inputs", "nodes", "dim"]))] = draw(weird)
        else:
            parent[path[-1]] = draw(weird)
    return doc


def _post(client, url, doc):
    raw = json.dumps(doc, allow_nan=True)
    return client.post(url, content=raw, headers={"content-type": "application/json"})


@hsettings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_fuzzed_requests_are_4xx_with_a_message_and_write_nothing(client, digits_id, row_counts, data):
    job = {**VALID_JOB, "dataset_id": digits_id}
    kind = data.draw(st.sampled_from(["job", "dataset", "spec"]))
    before = row_counts()
    if kind == "job":
        r = _post(client, "/v1/jobs", data.draw(mutated(job)))
        ok = 202
    elif kind == "dataset":
        r = _post(client, "/v1/datasets", data.draw(mutated(VALID_DATASET)))
        ok = 201
    else:
        r = _post(client, "/v1/specs/validate", {"model": data.draw(mutated(job["model"])), "input_shape": [1, 8, 8]})
        ok = 200
    assert r.status_code < 500, r.text
    if r.status_code != ok:
        assert 400 <= r.status_code < 500
        detail = r.json()["detail"]
        assert isinstance(detail, str) or all(d["msg"] and d["pointer"].startswith("/") for d in detail), detail
        assert row_counts() == before
