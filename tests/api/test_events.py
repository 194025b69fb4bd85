"""The event history of a job through the API in-process: /events replays it in order with
ids, resumes after Last-Event-ID, ends after a terminal status; /logs pages the log lines;
another owner's job is a 404. (Live delivery through Redis: tests/e2e/test_live.py.)"""
from __future__ import annotations

import json

import numpy as np
import pytest
from fastapi.testclient import TestClient
from httpx_sse import connect_sse

from api.main import create_app
from config.settings import get_settings
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}


def _finished_job(client, settings, **training) -> dict:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    ds = client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(),
                                           "targets": (x[:, 0] > 0).astype(int).tolist()}).json()
    body = {"name": "j", "dataset_id": ds["id"], "model": SPEC,
            "training": {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, **training}}
    job = client.post("/v1/jobs", json=body).json()
    run_job(job["id"], settings)
    return client.get(f"/v1/jobs/{job['id']}").json()


def _events(client, job_id: str, headers: dict | None = None, params: dict | None = None) -> list:
    with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events", headers=dict(headers or {}),
                     params=params) as source:
        assert source.response.headers["content-type"].startswith("text/event-stream")
        return [(int(e.id), e.event, json.loads(e.data)) for e in source.iter_sse()]


def test_history_replays_in_order_and_ends(client, settings):
    job = _finished_job(client, settings)
    assert job["status"] == "succeeded"
    events = _events(client, job["id"])
    ids = [i for i, _, _ in events]
    assert ids[:-1] == list(range(1, job["event_seq"] + 1)) and ids[-1] == job["event_seq"]
    kinds = [k for _, k, _ in events]
    assert kinds[0] == "status" and events[0][2]["status"] == "queued"
    assert [d["status"] for _, k, d in events if k == "status"] == ["queued", "running", "succeeded"]
    assert kinds[-1] == "end" and events[-1][2] == {"status": "succeeded"}
    assert kinds.count("checkpoint") == 2  # one per epoch
    rows = [r for _, k, d in events if k == "metric" for r in d["rows"]]
    assert [r["step"] for r in rows if r["name"] == "loss"] == list(range(1, 9))  # 2 epochs of 32 samples / 8
    assert {r["name"] for r in rows if r["kind"] == "epoch"} >= {"train_loss", "val_loss", "val_accuracy"}
    progress = [d for _, k, d in events if k == "progress"]
    assert progress[-1]["step"] == progress[-1]["total_steps"] == 8


def test_last_event_id_resumes_after_it_without_duplicates(client, settings):
    job = _finished_job(client, settings)
    everything = _events(client, job["id"])
    cut = everything[len(everything) // 2][0]
    rest = _events(client, job["id"], headers={"Last-Event-ID": str(cut)})
    assert [e for e in everything if e[0] <= cut] + rest == everything
    assert _events(client, job["id"], params={"after": cut}) == rest
    # at the end already: just the end
    assert _events(client, job["id"], headers={"Last-Event-ID": str(job["event_seq"])}) == [everything[-1]]


@pytest.mark.parametrize("params, headers, loc", [
    ({"after": -1}, None, ["query", "after"]),
    ({"after": "x"}, None, ["query", "after"]),
    (None, {"Last-Event-ID": "abc"}, ["header", "last-event-id"]),
])
def test_bad_positions_are_422_naming_them(client, settings, params, headers, loc):
    job = _finished_job(client, settings)
    r = client.get(f"/v1/jobs/{job['id']}/events", params=params, headers=headers)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == loc


def test_a_failed_jobs_log_holds_its_traceback(client, settings):
    job = _finished_job(client, settings, optimizer={"type": "SGD", "lr": 1e38})  # the loss overflows
    assert job["status"] == "failed"
    page = client.get(f"/v1/jobs/{job['id']}/logs").json()
    text = "\n".join(line["message"] for line in page["lines"])
    assert "Traceback (most recent call last)" in text and "FloatingPointError" in text
    assert {line["attempt"] for line in page["lines"]} == {1} and not page["truncated"]
    assert client.get(f"/v1/jobs/{job['id']}/logs", params={"attempt": 2}).json()["lines"] == []
    after = client.get(f"/v1/jobs/{job['id']}/logs", params={"after": page["last_seq"]}).json()
    assert after["lines"] == [] and after["last_seq"] == page["last_seq"]
    logged = [line for _, k, d in _events(client, job["id"]) if k == "log" for line in d["lines"]]
    assert [m["message"] for m in logged] == [line["message"] for line in page["lines"]]
    # the steps trained before the failure are kept
    assert job["progress"]["step"] >= 1
    assert client.get(f"/v1/jobs/{job['id']}/logs", params={"attempt": 0}).status_code == 422


def test_another_owners_stream_and_logs_are_404(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    with TestClient(app) as c:
        alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
        ds = c.post("/v1/datasets", headers=alice, json={"name": "a", "inputs": [[0.0, 1.0, 2.0]] * 4,
                                                         "targets": [0, 1, 1, 0]}).json()
        job = c.post("/v1/jobs", headers=alice, json={"name": "j", "dataset_id": ds["id"], "model": SPEC,
                                                      "training": {"epochs": 1, "batch_size": 2,
                                                                   "optimizer": {"type": "SGD", "lr": 0.1}}}).json()
        assert c.get(f"/v1/jobs/{job['id']}/events", headers=bob).status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/logs", headers=bob).status_code == 404
        assert c.get(f"/v1/jobs/{job['id']}/events").status_code == 401
        assert c.get(f"/v1/jobs/{job['id']}/logs", headers=alice).status_code == 200


def test_non_finite_values_travel_as_null(database_url):
    from store.db import session_scope
    from store.repositories import datasets, events, jobs

    with session_scope(database_url) as s:
        ds = datasets.create(s, name="d", inputs=np.zeros((4, 2), np.float32), targets=np.arange(4) % 2,
                             task="classification")
        job = jobs.create(s, name="j", dataset_id=ds.id, model_spec={}, training={"epochs": 1})
        events.record(s, job_id=job.id, events=[("metric", {"rows": [{"name": "val_r2", "value": float("nan")},
                                                                      {"name": "x", "value": float("inf")}]})])
    with session_scope(database_url) as s:
        stored = events.after(s, job_id=job.id, seq=1)[0].data
    assert stored == {"rows": [{"name": "val_r2", "value": None}, {"name": "x", "value": None}]}
