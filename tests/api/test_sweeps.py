"""/v1/sweeps in-process over SQLite and PostgreSQL and a real Redis: a sweep plans every
trial at submit, launches only max_concurrent of them, and a bad sweep (a field of the
space, or any trial the planner refuses) is a 422 naming it with nothing written."""
from __future__ import annotations

import copy

import pytest
import redis
from sqlalchemy import func, select

from store.db import session_scope
from store.models import Checkpoint, Dataset, Job, JobEvent, Metric, Sweep, SweepTrial
from store.repositories import checkpoints, jobs, metrics

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 4, "out_features": 3}]}
TRAINING = {"epochs": 2, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 1, "validation_split": 0.25}
GRID = {"training.optimizer.lr": {"values": [0.1, 0.01]}, "training.batch_size": {"values": [1, 2, 4]}}


@pytest.fixture
def dataset_id(client):
    body = {"name": "d", "inputs": [[[0, 1], [2, 3]]] * 8, "targets": [0, 1, 2, 0, 1, 2, 0, 1]}
    return client.post("/v1/datasets", json=body).json()["id"]


@pytest.fixture
def counts(settings):
    def count() -> dict[str, int]:
        with session_scope(settings.resolved_database_url) as s:
            return {m.__tablename__: s.scalar(select(func.count()).select_from(m))
                    for m in (Dataset, Job, JobEvent, Metric, Checkpoint, Sweep, SweepTrial)}
    return count


def _sweep(ds_id, **changes):
    body = {"name": "s", "base": {"name": "j", "dataset_id": ds_id, "model": copy.deepcopy(SPEC),
                                  "training": copy.deepcopy(TRAINING)},
            "method": "grid", "metric": {"name": "val_accuracy", "goal": "maximize"},
            "parameters": copy.deepcopy(GRID), "max_concurrent": 2}
    body.update(changes)
    return body


def test_a_grid_sweep_plans_six_trials_and_launches_two(client, settings, dataset_id):
    r = client.post("/v1/sweeps", json=_sweep(dataset_id))
    assert r.status_code == 201, r.text
    sweep = r.json()
    assert sweep["status"] == "running" and sweep["method"] == "grid"
    assert sweep["metric"] == {"name": "val_accuracy", "goal": "maximize"} and sweep["best"] is None
    assert sweep["progress"] == {"trials_total": 6, "trials_started": 2, "trials_finished": 0}
    trials = sweep["trials"]
    assert [t["parameters"] for t in trials] == [
        {"training.optimizer.lr": lr, "training.batch_size": bs} for lr in (0.1, 0.01) for bs in (1, 2, 4)]
    assert [t["status"] for t in trials] == ["queued", "queued"] + ["pending"] * 4
    assert all(t["job_id"] is None for t in trials[2:])
    # each launched trial is an ordinary job of the owner, planned with its parameters, and sent
    job = client.get(f"/v1/jobs/{trials[1]['job_id']}").json()
    assert job["training"]["batch_size"] == 2 and job["training"]["optimizer"]["lr"] == 0.1
    assert job["plan"]["steps_per_epoch"] == 3 and job["name"] == "j [1]"
    with session_scope(settings.resolved_database_url) as s:
        assert {j.sweep_id for j in s.scalars(select(Job))} == {sweep["id"]}
    broker = redis.Redis.from_url(settings.redis_url)
    assert broker.llen(f"{settings.queue}.cpu") == 2
    assert client.get(f"/v1/sweeps/{sweep['id']}").json()["trials"] == trials
    listed = client.get("/v1/sweeps").json()["items"]
    assert [s["id"] for s in listed] == [sweep["id"]] and listed[0]["progress"]["trials_started"] == 2
    assert client.get("/v1/sweeps/nope").status_code == 404


def test_random_sweep_draws_its_trials_from_the_seed(client, dataset_id):
    params = {"training.optimizer.lr": {"distribution": "log_uniform_values", "min": 1e-3, "max": 1e-1},
              "training.batch_size": {"distribution": "int_uniform", "min": 1, "max": 4}}
    body = _sweep(dataset_id, method="random", parameters=params, run_cap=5, seed=3)
    a = client.post("/v1/sweeps", json=body).json()
    b = client.post("/v1/sweeps", json=body).json()
    assert [t["parameters"] for t in a["trials"]] == [t["parameters"] for t in b["trials"]]
    assert len(a["trials"]) == 5 and a["progress"]["trials_started"] == 2


@pytest.mark.parametrize("changes, pointer, words", [
    ({"parameters": {"training.optimizer.lr": {"values": []}}}, "/parameters/training.optimizer.lr/values",
     "non-empty"),
    ({"method": "random", "run_cap": 3,
      "parameters": {"training.optimizer.lr": {"distribution": "log_uniform_values", "min": -1, "max": 1}}},
     "/parameters/training.optimizer.lr/min", "min > 0"),
    ({"method": "random", "run_cap": 3,
      "parameters": {"training.optimizer.lr": {"distribution": "uniform", "min": 0.5, "max": 0.1}}},
     "/parameters/training.optimizer.lr/max", "greater than min"),
    ({"parameters": {"training.optimizer.lr": {"distribution": "uniform", "min": 0.1, "max": 0.5}}},
     "/parameters/training.optimizer.lr/distribution", "grid search takes values"),
    ({"method": "random", "run_cap": 101}, "/run_cap", "max_sweep_trials"),
    ({"max_concurrent": 17}, "/max_concurrent", "max_sweep_concurrent"),
    ({"parameters": {"training.seed": {"values": list(range(20))}, "training.epochs": {"values": [1, 2, 3, 4, 5, 6]}}},
     "/parameters", "120 combinations"),
    ({"parameters": {"training.scheduler.gamma": {"values": [0.5]}}}, "/parameters/training.scheduler.gamma",
     "no 'training.scheduler'"),
    ({"parameters": {"training.batch_size": {"values": [2, 0]}}}, "/trials/1/training/batch_size",
     "trial 1 (training.batch_size=0): Input should be greater than or equal to 1"),
    ({"parameters": {"model.layers.1.in_features": {"values": [4, 5]}}}, "/trials/1/model/layers/1",
     "trial 1 (model.layers.1.in_features=5)"),
    ({"parameters": {"training.epochs": {"values": [2, 5000]}}}, "/trials/1/training/epochs", "max_epochs"),
    ({"parameters": {"training.validation_split": {"values": [0.25, 0.0]}}}, "/metric/name",
     "trial 1 records no epoch metric 'val_accuracy'"),
    ({"metric": {"name": "val_accuracy", "goal": "up"}}, "/metric/goal", "maximize"),
    ({"method": "bayes"}, "/method", "grid"),
    ({"early_terminate": {"type": "hyperband", "min_iter": 0}}, "/early_terminate/min_iter", "greater than"),
])
def test_a_bad_sweep_names_the_field_and_writes_nothing(client, dataset_id, counts, changes, pointer, words):
    before = counts()
    r = client.post("/v1/sweeps", json=_sweep(dataset_id, **changes))
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert detail[0]["pointer"] == pointer, detail
    assert words in detail[0]["msg"], detail
    assert counts() == before


def test_every_invalid_trial_is_named(client, dataset_id, counts):
    before = counts()
    body = _sweep(dataset_id, parameters={"training.batch_size": {"values": [0, 2, -1]},
                                          "dataset_id": {"values": [dataset_id, "missing"]}})
    r = client.post("/v1/sweeps", json=body)
    assert r.status_code == 422
    locs = [d["loc"] for d in r.json()["detail"]]
    assert locs == [["body", "trials", 0, "training", "batch_size"], ["body", "trials", 1, "training", "batch_size"],
                    ["body", "trials", 3, "dataset_id"], ["body", "trials", 4, "training", "batch_size"],
                    ["body", "trials", 5, "training", "batch_size"]]
    assert counts() == before


def test_cancel_stops_queued_trials_and_never_launches_the_rest(client, settings, dataset_id):
    sweep = client.post("/v1/sweeps", json=_sweep(dataset_id)).json()
    first = sweep["trials"][0]["job_id"]
    with session_scope(settings.resolved_database_url) as s:  # a worker took the first trial
        jobs.claim(s, job_id=first, worker="w", lease_s=30)
    r = client.post(f"/v1/sweeps/{sweep['id']}/cancel")
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "cancelled" and out["finished_at"]
    assert [t["status"] for t in out["trials"]] == ["running", "cancelled"] + ["cancelled"] * 4
    assert client.get(f"/v1/jobs/{first}").json()["cancel_requested"] is True
    assert client.post(f"/v1/sweeps/{sweep['id']}/cancel").status_code == 409
    assert client.get("/v1/sweeps?status=cancelled").json()["items"][0]["id"] == sweep["id"]


def test_delete_removes_the_sweep_and_its_trial_jobs_with_their_rows(client, settings, dataset_id, counts):
    before = counts()
    keep = client.post("/v1/jobs", json={**_sweep(dataset_id)["base"], "name": "unrelated"}).json()["id"]
    sweep = client.post("/v1/sweeps", json=_sweep(dataset_id)).json()
    job_id = sweep["trials"][0]["job_id"]
    url = settings.resolved_database_url
    with session_scope(url) as s:
        attempt = jobs.claim(s, job_id=job_id, worker="w", lease_s=30)
        metrics.add_many(s, job_id=job_id, rows=[{"kind": "step", "name": "loss", "epoch": 1, "step": 1, "value": 1.0}])
        checkpoints.add(s, job_id=job_id, epoch=1, step=1, attempt=attempt, data=b"x", state=b"y")
    assert client.delete(f"/v1/sweeps/{sweep['id']}").status_code == 204
    assert client.get(f"/v1/sweeps/{sweep['id']}").status_code == 404
    assert client.delete(f"/v1/sweeps/{sweep['id']}").status_code == 404
    assert client.get(f"/v1/jobs/{job_id}").status_code == 404
    assert client.get(f"/v1/jobs/{keep}").status_code == 200
    after = counts()
    assert after["sweeps"] == after["sweep_trials"] == after["metrics"] == after["checkpoints"] == 0
    assert after["jobs"] == before["jobs"] + 1


def test_another_owners_sweep_is_not_found(settings, dataset_id, client):
    from fastapi.testclient import TestClient

    from api.main import create_app
    from config.settings import get_settings

    sweep = client.post("/v1/sweeps", json=_sweep(dataset_id)).json()
    keyed = settings.model_copy(update={"api_keys": {"k-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    with TestClient(app) as bob:
        headers = {"Authorization": "Bearer k-bob"}
        assert bob.get(f"/v1/sweeps/{sweep['id']}", headers=headers).status_code == 404
        assert bob.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=headers).status_code == 404
        assert bob.delete(f"/v1/sweeps/{sweep['id']}", headers=headers).status_code == 404
        assert bob.get("/v1/sweeps", headers=headers).json()["items"] == []
        # bob cannot sweep over local's dataset either
        r = bob.post("/v1/sweeps", json=_sweep(dataset_id), headers=headers)
        assert r.status_code == 422 and r.json()["detail"][0]["pointer"] == "/trials/0/dataset_id"
