"""Client-side steps shared by the end-to-end and browser tests."""
from __future__ import annotations

import time

import httpx
import numpy as np

MLP_SPEC = {
    "layers": [
        {"type": "Flatten"},
        {"type": "Linear", "in_features": 64, "out_features": 64},
        {"type": "ReLU"},
        {"type": "Linear", "in_features": 64, "out_features": 10},
    ]
}


def digits(limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as 8x8 images scaled to [0, 1] and class indices."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)
    return (x[:limit], y[:limit]) if limit else (x, y)


def post_dataset(client: httpx.Client, x: np.ndarray, y: np.ndarray, name: str = "digits") -> dict:
    r = client.post("/v1/datasets", json={"name": name, "inputs": x.tolist(), "targets": y.tolist()})
    assert r.status_code == 201, r.text
    return r.json()


def submit_job(client: httpx.Client, dataset_id: str, *, epochs: int, name: str = "mlp", **training) -> dict:
    body = {
        "name": name,
        "dataset_id": dataset_id,
        "model": MLP_SPEC,
        "training": {"epochs": epochs, "batch_size": 32, "optimizer": {"type": "Adam", "lr": 0.005},
                     "seed": 7, "validation_split": 0.2, **training},
    }
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    return r.json()


def eventually(predicate, timeout: float = 10.0, interval: float = 0.05) -> bool:
    """True as soon as ``predicate()`` is, False if it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 300) -> tuple[dict, set[str]]:
    """Poll until the job is terminal; returns the job and every status seen on the way."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        seen.add(job["status"])
        if job["status"] in ("succeeded", "failed", "cancelled"):
            return job, seen
        time.sleep(0.1)
    raise TimeoutError(f"job {job_id} still {job['status']} after {timeout}s")
