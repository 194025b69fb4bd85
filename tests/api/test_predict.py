"""POST /v1/jobs/{id}/predict over a real database: the trained model's own forward, per head."""
from __future__ import annotations

import base64
import json
import threading
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api import inference
from api.main import create_app
from config.settings import get_settings
from tests.api.checkpoints import forward_on_checkpoint
from worker.lifecycle import run_job

MLP = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 8}, {"type": "ReLU"},
                  {"type": "Linear", "in_features": 8, "out_features": 2}]}
CNN = {"layers": [{"type": "Conv2d", "in_channels": 1, "out_channels": 2, "kernel_size": 3}, {"type": "ReLU"},
                  {"type": "Flatten"}, {"type": "Linear", "in_features": 72, "out_features": 3}]}
TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}}
GRAPH = {"graph": {"inputs": ["x"], "nodes": [
    {"name": "body", "type": "Linear", "in_features": 4, "out_features": 8, "inputs": ["x"]},
    {"name": "act", "type": "ReLU", "inputs": ["body"]},
    {"name": "digit", "type": "Linear", "in_features": 8, "out_features": 4, "inputs": ["act"]},
    {"name": "parity", "type": "Linear", "in_features": 8, "out_features": 2, "inputs": ["act"]}],
    "outputs": {"digit": "digit", "parity": "parity"}}}


def _train(client, settings, model, dataset: dict, **training) -> dict:
    ds = client.post("/v1/datasets", json={"name": "d", **dataset})
    assert ds.status_code == 201, ds.text
    return _run(client, settings, ds.json()["id"], model, **training)


def _run(client, settings, dataset_id, model, **training) -> dict:
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": dataset_id, "model": model,
                                      "training": {**TRAINING, **training}})
    assert r.status_code == 202, r.text
    assert run_job(r.json()["id"], settings) == "succeeded"
    return client.get(f"/v1/jobs/{r.json()['id']}").json()


def _mlp_job(client, settings, **training) -> dict:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    return _train(client, settings, MLP, {"inputs": x.tolist(), "targets": (x[:, 0] > 0).astype(int).tolist()},
                  **training)


def _cnn_job(client, settings) -> dict:
    x = np.random.default_rng(1).normal(size=(24, 1, 8, 8)).astype(np.float32)
    return _train(client, settings, CNN, {"inputs": x.tolist(), "targets": [0, 1, 2] * 8})


def _predict(client, job_id, inputs, **body):
    # json.dumps writes NaN (httpx's json= refuses it), which the API's parser reads
    return client.post(f"/v1/jobs/{job_id}/predict", content=json.dumps({"inputs": inputs, **body}),
                       headers={"content-type": "application/json"})


def _encoded(x: np.ndarray) -> dict:
    return {"base64": base64.b64encode(x.astype("<f4").tobytes()).decode(), "dtype": "float32",
            "shape": list(x.shape)}


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_predict_is_the_engines_forward_on_the_checkpoint(client, settings, kind):
    job = _mlp_job(client, settings) if kind == "mlp" else _cnn_job(client, settings)
    shape = job["plan"]["input_shape"]
    x = np.random.default_rng(7).normal(size=(5, *shape)).astype(np.float32)
    r = _predict(client, job["id"], x.tolist())
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"outputs", "probabilities", "predictions", "checkpoint"}
    assert set(body["outputs"]) == set(body["probabilities"]) == set(body["predictions"]) == {"output"}
    out = np.asarray(body["outputs"]["output"], dtype=np.float32)
    want = forward_on_checkpoint(client, job, x)
    assert out.shape == want.shape and out.tobytes() == want.tobytes()  # bitwise
    probs = np.asarray(body["probabilities"]["output"])
    assert probs.shape == want.shape and np.allclose(probs.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    assert (probs >= 0).all()
    assert np.allclose(probs, np.exp(want) / np.exp(want).sum(axis=1, keepdims=True), rtol=1e-5)
    assert body["predictions"]["output"] == probs.argmax(axis=1).tolist()
    latest = [c for c in client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"] if c["latest"]][0]
    assert body["checkpoint"] == {"id": latest["id"], "epoch": latest["epoch"], "step": latest["step"]}
    assert body["checkpoint"]["epoch"] == 2
    # naming the checkpoint by id (or "latest") is the same answer
    assert _predict(client, job["id"], x.tolist(), checkpoint=latest["id"]).json() == body
    assert _predict(client, job["id"], x.tolist(), checkpoint="latest").json() == body


def test_base64_inputs_answer_as_lists_do(client, settings):
    job = _cnn_job(client, settings)
    x = np.random.default_rng(3).normal(size=(4, 1, 8, 8)).astype(np.float32)
    listed = _predict(client, job["id"], x.tolist())
    assert listed.status_code == 200
    assert _predict(client, job["id"], _encoded(x)).json() == listed.json()
    as64 = {"base64": base64.b64encode(x.astype("<f8").tobytes()).decode(), "dtype": "float64", "shape": [4, 1, 8, 8]}
    assert _predict(client, job["id"], as64).json() == listed.json()


def test_a_multitask_job_answers_every_head(client, settings):
    x = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    job = _train(client, settings, GRAPH, {"inputs": x.tolist(),
                                           "targets": {"digit": [0, 1, 2, 3] * 4, "parity": [0, 1] * 8}},
                 loss={"digit": {"type": "CrossEntropyLoss", "weight": 1.0},
                       "parity": {"type": "CrossEntropyLoss", "weight": 0.5}})
    q = np.random.default_rng(5).normal(size=(3, 4)).astype(np.float32)
    body = _predict(client, job["id"], q.tolist()).json()
    want = forward_on_checkpoint(client, job, q)
    for key in ("outputs", "probabilities", "predictions"):
        assert set(body[key]) == {"digit", "parity"}
    for head, width in (("digit", 4), ("parity", 2)):
        out = np.asarray(body["outputs"][head], dtype=np.float32)
        assert out.shape == (3, width) and out.tobytes() == want[head].tobytes()
        probs = np.asarray(body["probabilities"][head])
        assert np.allclose(probs.sum(axis=1), 1.0) and body["predictions"][head] == probs.argmax(axis=1).tolist()


def test_a_regression_job_gives_outputs_only(client, settings):
    ds = client.post("/v1/datasets/builtin", json={"builtin": "diabetes", "limit": 64})
    assert ds.status_code == 201, ds.text
    job = _run(client, settings, ds.json()["id"], {"zoo": "linear_regression"},
               optimizer={"type": "Adam", "lr": 0.01})
    assert job["plan"]["heads"]["output"]["task"] == "regression"
    x = np.random.default_rng(2).normal(size=(6, *job["plan"]["input_shape"])).astype(np.float32) * 0.05
    body = _predict(client, job["id"], x.tolist()).json()
    assert body["probabilities"] == {} and body["predictions"] == {}
    out = np.asarray(body["outputs"]["output"], dtype=np.float32)
    want = forward_on_checkpoint(client, job, x)
    assert out.shape == want.shape and out.tobytes() == want.tobytes()


def _loc_and_msg(r):
    assert r.status_code == 422, r.text
    d = r.json()["detail"][0]
    return d["loc"], d["msg"]


def test_bad_inputs_are_422_naming_the_field(client, settings):
    job = _cnn_job(client, settings)
    jid = job["id"]
    loc, msg = _loc_and_msg(_predict(client, jid, np.zeros((2, 8, 8)).tolist()))
    assert loc == ["body", "inputs"] and msg == "each input must have shape [1, 8, 8]; got [8, 8]"
    loc, msg = _loc_and_msg(_predict(client, jid, _encoded(np.zeros((2, 1, 8, 9), np.float32))))
    assert loc == ["body", "inputs"] and msg == "each input must have shape [1, 8, 8]; got [1, 8, 9]"
    nan = np.zeros((2, 1, 8, 8), np.float32)
    nan[1, 0, 3, 3] = np.nan
    for inputs in (nan.tolist(), _encoded(nan)):
        loc, msg = _loc_and_msg(_predict(client, jid, inputs))
        assert loc == ["body", "inputs"] and "NaN" in msg
    for inputs, words in (([], "non-empty"), ([[[[1.0] * 8] * 8], [[[1.0] * 7] * 8]], "rectangular"),
                          ("x", "list"), ({"base64": "AAAA", "dtype": "float32"}, "base64, dtype and shape")):
        loc, msg = _loc_and_msg(_predict(client, jid, inputs))
        assert loc == ["body", "inputs"] and words in msg, msg
    r = client.post(f"/v1/jobs/{jid}/predict", json={"inputs": [[0.0]], "extra": 1})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
    r = client.post(f"/v1/jobs/{jid}/predict", json={"checkpoint": "latest"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "inputs"]


def test_more_inputs_than_the_batch_limit_are_422(client, settings):
    job = _mlp_job(client, settings)
    settings.max_predict_batch = 4  # the app reads this settings object
    x = np.zeros((5, 3), np.float32)
    for inputs in (x.tolist(), _encoded(x)):
        loc, msg = _loc_and_msg(_predict(client, job["id"], inputs))
        assert loc == ["body", "inputs"] and msg == "inputs has 5 samples; at most 4 are allowed per request"
    assert _predict(client, job["id"], x[:4].tolist()).status_code == 200


def test_missing_things_are_404_and_no_checkpoint_is_409(client, settings):
    job = _mlp_job(client, settings)
    x = [[0.0, 1.0, 2.0]]
    r = _predict(client, job["id"], x, checkpoint="nope")
    assert r.status_code == 404 and "nope" in r.json()["detail"]
    assert _predict(client, "0" * 32, x).status_code == 404
    queued = client.post("/v1/jobs", json={"name": "q", "dataset_id": job["dataset_id"], "model": MLP,
                                           "training": TRAINING}).json()
    for which in ("latest", "best"):
        r = _predict(client, queued["id"], x, checkpoint=which)
        assert r.status_code == 409 and r.json()["detail"] == "the job has no checkpoint yet"


def test_another_owners_job_is_404(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    with TestClient(app) as c:
        ds = c.post("/v1/datasets", headers=alice, json={"name": "a", "inputs": [[0.0, 1.0, 2.0]] * 8,
                                                         "targets": [0, 1] * 4}).json()
        job = c.post("/v1/jobs", headers=alice, json={"name": "j", "dataset_id": ds["id"], "model": MLP,
                                                      "training": TRAINING}).json()
        assert run_job(job["id"], keyed) == "succeeded"
        body = {"inputs": [[0.0, 1.0, 2.0]]}
        assert c.post(f"/v1/jobs/{job['id']}/predict", headers=alice, json=body).status_code == 200
        r = c.post(f"/v1/jobs/{job['id']}/predict", headers=bob, json=body)
        assert r.status_code == 404 and r.json()["detail"] == f"job {job['id']} not found"
        assert c.post(f"/v1/jobs/{job['id']}/predict", json=body).status_code == 401


def test_best_uses_the_best_checkpoint(client, settings):
    # train_loss falls, so with mode max the "best" checkpoint is the first epoch's
    job = _mlp_job(client, settings, epochs=3, checkpoints={"keep_last": 1, "keep_best": 1,
                                                            "metric": "train_loss", "mode": "max"})
    items = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
    best = [c for c in items if c["best"]][0]
    latest = [c for c in items if c["latest"]][0]
    assert best["epoch"] == 1 and latest["epoch"] == 3
    x = np.random.default_rng(4).normal(size=(3, 3)).astype(np.float32)
    body = _predict(client, job["id"], x.tolist(), checkpoint="best").json()
    assert body["checkpoint"] == {"id": best["id"], "epoch": 1, "step": best["step"]}
    out = np.asarray(body["outputs"]["output"], dtype=np.float32)
    assert out.tobytes() == forward_on_checkpoint(client, job, x, "best").tobytes()
    assert out.tobytes() != forward_on_checkpoint(client, job, x, "latest").tobytes()
    assert _predict(client, job["id"], x.tolist(), checkpoint=best["id"]).json() == body


def test_a_second_call_uses_the_cached_model(client, settings):
    job = _mlp_job(client, settings)
    x = [[0.0, 1.0, 2.0]]
    before = inference.builds
    first = _predict(client, job["id"], x).json()
    assert inference.builds == before + 1 and first["checkpoint"]["id"] in inference.cache.keys()
    for _ in range(3):
        assert _predict(client, job["id"], x).json() == first
    assert inference.builds == before + 1


def test_the_cache_evicts_the_least_recently_used_model(client, settings):
    a, b = _mlp_job(client, settings), _mlp_job(client, settings, epochs=1)
    nbytes = (3 * 8 + 8 + 8 * 2 + 2) * 4  # the MLP's float32 weights
    settings.model_cache_bytes = nbytes  # room for one
    x = [[0.0, 1.0, 2.0]]
    before = inference.builds
    ida = _predict(client, a["id"], x).json()["checkpoint"]["id"]
    idb = _predict(client, b["id"], x).json()["checkpoint"]["id"]  # evicts a
    assert inference.builds == before + 2
    assert idb in inference.cache.keys() and ida not in inference.cache.keys()
    _predict(client, b["id"], x)
    assert inference.builds == before + 2  # b stayed
    _predict(client, a["id"], x)
    assert inference.builds == before + 3 and idb not in inference.cache.keys()
    settings.model_cache_bytes = nbytes - 1  # a model larger than the whole cache is served, not kept
    assert _predict(client, b["id"], x).status_code == 200
    assert _predict(client, b["id"], x).status_code == 200
    assert inference.builds == before + 5 and idb not in inference.cache.keys()
    assert inference.cache.nbytes <= nbytes - 1


def test_concurrent_misses_build_a_model_once():
    cache = inference.ModelCache()
    calls = []
    started = threading.Event()

    def load():
        calls.append(1)
        started.set()
        time.sleep(0.2)
        return inference.LoadedModel("c", 1, 1, None, {}, nbytes=10, chunk=1)

    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("c", load, 100))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 8 and all(g is got[0] for g in got)
    assert cache.hits == 7 and cache.misses == 1

    def fails():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        cache.get("d", fails, 100)
    assert cache.get("d", load, 100).nbytes == 10  # a failed load leaves nothing behind


def test_concurrent_requests_on_one_model_agree(client, settings):
    job = _cnn_job(client, settings)
    xs = [np.random.default_rng(i).normal(size=(8, 1, 8, 8)).astype(np.float32) for i in range(6)]
    want = [_predict(client, job["id"], x.tolist()).json() for x in xs]
    got: dict[int, dict] = {}

    def call(i):
        got[i] = _predict(client, job["id"], xs[i].tolist()).json()

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(xs)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [got[i] for i in range(len(xs))] == want
