"""Labels, search and deletion through the API in-process, over SQLite and PostgreSQL:
PATCH edits tags and notes only; GET /v1/jobs filters, sorts and pages with a cursor that is
stable while jobs are added; unknown parameters are 422s; DELETE frees rows and bytes;
checkpoint retention keeps exactly what the policy asks and a resume still resumes."""
from __future__ import annotations

import os

import numpy as np
import pytest
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Checkpoint, Job, JobEvent, JobTag, Metric
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}
TRAINING = {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}}


@pytest.fixture
def dataset_id(client):
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    return client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(),
                                             "targets": (x[:, 0] > 0).astype(int).tolist()}).json()["id"]


def _submit(client, dataset_id, name="j", **training) -> dict:
    r = client.post("/v1/jobs", json={"name": name, "dataset_id": dataset_id, "model": SPEC,
                                      "training": {**TRAINING, **training}})
    assert r.status_code == 202, r.text
    return r.json()


def test_patch_edits_tags_and_notes_only(client, dataset_id, row_counts):
    job = _submit(client, dataset_id)
    r = client.patch(f"/v1/jobs/{job['id']}", json={"tags": ["baseline", "lr:0.1", "baseline"], "notes": "first"})
    assert r.status_code == 200 and (r.json()["tags"], r.json()["notes"]) == (["baseline", "lr:0.1"], "first")
    assert client.get(f"/v1/jobs/{job['id']}").json()["tags"] == ["baseline", "lr:0.1"]
    r = client.patch(f"/v1/jobs/{job['id']}", json={"notes": None})
    assert (r.json()["tags"], r.json()["notes"]) == (["baseline", "lr:0.1"], None)
    before = row_counts()
    for body, field in (({"status": "succeeded"}, "status"), ({"owner": "eve"}, "owner"), ({"attempt": 9}, "attempt"),
                        ({"tags": ["has space"]}, "tags"), ({"tags": "x"}, "tags")):
        r = client.patch(f"/v1/jobs/{job['id']}", json=body)
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", field], (body, r.text)
    assert row_counts() == before
    assert client.get(f"/v1/jobs/{job['id']}").json()["status"] == "queued"
    assert client.patch("/v1/jobs/nope", json={"tags": []}).status_code == 404


def test_list_filters_sorts_and_pages(client, settings, dataset_id):
    made = [_submit(client, dataset_id, name=f"run-{i}", seed=i) for i in range(5)]
    client.patch(f"/v1/jobs/{made[1]['id']}", json={"tags": ["keep", "x"]})
    client.patch(f"/v1/jobs/{made[3]['id']}", json={"tags": ["keep"]})
    for j in made[:3]:
        assert run_job(j["id"], settings) == "succeeded"
    ids = lambda r: [j["id"] for j in r.json()["items"]]  # noqa: E731
    newest_first = [j["id"] for j in reversed(made)]
    assert ids(client.get("/v1/jobs")) == newest_first
    assert ids(client.get("/v1/jobs", params={"sort": "created"})) == newest_first[::-1]
    assert set(ids(client.get("/v1/jobs", params={"tag": "keep"}))) == {made[1]["id"], made[3]["id"]}
    assert ids(client.get("/v1/jobs", params=[("tag", "keep"), ("tag", "x")])) == [made[1]["id"]]
    assert set(ids(client.get("/v1/jobs", params={"status": "queued"}))) == {made[3]["id"], made[4]["id"]}
    assert ids(client.get("/v1/jobs", params={"q": "RUN-2"})) == [made[2]["id"]]
    assert len(ids(client.get("/v1/jobs", params={"dataset_id": dataset_id}))) == 5
    assert ids(client.get("/v1/jobs", params={"dataset_id": "other"})) == []
    # by a final metric: finished jobs in order, the others (no value) last
    by_loss = client.get("/v1/jobs", params={"sort": "metric:val_loss"}).json()["items"]
    losses = [j["metrics"]["val_loss"] for j in by_loss[:3]]
    assert losses == sorted(losses) and {j["id"] for j in by_loss[3:]} == {made[3]["id"], made[4]["id"]}
    # pages of 2 cover everything once, also when a job is added between pages
    seen, cursor = [], None
    for page in range(10):
        params = {"limit": 2, "sort": "metric:val_loss", **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/jobs", params=params).json()
        seen += [j["id"] for j in body["items"]]
        if page == 0:
            _submit(client, dataset_id, name="late")
        cursor = body["next_cursor"]
        if cursor is None:
            break
    # every job that existed when paging began comes exactly once (the late one may come too)
    assert {j["id"] for j in made} <= set(seen) and len(seen) == len(set(seen))
    created_paged, cursor = [], None
    while True:
        body = client.get("/v1/jobs", params={"limit": 2, **({"cursor": cursor} if cursor else {})}).json()
        created_paged += [j["id"] for j in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert len(created_paged) == 6 and created_paged[1:] == newest_first


@pytest.mark.parametrize("params, loc", [
    ({"status_filter": "queued"}, "status_filter"),
    ({"status": "done"}, "status"),
    ({"sort": "metric:bad name"}, "sort"),
    ({"limit": 0}, "limit"),
    ({"cursor": "garbage"}, "cursor"),
    ({"created_after": "yesterday"}, "created_after"),
])
def test_bad_list_parameters_are_422_naming_them(client, params, loc):
    r = client.get("/v1/jobs", params=params)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == loc, r.text


def test_a_cursor_belongs_to_its_sort(client, dataset_id):
    for i in range(3):
        _submit(client, dataset_id, name=f"r{i}")
    cursor = client.get("/v1/jobs", params={"limit": 1}).json()["next_cursor"]
    r = client.get("/v1/jobs", params={"limit": 1, "cursor": cursor, "sort": "name"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "cursor"]


def _counts(url, job_id):
    with session_scope(url) as s:
        return {m.__tablename__: s.scalar(select(func.count()).select_from(m).where(m.job_id == job_id))
                for m in (Metric, Checkpoint, JobEvent, JobTag)}


def test_delete_a_job_frees_its_rows_and_bytes(client, settings, dataset_id):
    url = settings.resolved_database_url
    job = _submit(client, dataset_id, epochs=6)
    client.patch(f"/v1/jobs/{job['id']}", json={"tags": ["a"]})
    assert run_job(job["id"], settings) == "succeeded"
    assert all(_counts(url, job["id"]).values())
    size = _sqlite_bytes(url)
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 404
    assert set(_counts(url, job["id"]).values()) == {0}
    with session_scope(url) as s:
        assert s.get(Job, job["id"]) is None
    if size is not None:  # SQLite hands the freed pages back to the file system
        assert _sqlite_bytes(url) < size - 6 * 100  # six checkpoints of 104 bytes and the rest


def _sqlite_bytes(url: str) -> int | None:
    """The database file plus its write-ahead log."""
    if not url.startswith("sqlite"):
        return None
    path = url.removeprefix("sqlite:///")
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def test_deleting_a_running_job_cancels_it_first(client, settings, dataset_id):
    job = _submit(client, dataset_id)
    with session_scope(settings.resolved_database_url) as s:
        from store.repositories import jobs

        assert jobs.claim(s, job_id=job["id"], worker="w", lease_s=60) == 1
    assert client.delete(f"/v1/jobs/{job['id']}").status_code == 204
    assert client.get(f"/v1/jobs/{job['id']}").status_code == 404


def test_delete_a_dataset_409_while_in_use_then_204(client, settings, dataset_id):
    job = _submit(client, dataset_id)
    r = client.delete(f"/v1/datasets/{dataset_id}")
    assert r.status_code == 409 and job["id"] in r.json()["detail"][0]["msg"]
    client.post(f"/v1/jobs/{job['id']}/cancel")
    assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
    assert client.get(f"/v1/datasets/{dataset_id}").status_code == 404
    assert dataset_id not in [d["id"] for d in client.get("/v1/datasets").json()["items"]]
    assert client.get(f"/v1/jobs/{job['id']}").json()["dataset_id"] == dataset_id  # history stays readable
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": dataset_id, "model": SPEC, "training": TRAINING})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dataset_id"]
    assert client.get("/v1/usage").json()["datasets"] == 0


def _checkpoints(client, job_id):
    return client.get(f"/v1/jobs/{job_id}/checkpoints").json()["items"]


def test_retention_keeps_the_newest_and_the_best(client, settings, dataset_id):
    # lr 3.0 makes val_loss bounce: the best epoch is rarely the last
    job = _submit(client, dataset_id, epochs=8, optimizer={"type": "SGD", "lr": 3.0},
                  checkpoints={"keep_last": 2, "keep_best": 1, "metric": "val_loss"})
    assert job["plan"]["retention"] == {"keep_last": 2, "keep_best": 1, "metric": "val_loss", "mode": "min"}
    assert run_job(job["id"], settings) == "succeeded"
    epochs = {e["epoch"]: e["val_loss"] for e in client.get(f"/v1/jobs/{job['id']}/metrics").json()["epochs"]}
    best_epoch = min(epochs, key=lambda e: (epochs[e], -e))
    kept = sorted({c["epoch"] for c in _checkpoints(client, job["id"])})
    assert kept == sorted({7, 8, best_epoch})
    usage = client.get(f"/v1/jobs/{job['id']}/usage").json()
    assert usage["checkpoints"] == len(kept) and usage["checkpoint_bytes"] > 0
    assert client.get("/v1/usage").json()["checkpoint_bytes"] == usage["checkpoint_bytes"]


def test_a_retention_metric_the_job_does_not_report_is_422(client, dataset_id):
    r = client.post("/v1/jobs", json={"name": "j", "dataset_id": dataset_id, "model": SPEC,
                                      "training": {**TRAINING, "checkpoints": {"metric": "val_f1"}}})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "training", "checkpoints", "metric"]


def test_latest_and_best_are_marked_and_downloadable(client, settings, dataset_id):
    job = _submit(client, dataset_id, epochs=6, optimizer={"type": "SGD", "lr": 3.0},
                  checkpoints={"keep_last": 1, "keep_best": 1, "metric": "val_accuracy"})
    assert job["plan"]["retention"]["mode"] == "max"
    assert run_job(job["id"], settings) == "succeeded"
    items = _checkpoints(client, job["id"])
    latest = [c for c in items if c["latest"]]
    best = [c for c in items if c["best"]]
    assert len(latest) == len(best) == 1 and latest[0]["epoch"] == 6
    assert best[0]["metric_value"] == max(c["metric_value"] for c in items)
    for name, ckpt in (("latest", latest[0]), ("best", best[0])):
        r = client.get(f"/v1/jobs/{job['id']}/checkpoints/{name}/download")
        assert r.status_code == 200 and r.content == client.get(ckpt["download_url"]).content
