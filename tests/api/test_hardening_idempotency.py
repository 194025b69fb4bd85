"""Idempotency-Key on POST /v1/jobs, /v1/sweeps and the dataset creates (inline, upload,
builtin; SQLite and PostgreSQL): a retry with the same key and body gets the first answer (same
id and status, marked ``Idempotent-Replayed: true``) and creates nothing; the same key with
another body or route is a 422 naming the header; keys are per owner and expire. Concurrent
retries against a running API process on PostgreSQL create one job."""
from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings
from migrations import upgrade
from tests.e2e.apiproc import api_process

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 2, "out_features": 2}]}
TRAINING = {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}
DATA = {"name": "d", "inputs": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}


def _key() -> dict[str, str]:
    return {"Idempotency-Key": f"k-{uuid.uuid4().hex}"}


def test_a_retried_job_submit_gets_the_first_answer(client, row_counts):
    ds = client.post("/v1/datasets", json=DATA).json()
    body = {"name": "j", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING}
    key = _key()
    first = client.post("/v1/jobs", json=body, headers=key)
    assert first.status_code == 202, first.text
    assert "idempotent-replayed" not in first.headers
    before = row_counts()
    again = client.post("/v1/jobs", json=body, headers=key)
    assert again.status_code == 202
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert row_counts() == before
    # without a key, or with another key, the same body is a new job
    assert client.post("/v1/jobs", json=body).json()["id"] != first.json()["id"]
    assert client.post("/v1/jobs", json=body, headers=_key()).json()["id"] != first.json()["id"]


def test_the_same_key_with_another_request_is_a_422_naming_the_header(client, row_counts):
    ds = client.post("/v1/datasets", json=DATA).json()
    body = {"name": "j", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING}
    key = _key()
    assert client.post("/v1/jobs", json=body, headers=key).status_code == 202
    before = row_counts()
    for method_path, other in (("/v1/jobs", {**body, "name": "other"}), ("/v1/datasets", DATA)):
        r = client.post(method_path, json=other, headers=key)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
        assert "new key" in r.json()["detail"][0]["msg"]
    assert row_counts() == before


def test_a_refused_request_stores_no_key(client):
    key = _key()
    bad = {"name": "j", "dataset_id": "0" * 32, "model": SPEC, "training": TRAINING}
    assert client.post("/v1/jobs", json=bad, headers=key).status_code == 422
    ds = client.post("/v1/datasets", json=DATA).json()
    good = client.post("/v1/jobs", json={**bad, "dataset_id": ds["id"]}, headers=key)
    assert good.status_code == 202, good.text  # the key is still free: nothing was created before


def test_retried_dataset_and_sweep_creates_get_the_first_answer(client, row_counts):
    key = _key()
    first = client.post("/v1/datasets", json=DATA, headers=key)
    again = client.post("/v1/datasets", json=DATA, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    base = {"name": "s", "dataset_id": first.json()["id"], "model": SPEC, "training": TRAINING}
    sweep = {"name": "sw", "method": "grid", "base": base,
             "parameters": {"training.optimizer.lr": {"values": [0.1, 0.01]}}}
    key = _key()
    first = client.post("/v1/sweeps", json=sweep, headers=key)
    assert first.status_code == 201, first.text
    before = row_counts()
    again = client.post("/v1/sweeps", json=sweep, headers=key)
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert row_counts() == before


def test_keys_belong_to_their_owner(settings):
    keyed = settings.model_copy(update={"api_keys": {"ka": "alice", "kb": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    key = _key()
    with TestClient(app) as c:
        a = c.post("/v1/datasets", json=DATA, headers={**key, "X-API-Key": "ka"})
        b = c.post("/v1/datasets", json=DATA, headers={**key, "X-API-Key": "kb"})
    assert a.status_code == b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and "idempotent-replayed" not in b.headers


def test_an_expired_key_is_a_new_request(settings):
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings.model_copy(update={"idempotency_ttl_s": 0})
    key = _key()
    with TestClient(app) as c:
        first = c.post("/v1/datasets", json=DATA, headers=key)
        again = c.post("/v1/datasets", json=DATA, headers=key)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] != first.json()["id"] and "idempotent-replayed" not in again.headers


def test_malformed_keys_are_a_422(client):
    for bad in ("", "a b", "x" * 256):
        r = client.post("/v1/datasets", json=DATA, headers={"Idempotency-Key": bad})
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


@pytest.mark.e2e
def test_concurrent_retries_against_a_running_api_create_one_job(postgres_url, embedded_redis_url, tmp_path):
    upgrade(postgres_url)
    env = {"DATABASE_URL": postgres_url, "REDIS_URL": embedded_redis_url,
           "TRAINYARD_QUEUE": f"t-{uuid.uuid4().hex[:8]}"}
    with api_process(env, tmp_path / "api.log") as (_, url), httpx.Client(base_url=url, timeout=60) as c:
        ds = c.post("/v1/datasets", json=DATA).json()
        body = {"name": f"race-{uuid.uuid4().hex[:6]}", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING}
        key = _key()
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda _: c.post("/v1/jobs", json=body, headers=key), range(8)))
        assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
        assert len({r.json()["id"] for r in answers}) == 1
        assert sum(r.headers.get("idempotent-replayed") == "true" for r in answers) == 7
        listed = c.get("/v1/jobs", params={"q": body["name"]}).json()["items"]
        assert [j["id"] for j in listed] == [answers[0].json()["id"]]


def test_retried_uploads_and_builtin_creates_get_the_first_answer(client, row_counts):
    """Multipart /v1/datasets/upload (the fingerprint covers the files' bytes and the form
    fields) and /v1/datasets/builtin replay their first answer; another file under the key is
    a 422 naming the header."""
    csv = b"a,b,label\n0,1,0\n1,0,1\n1,1,1\n0,0,0\n"
    form = {"name": "up", "target_columns": "label"}
    key = _key()
    first = client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)}, data=form, headers=key)
    assert first.status_code == 201, first.text
    before = row_counts()
    again = client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)}, data=form, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    for files, data in ((("d.csv", csv + b"1,1,0\n"), form), (("d.csv", csv), {**form, "name": "other"})):
        r = client.post("/v1/datasets/upload", files={"file": files}, data=data, headers=key)
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    assert row_counts() == before
    assert client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)}, data=form).json()["id"] != \
        first.json()["id"]  # no key: a new dataset
    key = _key()
    first = client.post("/v1/datasets/builtin", json={"builtin": "iris"}, headers=key)
    assert first.status_code == 201, first.text
    before = row_counts()
    again = client.post("/v1/datasets/builtin", json={"builtin": "iris"}, headers=key)
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and row_counts() == before
