"""Hostile or odd inputs answer 4xx, never 500, on SQLite and PostgreSQL: NUL characters in
path, query, JSON and form values; form fields the upload does not take; a body without
Content-Length over the request limit; the preview of a regression head with no values; and
the request rate per owner (429 with Retry-After, counted in Redis)."""
from __future__ import annotations

import uuid

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 2, "out_features": 2}]}
TRAINING = {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}
DATA = {"name": "d", "inputs": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}


def _nul_error(r, loc: list) -> None:
    assert r.status_code == 422, r.text
    assert loc in [e["loc"] for e in r.json()["detail"]], r.text
    assert "NUL" in r.text


def test_nul_in_path_parameters_is_a_422_naming_them(client):
    ds = client.post("/v1/datasets", json=DATA).json()
    job = client.post("/v1/jobs", json={"name": "j", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING})
    assert job.status_code == 202, job.text
    for path, name in (("/v1/datasets/a%00b", "dataset_id"), ("/v1/datasets/a%00b/preview", "dataset_id"),
                       ("/v1/jobs/%00", "job_id"), ("/v1/jobs/x%00/metrics", "job_id"),
                       ("/v1/jobs/x%00/checkpoints", "job_id"), ("/v1/sweeps/%00x", "sweep_id")):
        _nul_error(client.get(path), ["path", name])
    _nul_error(client.delete("/v1/jobs/a%00"), ["path", "job_id"])
    _nul_error(client.post("/v1/jobs/a%00/cancel"), ["path", "job_id"])
    _nul_error(client.patch("/v1/jobs/a%00", json={"notes": "n"}), ["path", "job_id"])
    assert client.get("/not-a-file%00.js").status_code == 404  # the dashboard's files


def test_nul_in_query_values_and_names_is_a_422_naming_them(client):
    _nul_error(client.get("/v1/jobs", params={"q": "a\x00b"}), ["query", "q"])
    _nul_error(client.get("/v1/jobs", params={"tag": "\x00"}), ["query", "tag"])
    _nul_error(client.get("/v1/jobs", params={"dataset_id": "x\x00"}), ["query", "dataset_id"])
    _nul_error(client.get("/v1/jobs/compare", params={"ids": "a\x00,b"}), ["query", "ids"])
    _nul_error(client.get("/v1/jobs?a%00b=1"), ["query", "a\\u0000b"])


def test_nul_in_json_bodies_is_a_422_at_the_field(client, row_counts):
    before = row_counts()
    _nul_error(client.post("/v1/datasets", json={**DATA, "name": "a\x00"}), ["body", "name"])
    ds = client.post("/v1/datasets", json=DATA).json()
    body = {"name": "j", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING}
    _nul_error(client.post("/v1/jobs", json={**body, "name": "\x00"}), ["body", "name"])
    _nul_error(client.post("/v1/jobs", json={**body, "dataset_id": ds["id"] + "\x00"}), ["body", "dataset_id"])
    bad_spec = {"layers": [{"type": "Flatten\x00"}, *SPEC["layers"][1:]]}
    _nul_error(client.post("/v1/jobs", json={**body, "model": bad_spec}), ["body", "model", "layers", 0, "type"])
    _nul_error(client.post("/v1/jobs", json={**body, "training": {**TRAINING, "tags\x00": 1}}),
               ["body", "training", "tags\x00"])
    job = client.post("/v1/jobs", json=body).json()
    _nul_error(client.patch(f"/v1/jobs/{job['id']}", json={"tags": ["ok", "b\x00d"]}), ["body", "tags", 1])
    _nul_error(client.post("/v1/specs/validate", json={"model": bad_spec}), ["body", "model", "layers", 0, "type"])
    _nul_error(client.post("/v1/sweeps", json={"name": "s\x00", "base": body, "parameters": {}}), ["body", "name"])
    after = row_counts()
    assert after["datasets"] == before["datasets"] + 1 and after["jobs"] == before["jobs"] + 1
    # a backslash followed by "u0000" is an ordinary string
    assert client.post("/v1/datasets", json={**DATA, "name": "a\\u0000"}).status_code == 201


def test_nul_in_form_fields_is_a_422_at_the_field(client):
    csv = b"a,b,t\n1,2,0\n3,4,1\n"
    _nul_error(client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)},
                           data={"name": "n\x00", "target_columns": "t"}), ["body", "name"])
    _nul_error(client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)},
                           data={"name": "n", "target_columns": "t\x00"}), ["body", "target_columns"])


def test_upload_form_fields_it_does_not_take_are_a_422(client, row_counts):
    before = row_counts()
    csv = b"a,b,t\n1,2,0\n3,4,1\n"
    for extra in ({"owner": "mallory"}, {"id": "0" * 32}, {"nmae": "typo"}):
        r = client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)},
                        data={"name": "n", "target_columns": "t", **extra})
        assert r.status_code == 422, r.text
        (field,) = extra
        assert r.json()["detail"][0]["loc"] == ["body", field]
        assert r.json()["detail"][0]["type"] == "extra_forbidden"
    assert row_counts() == before
    r = client.post("/v1/datasets/upload", files={"file": ("d.csv", csv)}, data={"name": "n", "target_columns": "t"})
    assert r.status_code == 201, r.text


def test_regression_targets_without_values_are_a_422_and_previews_answer(client):
    r = client.post("/v1/datasets", json={"name": "empty", "task": "regression", "inputs": [[1.0], [2.0]],
                                          "targets": [[], []]})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", "targets"] and "no values per sample" in r.text
    for inputs in ([[], []], [[[]], [[]]]):  # samples without values either
        r = client.post("/v1/datasets", json={"name": "empty", "inputs": inputs, "targets": [0, 1]})
        assert r.status_code == 422, r.text
        assert r.json()["detail"][0]["loc"] == ["body", "inputs"] and "no values per sample" in r.text
    r = client.post("/v1/datasets", json={"name": "r", "task": "regression", "inputs": [[1.0], [2.0]],
                                          "targets": [0.5, 1.5]})
    for rows in (0, 1, 5, -3, 10**30):
        preview = client.get(f"/v1/datasets/{r.json()['id']}/preview", params={"rows": rows})
        assert preview.status_code == 200, preview.text
        assert len(preview.json()["inputs"]) == max(0, min(rows, 2))


@pytest.fixture
def small_body_client(settings, monkeypatch):
    with monkeypatch.context() as env:  # create_app reads the process's settings
        env.setenv("TRAINYARD_MAX_REQUEST_BYTES", "4096")
        get_settings.cache_clear()
        app = create_app()
    get_settings.cache_clear()  # nothing after this app sees the small limit
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as c:
        yield c


def test_a_body_without_content_length_is_cut_at_the_limit(small_body_client, row_counts):
    before = row_counts()

    def chunks():
        yield b'{"name": "big", "inputs": ['
        for _ in range(100):
            yield b"[0.5, 0.5]," * 10
        yield b'[0.5, 0.5]], "targets": [0]}'

    r = small_body_client.post("/v1/datasets", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413, r.text
    assert "max_request_bytes" in r.json()["detail"][0]["msg"]
    r = small_body_client.post("/v1/datasets/upload", files={"file": ("d.csv", b"a,t\n" + b"1,0\n" * 2000)},
                               data={"name": "n", "target_columns": "t"})
    assert r.status_code == 413, r.text
    assert row_counts() == before
    assert small_body_client.post("/v1/datasets", json=DATA).status_code == 201


@pytest.fixture
def limited(settings):
    owners = {f"key-{n}": f"{n}-{uuid.uuid4().hex[:8]}" for n in ("alice", "bob")}
    limited = settings.model_copy(update={"api_keys": owners, "rate_limit_per_minute": 3})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: limited
    with TestClient(app) as c:
        yield c


def test_requests_past_the_owners_rate_are_a_429_with_retry_after(limited):
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    assert [limited.get("/v1/datasets", headers=alice).status_code for _ in range(3)] == [200] * 3
    r = limited.get("/v1/jobs", headers=alice)
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert "rate_limit_per_minute" in r.json()["detail"]
    assert limited.post("/v1/datasets", headers=alice, json=DATA).status_code == 429  # nothing written past it
    assert limited.get("/v1/datasets", headers=bob).status_code == 200  # another owner has a minute of its own
    assert limited.get("/v1/health").status_code == 200  # probes are not counted


def test_integers_past_the_columns_are_a_422_naming_them(client):
    ds = client.post("/v1/datasets", json=DATA).json()
    body = {"name": "j", "dataset_id": ds["id"], "model": SPEC, "training": TRAINING}
    job = client.post("/v1/jobs", json=body).json()
    for path, name in ((f"/v1/jobs/{job['id']}/logs?attempt={10**30}", "attempt"),
                       (f"/v1/jobs/{job['id']}/logs?after={10**30}", "after"),
                       (f"/v1/jobs/{job['id']}/events?after={10**30}", "after")):
        r = client.get(path)
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["detail"][0]["loc"] == ["query", name]
    assert client.get(f"/v1/jobs/{job['id']}/logs?attempt={2**31 - 1}").status_code == 200
