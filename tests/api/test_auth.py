"""API keys and ownership: with keys configured, every /v1 resource belongs to the key's
owner; another owner's ids answer 404 and requests without a valid key answer 401."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings

ALICE = {"Authorization": "Bearer key-alice"}
BOB = {"X-API-Key": "key-bob"}
SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 2, "out_features": 2}]}
TRAINING = {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}


@pytest.fixture
def keyed(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    with TestClient(app) as c:
        yield c


def test_requests_need_a_valid_key(keyed):
    for headers in ({}, {"Authorization": "Bearer nope"}, {"X-API-Key": ""}):
        r = keyed.get("/v1/jobs", headers=headers)
        assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert keyed.get("/v1/health").status_code == 200  # probes need no key
    assert keyed.get("/v1/jobs", headers=ALICE).json() == {"items": [], "next_cursor": None}


def test_owners_see_only_their_own(keyed, row_counts):
    ds = keyed.post("/v1/datasets", headers=ALICE,
                    json={"name": "a", "inputs": [[0, 1], [1, 0], [1, 1], [0, 0]], "targets": [0, 1, 1, 0]}).json()
    job = keyed.post("/v1/jobs", headers=ALICE, json={"name": "j", "dataset_id": ds["id"], "model": SPEC,
                                                      "training": TRAINING})
    assert job.status_code == 202, job.text
    job_id = job.json()["id"]

    for path in (f"/v1/datasets/{ds['id']}", f"/v1/datasets/{ds['id']}/preview", f"/v1/jobs/{job_id}",
                 f"/v1/jobs/{job_id}/metrics", f"/v1/jobs/{job_id}/checkpoints",
                 f"/v1/jobs/{job_id}/checkpoints/latest/download"):
        assert keyed.get(path, headers=BOB).status_code == 404, path
        assert keyed.get(path, headers=ALICE).status_code in (200, 404 if path.endswith("download") else 200)
    assert keyed.post(f"/v1/jobs/{job_id}/cancel", headers=BOB).status_code == 404
    assert keyed.get("/v1/jobs", headers=BOB).json() == {"items": [], "next_cursor": None}
    assert keyed.get("/v1/datasets", headers=BOB).json() == {"items": []}
    assert [j["id"] for j in keyed.get("/v1/jobs", headers=ALICE).json()["items"]] == [job_id]

    before = row_counts()
    r = keyed.post("/v1/jobs", headers=BOB, json={"name": "j", "dataset_id": ds["id"], "model": SPEC,
                                                  "training": TRAINING})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dataset_id"]
    assert row_counts() == before
    assert keyed.post(f"/v1/jobs/{job_id}/cancel", headers=ALICE).json()["status"] == "cancelled"
