"""Resumable chunked dataset uploads over SQLite and PostgreSQL: parts in any order with their
checksums, an interrupted upload resumed from what GET says arrived, complete creating a
sharded dataset once (the same checks as a one-request upload), quotas and limits."""
from __future__ import annotations

import hashlib
import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings
from store.db import session_scope
from store.repositories import datasets

PART = 4096


def _npz(**arrays) -> bytes:
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def _images(n=400, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 1, 8, 8), dtype=np.uint8), rng.integers(0, 10, size=n)


def _parts(data: bytes, size=PART) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def _put(client, upload_id, n, part):
    return client.put(f"/v1/datasets/uploads/{upload_id}/parts/{n}", content=part,
                      headers={"X-Part-SHA256": hashlib.sha256(part).hexdigest(),
                               "Content-Type": "application/octet-stream"})


def _start(client, data: bytes, filename="images.npz", **extra):
    r = client.post("/v1/datasets/uploads", json={"name": "imgs", "filename": filename, "size_bytes": len(data),
                                                  "part_bytes": PART, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_an_interrupted_upload_resumes_and_yields_the_same_checksum_and_arrays(client, settings):
    x, y = _images()
    data = _npz(inputs=x, targets=y)
    parts = _parts(data)
    assert len(parts) >= 4
    up = _start(client, data, sha256=hashlib.sha256(data).hexdigest())
    assert (up["parts"], up["received"], up["missing"]) == (len(parts), [], len(parts))
    half = len(parts) // 2
    for n in reversed(range(half)):  # any order
        assert _put(client, up["id"], n, parts[n]).status_code == 200
    # the client dies here; a new one asks what arrived and sends only the rest
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as resumed:
        state = resumed.get(f"/v1/datasets/uploads/{up['id']}").json()
        assert state["received"] == list(range(half)) and not state["complete"]
        early = resumed.post(f"/v1/datasets/uploads/{up['id']}/complete")
        assert early.status_code == 409 and str(half) in early.json()["detail"][0]["msg"]
        for n in range(len(parts)):
            if n not in state["received"]:
                assert _put(resumed, up["id"], n, parts[n]).json()["missing"] == len(parts) - n - 1
        done = resumed.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert done.status_code == 201, done.text
    body = done.json()
    assert body["sha256"] == hashlib.sha256(data).hexdigest() and body["status"] == "created"
    ds = body["dataset"]
    assert (ds["num_samples"], ds["input_shape"], ds["input_dtype"]) == (400, [1, 8, 8], "uint8")
    assert ds["size_bytes"] == x.nbytes + y.astype(np.int64).nbytes  # uint8 kept: not float32 x4
    with session_scope(settings.resolved_database_url) as s:
        got_x, got_y = datasets.load_all(s, dataset_id=ds["id"])
    assert got_x.dtype == np.uint8 and np.array_equal(got_x, x) and np.array_equal(got_y["output"], y)
    again = client.post(f"/v1/datasets/uploads/{up['id']}/complete")  # idempotent
    assert again.status_code == 200 and again.json()["dataset"]["id"] == ds["id"]
    assert again.json()["status"] == "already complete"
    assert client.get(f"/v1/datasets/uploads/{up['id']}").json()["complete"] is True
    assert _put(client, up["id"], 0, parts[0]).status_code == 409


def test_a_part_sent_again_replaces_itself_and_bad_parts_are_refused(client):
    x, y = _images(200)
    data = _npz(inputs=x.astype(np.float32), targets=y)
    parts = _parts(data)
    up = _start(client, data)
    wrong = client.put(f"/v1/datasets/uploads/{up['id']}/parts/0", content=parts[0],
                       headers={"X-Part-SHA256": "0" * 64})
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["header", "x-part-sha256"]
    short = _put(client, up["id"], 0, parts[0][:-1])
    assert short.status_code == 422 and f"{PART} bytes" in short.json()["detail"][0]["msg"]
    assert _put(client, up["id"], len(parts), b"x").status_code == 422
    missing_header = client.put(f"/v1/datasets/uploads/{up['id']}/parts/0", content=parts[0])
    assert missing_header.status_code == 422
    garbage = bytes(len(parts[1]))
    assert _put(client, up["id"], 1, garbage).status_code == 200
    for n, p in enumerate(parts):
        assert _put(client, up["id"], n, p).status_code == 200
    done = client.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert done.status_code == 201, done.text
    assert done.json()["dataset"]["input_dtype"] == "float32"
    assert client.get("/v1/datasets/uploads/nope").status_code == 404


def test_complete_checks_the_file_as_an_upload_does_and_keeps_the_parts(client, settings, row_counts):
    x, _ = _images(100)
    data = _npz(inputs=x)  # no targets
    up = _start(client, data)
    for n, p in enumerate(_parts(data)):
        _put(client, up["id"], n, p)
    before = row_counts()
    r = client.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert r.status_code == 422 and "targets" in r.json()["detail"][0]["msg"]
    assert row_counts() == before
    assert client.get(f"/v1/datasets/uploads/{up['id']}").json()["missing"] == 0


def test_nan_inputs_and_a_wrong_declared_checksum_are_refused(client):
    x = np.ones((64, 4), np.float32)
    x[40, 2] = np.nan
    data = _npz(inputs=x, targets=np.zeros(64, np.int64))
    up = _start(client, data)
    for n, p in enumerate(_parts(data)):
        _put(client, up["id"], n, p)
    r = client.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert r.status_code == 422 and "NaN" in r.json()["detail"][0]["msg"]
    good = _npz(inputs=np.ones((64, 4), np.float32), targets=np.zeros(64, np.int64))
    up = _start(client, good, sha256="ab" * 32)
    for n, p in enumerate(_parts(good)):
        _put(client, up["id"], n, p)
    r = client.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "sha256"]


def test_a_csv_upload_becomes_a_dataset(client):
    rows = "\n".join(f"{i},{i * 0.5},{i % 3}" for i in range(300))
    data = ("a,b,label\n" + rows + "\n").encode()
    up = _start(client, data, filename="t.csv", target_columns=["label"])
    for n, p in enumerate(_parts(data)):
        _put(client, up["id"], n, p)
    r = client.post(f"/v1/datasets/uploads/{up['id']}/complete")
    assert r.status_code == 201, r.text
    ds = r.json()["dataset"]
    assert ds["num_samples"] == 300 and ds["targets"]["label"]["num_classes"] == 3
    preview = client.get(f"/v1/datasets/{ds['id']}/preview?rows=2").json()
    assert preview["inputs"] == [[0.0, 0.0], [1.0, 0.5]]


@pytest.mark.parametrize(("body", "loc"), [
    ({"filename": "x.npy"}, "filename"),
    ({"filename": "x.csv"}, "target_columns"),
    ({"part_bytes": 10**12}, "part_bytes"),
    ({"size_bytes": 0}, "size_bytes"),
])
def test_bad_upload_requests_name_their_field(client, body, loc):
    r = client.post("/v1/datasets/uploads", json={"name": "n", "filename": "x.npz", "size_bytes": 100, **body})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"][-1] == loc


def test_the_owners_storage_quota_and_the_upload_limit_hold(settings):
    settings = settings.model_copy(update={"max_storage_bytes_per_owner": 10_000, "max_upload_bytes": 50_000})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app) as client:
        assert client.post("/v1/datasets/uploads", json={"name": "n", "filename": "x.npz",
                                                         "size_bytes": 60_000}).status_code == 413
        ok = client.post("/v1/datasets/uploads", json={"name": "n", "filename": "x.npz", "size_bytes": 6_000,
                                                       "part_bytes": 2048})
        assert ok.status_code == 201
        over = client.post("/v1/datasets/uploads", json={"name": "n", "filename": "x.npz", "size_bytes": 6_000})
        assert over.status_code == 413 and "quota" in over.json()["detail"][0]["msg"]
        # the open upload's 6,000 bytes are reserved: an inline dataset of 5,120 does not fit, 160 do
        big = client.post("/v1/datasets", json={"name": "b", "inputs": [[0.5] * 30] * 40, "targets": [0, 1] * 20})
        assert big.status_code == 413 and "quota" in big.json()["detail"][0]["msg"]
        small = client.post("/v1/datasets", json={"name": "s", "inputs": [[0.5] * 2] * 10, "targets": [0, 1] * 5})
        assert small.status_code == 201
