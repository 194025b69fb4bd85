"""A job from HTTP to a downloaded checkpoint, against real processes: uvicorn, a Celery
worker, Redis and the database, on the deployment services and on the embedded default."""
from __future__ import annotations

import io
import math

import httpx
import numpy as np
import pytest
from safetensors.numpy import load as load_safetensors

import engine
from engine import spec
from plan.splits import split_indices
from tests.e2e.helpers import MLP_SPEC, digits, post_dataset, submit_job, wait_for_job
from worker.lifecycle import run_job

pytestmark = pytest.mark.e2e

EPOCHS = 10


@pytest.fixture(params=["services", "embedded"])
def running(request):
    return request.getfixturevalue("services_stack" if request.param == "services" else "stack")


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def test_digits_mlp_trains_and_checkpoint_reproduces_accuracy(running):
    x, y = digits()
    with httpx.Client(base_url=running.base_url, timeout=30) as client:
        ds = post_dataset(client, x, y)
        assert (ds["num_samples"], ds["input_shape"], ds["num_classes"]) == (1797, [8, 8], 10)
        job = submit_job(client, ds["id"], epochs=EPOCHS, checkpoints={"keep_last": EPOCHS})
        assert job["status"] == "queued"
        job, seen = wait_for_job(client, job["id"])
        assert job["status"] == "succeeded", job["error"]
        assert seen <= {"queued", "running", "succeeded"}
        assert job["started_at"] and job["finished_at"] and job["error"] is None

        train_idx, val_idx = split_indices(len(x), 0.2, seed=7)
        steps_per_epoch = math.ceil(len(train_idx) / 32)
        assert job["progress"] == {"epoch": EPOCHS, "epochs": EPOCHS, "step": EPOCHS * steps_per_epoch,
                                   "total_steps": EPOCHS * steps_per_epoch}
        final = job["metrics"]
        assert final["val_accuracy"] >= 0.90

        metrics = client.get(f"/v1/jobs/{job['id']}/metrics").json()
        assert [s["step"] for s in metrics["steps"]] == list(range(1, EPOCHS * steps_per_epoch + 1))
        assert all(math.isfinite(s["loss"]) for s in metrics["steps"])
        assert [e["epoch"] for e in metrics["epochs"]] == list(range(1, EPOCHS + 1))
        assert metrics["epochs"][-1]["val_accuracy"] == final["val_accuracy"]
        assert metrics["epochs"][-1]["val_loss"] < metrics["epochs"][0]["val_loss"]

        ckpts = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
        assert [c["epoch"] for c in ckpts] == list(range(1, EPOCHS + 1))
        r = client.get(ckpts[-1]["download_url"])
        assert r.status_code == 200
        assert r.headers["content-disposition"].endswith('.safetensors"')
        assert client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/download").content == r.content

    tensors = load_safetensors(r.content)
    assert sorted(tensors) == ["1.bias", "1.weight", "3.bias", "3.weight"]
    assert tensors["1.weight"].shape == (64, 64) and tensors["3.weight"].shape == (10, 64)

    # a fresh engine model with the downloaded weights reproduces the reported accuracy
    model = spec.build_model(MLP_SPEC)
    model.load_state_dict(engine.load(io.BytesIO(r.content)))
    model.eval()
    with engine.no_grad():
        logits = model(engine.tensor(x[val_idx])).numpy()
    assert _accuracy(logits, y[val_idx]) == pytest.approx(final["val_accuracy"], abs=1e-12)

    # a redelivered message for the finished job trains nothing
    assert run_job(job["id"], _settings(running)) == "skipped"


def _settings(stack):
    from config.settings import Settings

    return Settings(database_url=stack.database_url, redis_url=stack.env["REDIS_URL"])


def test_checkpoint_loads_into_torch_strictly(stack):
    torch = pytest.importorskip("torch")
    x, y = digits(400)
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        ds = post_dataset(client, x, y, name="digits-400")
        job, _ = wait_for_job(client, submit_job(client, ds["id"], epochs=2)["id"])
        assert job["status"] == "succeeded", job["error"]
        blob = client.get(f"/v1/jobs/{job['id']}/checkpoints/latest/download").content
    from safetensors.torch import load as torch_load

    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    twin.load_state_dict(torch_load(blob), strict=True)
    _, val_idx = split_indices(len(x), 0.2, seed=7)
    with torch.no_grad():
        logits = twin(torch.from_numpy(x[val_idx])).numpy()
    assert abs(_accuracy(logits, y[val_idx]) - job["metrics"]["val_accuracy"]) <= 1 / len(val_idx)


def test_two_device_job_matches_single_device_at_same_total_batch(stack):
    x, y = digits(400)  # 320 training samples: 10 global batches of 32
    with httpx.Client(base_url=stack.base_url, timeout=30) as client:
        ds = post_dataset(client, x, y, name="digits-ddp")
        single = submit_job(client, ds["id"], epochs=2, name="one-device")
        double = submit_job(client, ds["id"], epochs=2, name="two-devices", devices=2, batch_size=16)
        single, _ = wait_for_job(client, single["id"])
        double, _ = wait_for_job(client, double["id"])
        assert single["status"] == double["status"] == "succeeded", (single["error"], double["error"])
        assert double["progress"]["total_steps"] == single["progress"]["total_steps"] == 20
        m1 = client.get(f"/v1/jobs/{single['id']}/metrics").json()
        m2 = client.get(f"/v1/jobs/{double['id']}/metrics").json()
    assert np.allclose([s["loss"] for s in m2["steps"]], [s["loss"] for s in m1["steps"]], rtol=1e-4, atol=1e-5)
    assert double["metrics"]["val_loss"] == pytest.approx(single["metrics"]["val_loss"], rel=1e-4)
    assert double["metrics"]["val_accuracy"] == pytest.approx(single["metrics"]["val_accuracy"], abs=1 / 80)
