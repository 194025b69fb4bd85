"""Fine-tuning and warm starts through the API in-process: uploaded weights are checked as
untrusted input (nothing stored when refused), a job starts from another job's checkpoint or
from uploaded weights, mismatches are listed, frozen parameters keep their values, and a
fine-tune on the same data starts at the parent's final training loss."""
from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest
from safetensors.numpy import save as save_safetensors
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Weights
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 4, "out_features": 16}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 16, "out_features": 3}]}
TRAINING = {"epochs": 6, "batch_size": 16, "optimizer": {"type": "Adam", "lr": 0.02}, "seed": 1,
            "validation_split": 0.2}


@pytest.fixture
def dataset_id(client):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5)
    return client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(), "targets": y.tolist()}).json()["id"]


def _weights_count(settings) -> int:
    with session_scope(settings.resolved_database_url) as s:
        return s.scalar(select(func.count()).select_from(Weights))


def _upload(client, data: bytes, name="w.safetensors"):
    return client.post("/v1/weights", files={"file": (name, data)})


def _header_file(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


@pytest.mark.parametrize("data, says", [
    (b"\x01\x02", "shorter than"),
    (struct.pack("<Q", 10**6) + b"{}", "past the end"),
    (_header_file({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b""), "data_offsets"),
    (_header_file({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                   "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, bytes(12)), "overlaps"),
    (_header_file({"w": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8)), "not allowed"),
    (_header_file({"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4]}}, bytes(4)), "elements"),
    (pickle.dumps({"w": np.zeros(3)}), "safetensors"),
    (_header_file({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8)), "trailing"),
])
def test_a_bad_weights_file_is_refused_and_stores_nothing(client, settings, data, says):
    before = _weights_count(settings)
    r = _upload(client, data)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "file"], r.text
    assert says in r.json()["detail"][0]["msg"]
    assert _weights_count(settings) == before


def _final_train_loss(client, job_id):
    return client.get(f"/v1/jobs/{job_id}/metrics").json()["epochs"][-1]["train_loss"]


def test_fine_tune_from_a_job_starts_at_its_final_training_loss(client, settings, dataset_id):
    parent = client.post("/v1/jobs", json={"name": "p", "dataset_id": dataset_id, "model": SPEC,
                                           "training": TRAINING}).json()
    assert run_job(parent["id"], settings) == "succeeded"
    tiny = {**TRAINING, "epochs": 1, "optimizer": {"type": "SGD", "lr": 1e-6}}
    child = client.post("/v1/jobs", json={"name": "c", "dataset_id": dataset_id, "model": SPEC,
                                          "training": {**tiny, "init": {"job_id": parent["id"]}}})
    assert child.status_code == 202, child.text
    fresh = client.post("/v1/jobs", json={"name": "f", "dataset_id": dataset_id, "model": SPEC,
                                          "training": tiny}).json()
    for job in (child.json(), fresh):
        assert run_job(job["id"], settings) == "succeeded"
    start, parent_end = _final_train_loss(client, child.json()["id"]), _final_train_loss(client, parent["id"])
    from_scratch = _final_train_loss(client, fresh["id"])
    assert abs(start - parent_end) < 0.2 * abs(from_scratch - parent_end)
    # the parent's checkpoint was copied: retention on the parent cannot take it away
    weights_id = child.json()["plan"]["init"]["weights_id"]
    copy = client.get(f"/v1/weights/{weights_id}").json()
    assert copy["name"].startswith(f"job {parent['id']} checkpoint")


def test_uploaded_weights_with_a_frozen_layer(client, settings, dataset_id):
    rng = np.random.default_rng(3)
    state = {"0.weight": rng.normal(size=(16, 4)).astype(np.float32), "0.bias": np.zeros(16, np.float32),
             "2.weight": rng.normal(size=(3, 16)).astype(np.float32), "2.bias": np.zeros(3, np.float32)}
    up = _upload(client, save_safetensors(state))
    assert up.status_code == 201, up.text
    assert up.json()["tensors"]["0.weight"] == {"dtype": "F32", "shape": [16, 4]}
    job = client.post("/v1/jobs", json={"name": "frozen", "dataset_id": dataset_id, "model": SPEC, "training": {
        **TRAINING, "epochs": 2, "init": {"weights_id": up.json()["id"], "freeze": ["0."]}}})
    assert job.status_code == 202, job.text
    assert run_job(job.json()["id"], settings) == "succeeded"
    from safetensors.numpy import load as load_safetensors

    trained = load_safetensors(client.get(f"/v1/jobs/{job.json()['id']}/checkpoints/latest/download").content)
    assert np.array_equal(trained["0.weight"], state["0.weight"]) and np.array_equal(trained["0.bias"], state["0.bias"])
    assert not np.array_equal(trained["2.weight"], state["2.weight"])


def test_weights_that_do_not_fit_list_every_mismatch(client, settings, dataset_id):
    bad = {"0.weight": np.zeros((16, 5), np.float32), "0.bias": np.zeros(16, np.float32),
           "extra": np.zeros(1, np.float32)}
    wid = _upload(client, save_safetensors(bad)).json()["id"]
    before = _weights_count(settings)
    r = client.post("/v1/jobs", json={"name": "x", "dataset_id": dataset_id, "model": SPEC,
                                      "training": {**TRAINING, "init": {"weights_id": wid, "freeze": ["9."]}}})
    assert r.status_code == 422
    msgs = [d["msg"] for d in r.json()["detail"]]
    assert all(d["loc"] == ["body", "training", "init"] for d in r.json()["detail"])
    for needle in ("0.weight: the model has shape [16, 4], the weights [16, 5]", "2.weight: missing",
                   "2.bias: missing", "extra: not a parameter", "freeze '9.'"):
        assert any(needle in m for m in msgs), (needle, msgs)
    loose = client.post("/v1/jobs", json={"name": "x", "dataset_id": dataset_id, "model": SPEC,
                                          "training": {**TRAINING, "init": {"weights_id": wid, "strict": False}}})
    assert loose.status_code == 422 and len(loose.json()["detail"]) == 1  # the shape still counts
    for init, loc in (({"job_id": "nope"}, "job_id"), ({"weights_id": "nope"}, "weights_id"),
                      ({"job_id": "a", "weights_id": "b"}, "init")):
        r = client.post("/v1/jobs", json={"name": "x", "dataset_id": dataset_id, "model": SPEC,
                                          "training": {**TRAINING, "init": init}})
        assert r.status_code == 422 and loc in r.json()["detail"][0]["loc"], r.text
    assert _weights_count(settings) == before



def test_estimates_are_calibrated_by_finished_jobs(client, settings, dataset_id):
    body = {"name": "e", "dataset_id": dataset_id, "model": SPEC, "training": TRAINING}
    first = client.post("/v1/jobs", json=body).json()
    cpu = first["estimate"]["cpu"]
    assert cpu["calibrated"] is False and cpu["seconds"] > 0 and first["estimate"]["cuda"]["seconds"] < cpu["seconds"]
    assert run_job(first["id"], settings) == "succeeded"
    done = client.get(f"/v1/jobs/{first['id']}").json()
    assert done["estimate"]["cpu"]["calibrated"] is True and done["estimate"]["cpu"]["measurements"] == 1
    # the calibrated rate is what the job achieved in its last epoch
    plan = done["plan"]
    flops = 3 * plan["flops_per_sample"] * plan["train_samples"] + plan["flops_per_sample"] * plan["val_samples"]
    assert done["estimate"]["cpu"]["flops_per_s"] == pytest.approx(flops / done["metrics"]["epoch_time_s"])
    second = client.post("/v1/jobs", json={**body, "training": {**TRAINING, "epochs": 12}}).json()
    assert second["estimate"]["cpu"]["seconds"] == pytest.approx(2 * done["estimate"]["cpu"]["seconds"])
    spec = client.post("/v1/specs/validate", json={"model": SPEC, "dataset_id": dataset_id}).json()
    assert spec["estimate_per_epoch"]["cpu"]["calibrated"] is True


def test_a_checkpoint_of_many_chunks_is_copied_blob_to_blob(client, settings, dataset_id, monkeypatch):
    """With 256-byte blob chunks the parent's checkpoint spans many chunks: the fine-tune
    snapshot is a blob-stored weights row, byte-identical to the checkpoint's file, which the
    child trains from after the parent (and its checkpoints) is deleted; deleting the weights
    deletes their chunks."""
    from config.settings import get_settings
    from store.models import Blob, BlobChunk
    from store.repositories import checkpoints, weights

    monkeypatch.setenv("TRAINYARD_BLOB_CHUNK_BYTES", "256")
    get_settings.cache_clear()
    try:
        parent = client.post("/v1/jobs", json={"name": "p", "dataset_id": dataset_id, "model": SPEC,
                                               "training": {**TRAINING, "epochs": 1}}).json()
        assert run_job(parent["id"], settings) == "succeeded"
        with session_scope(settings.resolved_database_url) as s:
            source = checkpoints.latest_with_data(s, job_id=parent["id"]).data
        assert len(source) > 3 * 256
        child = client.post("/v1/jobs", json={"name": "c", "dataset_id": dataset_id, "model": SPEC,
                                              "training": {**TRAINING, "epochs": 1,
                                                           "init": {"job_id": parent["id"]}}}).json()
        weights_id = child["plan"]["init"]["weights_id"]
        with session_scope(settings.resolved_database_url) as s:
            row = weights.get(s, weights_id=weights_id)
            assert (row.layout, row.size_bytes) == ("blobs", len(source))
            assert weights.data(s, weights_id=weights_id) == source
            blob = s.scalars(select(Blob).where(Blob.weights_id == weights_id)).one()
            assert blob.chunks == -(-len(source) // 256)
        assert client.delete(f"/v1/jobs/{parent['id']}").status_code == 204
        assert run_job(child["id"], settings) == "succeeded"
        assert client.delete(f"/v1/weights/{weights_id}").status_code == 204
        with session_scope(settings.resolved_database_url) as s:
            assert s.scalar(select(func.count()).select_from(BlobChunk).where(BlobChunk.blob_key == blob.key)) == 0
            assert weights.data(s, weights_id=weights_id) is None
    finally:
        get_settings.cache_clear()
