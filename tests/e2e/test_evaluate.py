"""An evaluation as an ordinary queued task on the real Celery worker (deployment services
and the embedded default): submitted over HTTP, run by the worker process, its results read
back with GET and checked against a forward on the downloaded checkpoint."""
from __future__ import annotations

import io
import time

import httpx
import numpy as np
import pytest

import engine
from engine import spec
from tests.e2e.helpers import digits, post_dataset, submit_job, wait_for_job

pytestmark = pytest.mark.e2e


@pytest.fixture(params=["services", "embedded"])
def running(request):
    return request.getfixturevalue("services_stack" if request.param == "services" else "stack")


def _wait_for_evaluation(client: httpx.Client, job_id: str, evaluation_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ev = client.get(f"/v1/jobs/{job_id}/evaluations/{evaluation_id}").json()
        if ev["status"] in ("succeeded", "failed"):
            return ev
        time.sleep(0.1)
    raise TimeoutError(f"evaluation {evaluation_id} still {ev['status']} after {timeout}s")


def test_an_evaluation_runs_on_the_worker_and_its_results_are_read_back(running):
    x, y = digits(400)
    with httpx.Client(base_url=running.base_url, timeout=60) as client:
        train = post_dataset(client, x[:300], y[:300], name="eval-train")
        job = submit_job(client, train["id"], epochs=3)
        job, _ = wait_for_job(client, job["id"])
        assert job["status"] == "succeeded", job["error"]
        held_out = post_dataset(client, x[300:], y[300:], name="eval-held-out")
        r = client.post(f"/v1/jobs/{job['id']}/evaluate", json={"dataset_id": held_out["id"], "checkpoint": "best"})
        assert r.status_code == 202, r.text
        queued = r.json()
        assert queued["status"] == "queued" and queued["results"] == {} and queued["checkpoint"] == "best"
        ev = _wait_for_evaluation(client, job["id"], queued["id"])
        assert ev["status"] == "succeeded", ev["error"]
        listed = client.get(f"/v1/jobs/{job['id']}/evaluations").json()["items"]
        weights = client.get(f"/v1/jobs/{job['id']}/checkpoints/{ev['checkpoint_id']}/download").content
    assert listed[0] == ev
    model = spec.build_model(job["model"], job["plan"]["input_shape"], num_classes=job["plan"]["num_outputs"])
    model.load_state_dict(engine.load(io.BytesIO(weights)))
    model.eval()
    with engine.no_grad():
        logits = model(engine.tensor(x[300:], dtype=engine.float32)).numpy()
    head = ev["results"]["heads"]["output"]
    assert ev["results"]["num_samples"] == 100
    assert head["accuracy"] == float((logits.argmax(1) == y[300:]).mean())
    cm = np.array(head["confusion_matrix"])
    assert cm.sum() == 100 and np.trace(cm) == round(head["accuracy"] * 100)
    assert np.isfinite(ev["results"]["loss"]) and ev["results"]["loss"] == head["loss"]
