"""GET /v1/jobs/{id}/export through the real app in-process: a trained job's ONNX file runs in
onnxruntime like the engine on the same checkpoint; safetensors is the checkpoint file; the
422s (unknown format, a layer ONNX cannot express), 404s and the 409 of a queued job."""
from __future__ import annotations

import io

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

import engine
from api.main import create_app
from config.settings import get_settings
from engine.spec import build_model
from worker.lifecycle import run_job

TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "Adam", "lr": 1e-2}, "validation_split": 0.25,
            "seed": 0}
PROJ_LSTM = {"graph": {"inputs": ["x"], "nodes": [
    {"name": "sequence", "op": "reshape", "shape": [-1, 4, 2], "inputs": ["x"]},
    {"name": "rnn", "type": "LSTM", "input_size": 2, "hidden_size": 4, "proj_size": 2, "batch_first": True,
     "inputs": ["sequence"]},
    {"name": "states", "op": "getitem", "index": 0, "inputs": ["rnn"]},
    {"name": "last", "op": "select", "dim": 1, "index": -1, "inputs": ["states"]},
    {"name": "fc", "type": "Linear", "in_features": 2, "out_features": 2, "inputs": ["last"]}], "outputs": "fc"}}


def _submit(client, model: dict, dataset: dict | None = None, headers: dict | None = None) -> str:
    if dataset is None:
        x = np.random.default_rng(0).normal(size=(24, 8)).astype(np.float32)
        dataset = {"name": "d", "inputs": x.tolist(), "targets": (x[:, 0] > 0).astype(int).tolist()}
    ds = client.post("/v1/datasets", json=dataset, headers=headers or {})
    assert ds.status_code == 201, ds.text
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": ds.json()["id"], "model": model,
                                      "training": TRAINING}, headers=headers or {})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def _export(client, job_id: str, **params):
    return client.get(f"/v1/jobs/{job_id}/export", params=params)


def test_onnx_export_runs_like_the_engine_on_the_checkpoint(client, settings):
    ds = client.post("/v1/datasets/builtin", json={"builtin": "digits", "limit": 24})
    assert ds.status_code == 201, ds.text
    r = client.post("/v1/jobs", json={"name": "r18", "dataset_id": ds.json()["id"], "training": TRAINING,
                                      "model": {"zoo": "resnet18", "args": {"width": 2}}})
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert run_job(job_id, settings) == "succeeded"

    r = _export(client, job_id, format="onnx")
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    assert r.headers["content-disposition"].endswith('.onnx"')
    proto = onnx.load_from_string(r.content)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["x"] and [o.name for o in proto.graph.output] == ["output"]

    weights = _export(client, job_id, format="safetensors")
    assert weights.status_code == 200
    assert weights.content == client.get(f"/v1/jobs/{job_id}/checkpoints/latest/download").content
    assert weights.headers["content-disposition"].endswith('.safetensors"')

    job = client.get(f"/v1/jobs/{job_id}").json()
    model = build_model(job["model"], job["plan"]["input_shape"], num_classes=job["plan"]["num_outputs"])
    model.load_state_dict(engine.load(io.BytesIO(weights.content)))
    model.eval()
    sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
    for n in (1, 7):
        x = np.random.default_rng(n).uniform(0, 1, size=(n, 1, 8, 8)).astype(np.float32)
        with engine.no_grad():
            want = np.asarray(model(engine.tensor(x)))
        (got,) = sess.run(None, {"x": x})
        assert got.shape == (n, 10)
        assert float(np.abs(got - want).max()) <= 1e-4

    items = client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]
    assert len(items) == 2
    assert _export(client, job_id).headers["x-checkpoint-id"] == [c for c in items if c["latest"]][0]["id"]
    best = [c for c in items if c["best"]][0]["id"]
    assert _export(client, job_id, checkpoint="best").headers["x-checkpoint-id"] == best
    first = _export(client, job_id, checkpoint=items[0]["id"])
    assert first.status_code == 200 and first.headers["x-checkpoint-id"] == items[0]["id"]
    assert first.content != r.content  # other weights
    assert _export(client, job_id, checkpoint="nope").status_code == 404


def test_export_422s_name_the_format_and_the_layer(client, settings):
    job_id = _submit(client, PROJ_LSTM)
    assert run_job(job_id, settings) == "succeeded"
    r = _export(client, job_id, format="tflite")
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["query", "format"] and "tflite" in r.json()["detail"][0]["msg"]
    assert _export(client, job_id, fmt="onnx").status_code == 422  # unknown query parameter

    r = _export(client, job_id, format="onnx")
    assert r.status_code == 422, r.text
    detail = r.json()["detail"][0]
    assert detail["loc"] == ["query", "format"]
    assert "rnn (LSTM)" in detail["msg"] and "proj_size" in detail["msg"]
    assert _export(client, job_id, format="safetensors").status_code == 200  # the weights still download


def test_jobs_without_checkpoints_and_other_owners(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    with TestClient(app) as client:
        spec = {"layers": [{"type": "Linear", "in_features": 8, "out_features": 2}]}
        job_id = _submit(client, spec, headers=alice)
        r = client.get(f"/v1/jobs/{job_id}/export", headers=alice)
        assert r.status_code == 409 and "queued" in r.json()["detail"]
        assert client.get(f"/v1/jobs/{job_id}/export", params={"checkpoint": "abc"}, headers=alice).status_code == 404
        assert client.get(f"/v1/jobs/{job_id}/export", headers=bob).status_code == 404
        assert client.get("/v1/jobs/nope/export", headers=alice).status_code == 404
        client.post(f"/v1/jobs/{job_id}/cancel", headers=alice)
        r = client.get(f"/v1/jobs/{job_id}/export", headers=alice)
        assert r.status_code == 404 and "no checkpoint" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["onnx", "safetensors"])
def test_multitask_heads_are_onnx_outputs(client, settings, fmt):
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data[:32] / 16).tolist(), d.target[:32]
    graph = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "trunk", "type": "Linear", "in_features": 64, "out_features": 16, "inputs": ["x"]},
        {"name": "act", "op": "relu", "inputs": ["trunk"]},
        {"name": "res", "op": "add", "inputs": ["act", "trunk"]},
        {"name": "digit", "type": "Linear", "in_features": 16, "out_features": 10, "inputs": ["res"]},
        {"name": "parity", "type": "Linear", "in_features": 16, "out_features": 2, "inputs": ["act"]}],
        "outputs": {"digit": "digit", "parity": "parity"}}}
    job_id = _submit(client, graph, {"name": "mt", "inputs": x,
                                     "targets": {"digit": y.tolist(), "parity": (y % 2).tolist()}})
    assert run_job(job_id, settings) == "succeeded"
    r = _export(client, job_id, format=fmt)
    assert r.status_code == 200, r.text
    if fmt == "onnx":
        sess = ort.InferenceSession(r.content, providers=["CPUExecutionProvider"])
        assert [o.name for o in sess.get_outputs()] == ["digit", "parity"]
        digit, parity = sess.run(None, {"x": np.zeros((3, 64), np.float32)})
        assert digit.shape == (3, 10) and parity.shape == (3, 2)
