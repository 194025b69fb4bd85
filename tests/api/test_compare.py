"""GET /v1/jobs/compare and GET /v1/jobs/groups over real SQLite and PostgreSQL: jobs made
through the API and trained in-process by the worker's ``run_job``; the diff, final metrics
and curves checked against each job's own GET /v1/jobs/{id} and /metrics, the groups'
statistics against numpy's."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import get_settings
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 2}]}
DEEP = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 4}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 4, "out_features": 2}]}
STEPS = list(range(1, 9))  # 2 epochs of 32 training samples (40, less the validation split) / 8


@pytest.fixture
def dataset_id(client) -> str:
    x = np.random.default_rng(0).normal(size=(40, 3)).astype(np.float32)
    r = client.post("/v1/datasets", json={"name": "d", "inputs": x.tolist(),
                                          "targets": (x[:, 0] > 0).astype(int).tolist()})
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture
def submit(client, settings, dataset_id):
    def submit(lr: float = 0.1, seed: int = 0, model: dict = SPEC, train: bool = True, headers=None,
               dataset: str | None = None) -> str:
        body = {"name": f"lr{lr}-s{seed}", "dataset_id": dataset or dataset_id, "model": model,
                "training": {"epochs": 2, "batch_size": 8, "seed": seed, "optimizer": {"type": "SGD", "lr": lr}}}
        r = client.post("/v1/jobs", json=body, headers=headers)
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        if train:
            assert run_job(job_id, settings) == "succeeded"
        return job_id
    return submit


def _ok(r):
    assert r.status_code == 200, r.text
    return r.json()


def _loc(r) -> list:
    assert r.status_code == 422, r.text
    return r.json()["detail"][0]["loc"]


def test_three_learning_rates_side_by_side(client, submit):
    lrs = [0.1, 0.05, 0.01]
    ids = [submit(lr) for lr in lrs]
    out = _ok(client.get("/v1/jobs/compare", params={"ids": ",".join(ids)}))
    assert set(out) == {"jobs", "config", "final_metrics", "curves"}
    assert out["jobs"] == [{"id": i, "name": f"lr{lr}-s0", "status": "succeeded"} for i, lr in zip(ids, lrs)]
    # the diff names exactly the learning rate, with each run's value
    assert out["config"]["differs"] == {"training.optimizer.lr": dict(zip(ids, lrs))}
    same = out["config"]["same"]
    assert same["training.seed"] == 0 and same["training.epochs"] == 2 and same["training.optimizer.type"] == "SGD"
    assert same["model.layers.0.type"] == "Linear" and same["model.layers.0.out_features"] == 2
    shown = [_ok(client.get(f"/v1/jobs/{i}")) for i in ids]
    # every path of GET /v1/jobs/{id}'s model and training, defaults included, is on one side
    assert "training.validation_split" in same
    # final metrics side by side, as each job shows them
    assert out["final_metrics"] == {j["id"]: j["metrics"] for j in shown}
    assert all(out["final_metrics"][i]["val_loss"] is not None for i in ids)
    # curves: one entry per job, steps 1..N, the values of the job's own /metrics
    assert {"loss", "lr", "train_loss", "val_loss", "val_accuracy"} <= set(out["curves"])
    for i in ids:
        series = _ok(client.get(f"/v1/jobs/{i}/metrics"))["series"]
        assert set(out["curves"]) == set(series)
        for name, curves in out["curves"].items():
            assert curves[i] == {k: series[name][k] for k in ("step", "epoch", "value")}, name
    for curves in (out["curves"]["loss"], out["curves"]["lr"]):
        assert set(curves) == set(ids) and all(c["step"] == STEPS for c in curves.values())
    assert [c["value"][0] for c in out["curves"]["lr"].values()] == lrs
    assert all(c["step"] == [4, 8] for c in out["curves"]["val_loss"].values())  # per epoch, on the step axis


def test_names_and_max_points(client, submit):
    ids = [submit(0.1), submit(0.02)]
    out = _ok(client.get("/v1/jobs/compare", params={"ids": ",".join(ids), "names": "loss,val_loss"}))
    assert set(out["curves"]) == {"loss", "val_loss"}
    out = _ok(client.get("/v1/jobs/compare", params={"ids": ",".join(ids), "names": "loss", "max_points": 4}))
    for i in ids:
        # the /metrics endpoint's downsampling: first, last and the extremes of each bucket
        want = _ok(client.get(f"/v1/jobs/{i}/metrics", params={"names": "loss", "max_points": 4}))["series"]["loss"]
        got = out["curves"]["loss"][i]
        assert got == {k: want[k] for k in ("step", "epoch", "value")}
        assert len(got["step"]) <= 4 and got["step"][0] == 1 and got["step"][-1] == 8
    r = client.get("/v1/jobs/compare", params={"ids": ",".join(ids), "names": "loss,nope"})
    assert _loc(r) == ["query", "names"] and "'nope'" in r.json()["detail"][0]["msg"]
    for bad in (1, 10_001, "x"):
        assert _loc(client.get("/v1/jobs/compare", params={"ids": ",".join(ids), "max_points": bad})) == [
            "query", "max_points"]


def test_a_path_one_job_lacks_differs_as_null(client, submit):
    a, b = submit(model=SPEC, train=False), submit(model=DEEP, train=False)
    out = _ok(client.get("/v1/jobs/compare", params={"ids": f"{a},{b}"}))
    differs = out["config"]["differs"]
    assert differs["model.layers.0.out_features"] == {a: 2, b: 4}
    assert differs["model.layers.1.type"] == {a: None, b: "ReLU"}
    assert differs["model.layers.2.in_features"] == {a: None, b: 4}
    assert set(differs) == {"model.layers.0.out_features", "model.layers.1.type", "model.layers.2.type",
                            "model.layers.2.in_features", "model.layers.2.out_features"}
    assert out["config"]["same"]["model.layers.0.in_features"] == 3
    # queued jobs: nothing measured yet
    assert out["curves"] == {} and [j["status"] for j in out["jobs"]] == ["queued", "queued"]
    assert out["final_metrics"][a] == {"train_loss": None, "val_loss": None, "val_accuracy": None}


def test_compare_rejects_bad_id_lists(client, submit):
    a, b = submit(train=False), submit(train=False)
    assert _loc(client.get("/v1/jobs/compare")) == ["query", "ids"]
    for ids in (a, f"{a},{a}", f"{a}, ,", ",".join([a, b] + [f"x{i}" for i in range(19)])):
        r = client.get("/v1/jobs/compare", params={"ids": ids})
        assert _loc(r) == ["query", "ids"], ids
    r = client.get("/v1/jobs/compare", params={"ids": f"{a},{b}", "idz": "1"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "idz"]
    r = client.get("/v1/jobs/compare", params={"ids": f"{a},deadbeef,{b}"})
    assert r.status_code == 404 and "deadbeef" in r.json()["detail"]
    # the jobs router still serves its own paths
    assert _ok(client.get(f"/v1/jobs/{a}"))["id"] == a


@pytest.fixture
def keyed(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    with TestClient(app) as c:
        yield c


def test_another_owners_job_is_a_404_naming_it(keyed, settings):
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    ids = {}
    for who, headers in (("alice", alice), ("bob", bob)):
        ds = keyed.post("/v1/datasets", headers=headers, json={"name": "d", "inputs": [[0, 1, 2], [1, 0, 2]] * 4,
                                                               "targets": [0, 1] * 4}).json()["id"]
        body = {"name": "j", "dataset_id": ds, "model": SPEC,
                "training": {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}}
        ids[who] = [keyed.post("/v1/jobs", headers=headers, json=body).json()["id"] for _ in range(2)]
    a1, a2 = ids["alice"]
    for job_id in (a1, a2):
        assert run_job(job_id, settings) == "succeeded"
    b1 = ids["bob"][0]
    assert _ok(keyed.get("/v1/jobs/compare", headers=alice, params={"ids": f"{a1},{a2}"}))["jobs"][0]["id"] == a1
    r = keyed.get("/v1/jobs/compare", headers=alice, params={"ids": f"{a1},{b1}"})
    assert r.status_code == 404 and r.json()["detail"] == f"job {b1} not found"
    r = keyed.get("/v1/jobs/groups", headers=alice, params={"ids": f"{a1},{b1}", "by": "training.seed",
                                                             "metric": "loss"})
    assert r.status_code == 404 and b1 in r.json()["detail"]
    # without ids, bob's jobs are simply not in alice's groups
    out = _ok(keyed.get("/v1/jobs/groups", headers=alice, params={"by": "training.optimizer.lr",
                                                                   "metric": "val_loss"}))
    assert [g["job_ids"] for g in out["groups"]] == [[a1, a2]]
    assert keyed.get("/v1/jobs/compare", params={"ids": f"{a1},{a2}"}).status_code == 401


def _series(client, job_id: str, name: str) -> dict:
    return _ok(client.get(f"/v1/jobs/{job_id}/metrics", params={"names": name}))["series"][name]


def test_groups_of_seeds_by_learning_rate(client, submit):
    runs = {(lr, seed): submit(lr, seed) for lr in (0.1, 0.02) for seed in (0, 1)}
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr", "metric": "val_loss"}))
    assert out["by"] == ["training.optimizer.lr"] and out["metric"] == "val_loss"
    assert [g["key"] for g in out["groups"]] == [{"training.optimizer.lr": 0.02}, {"training.optimizer.lr": 0.1}]
    for group, lr in zip(out["groups"], (0.02, 0.1)):
        members = [runs[lr, 0], runs[lr, 1]]
        assert group["job_ids"] == members  # oldest first
        finals = np.array([_ok(client.get(f"/v1/jobs/{i}"))["metrics"]["val_loss"] for i in members])
        assert group["final"] == pytest.approx({"mean": np.mean(finals), "std": np.std(finals),
                                                "min": finals.min(), "max": finals.max(), "n": 2}, rel=1e-12)
        assert group["final"]["std"] > 0  # the seeds differ
        values = np.array([_series(client, i, "val_loss")["value"] for i in members])  # runs x epochs
        curve = group["curve"]
        assert curve["axis"] == "epoch" and curve["epoch"] == [1, 2] and curve["step"] == [4, 8]
        assert curve["n"] == [2, 2]
        assert curve["mean"] == pytest.approx(np.mean(values, axis=0).tolist(), rel=1e-12)
        assert curve["std"] == pytest.approx(np.std(values, axis=0).tolist(), rel=1e-12)
        assert curve["min"] == values.min(axis=0).tolist() and curve["max"] == values.max(axis=0).tolist()

    # a step metric: per step, and a final value from the last point (loss is no final metric)
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr", "metric": "loss"}))
    for group, lr in zip(out["groups"], (0.02, 0.1)):
        values = np.array([_series(client, runs[lr, s], "loss")["value"] for s in (0, 1)])
        curve = group["curve"]
        assert curve["axis"] == "step" and curve["step"] == STEPS and curve["epoch"] == [1] * 4 + [2] * 4
        assert curve["n"] == [2] * 8
        assert curve["mean"] == pytest.approx(np.mean(values, axis=0).tolist(), rel=1e-12)
        assert curve["std"] == pytest.approx(np.std(values, axis=0).tolist(), rel=1e-12)
        assert group["final"]["mean"] == pytest.approx(np.mean(values[:, -1]), rel=1e-12)

    # max_points: per aligned block of steps (here of 4: steps 1-3, 4-7 and 8), each run
    # contributing the mean of its points there
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr", "metric": "loss",
                                                    "max_points": 4}))
    curve = out["groups"][0]["curve"]
    values = np.array([_series(client, runs[0.02, s], "loss")["value"] for s in (0, 1)])
    per_block = np.array([values[:, b].mean(axis=1) for b in ([0, 1, 2], [3, 4, 5, 6], [7])])  # blocks x runs
    assert curve["step"] == [3, 7, 8] and curve["epoch"] == [1, 2, 2] and curve["n"] == [2, 2, 2]
    assert curve["mean"] == pytest.approx(per_block.mean(axis=1).tolist(), rel=1e-12)
    assert curve["std"] == pytest.approx(per_block.std(axis=1).tolist(), rel=1e-12)

    # by seed instead: the lrs are the group's runs
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.seed", "metric": "val_accuracy"}))
    assert [(g["key"], g["job_ids"], g["final"]["n"]) for g in out["groups"]] == [
        ({"training.seed": 0}, [runs[0.1, 0], runs[0.02, 0]], 2),
        ({"training.seed": 1}, [runs[0.1, 1], runs[0.02, 1]], 2)]
    # a composite key, a subset of ids, a status
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr, training.seed",
                                                    "metric": "epoch:val_loss"}))
    assert [g["key"] for g in out["groups"]] == [
        {"training.optimizer.lr": lr, "training.seed": s} for lr in (0.02, 0.1) for s in (0, 1)]
    assert all(g["final"]["n"] == 1 and g["final"]["std"] == 0 for g in out["groups"])
    ids = f"{runs[0.1, 0]},{runs[0.1, 1]}"
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr", "metric": "val_loss",
                                                    "ids": ids}))
    assert [g["job_ids"] for g in out["groups"]] == [[runs[0.1, 0], runs[0.1, 1]]]
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.optimizer.lr", "metric": "val_loss",
                                                    "status": "succeeded"}))
    assert [g["final"]["n"] for g in out["groups"]] == [2, 2]
    assert _ok(client.get("/v1/jobs/groups", params={"by": "training.nope", "metric": "x",
                                                     "status": "running"}))["groups"] == []


def test_groups_reject_unknown_paths_metrics_and_parameters(client, submit):
    submit(train=False)
    job = submit()
    base = {"by": "training.optimizer.lr", "metric": "val_loss"}
    r = client.get("/v1/jobs/groups", params={**base, "by": "training.optimizer.lrr"})
    assert _loc(r) == ["query", "by"] and "'training.optimizer.lr'" in r.json()["detail"][0]["msg"]  # a hint
    assert _loc(client.get("/v1/jobs/groups", params={**base, "by": "training.seed,model.nope"})) == ["query", "by"]
    assert _loc(client.get("/v1/jobs/groups", params={**base, "by": " , "})) == ["query", "by"]
    r = client.get("/v1/jobs/groups", params={**base, "metric": "val_losss"})
    assert _loc(r) == ["query", "metric"] and "val_loss" in r.json()["detail"][0]["msg"]
    assert _loc(client.get("/v1/jobs/groups", params={**base, "metric": "step:val_loss"})) == ["query", "metric"]
    assert _loc(client.get("/v1/jobs/groups", params={"by": "training.seed"})) == ["query", "metric"]
    assert _loc(client.get("/v1/jobs/groups", params={"metric": "loss"})) == ["query", "by"]
    assert _loc(client.get("/v1/jobs/groups", params={**base, "status": "done"})) == ["query", "status"]
    assert _loc(client.get("/v1/jobs/groups", params={**base, "ids": ","})) == ["query", "ids"]
    assert _loc(client.get("/v1/jobs/groups", params={**base, "sort": "x"})) == ["query", "sort"]
    r = client.get("/v1/jobs/groups", params={**base, "ids": f"{job},nope"})
    assert r.status_code == 404 and r.json()["detail"] == "job nope not found"
    # a subtree is a path too; the queued job lacks val_loss: in the group, not in n
    out = _ok(client.get("/v1/jobs/groups", params={**base, "by": "training.optimizer"}))
    [group] = out["groups"]
    assert group["key"]["training.optimizer"]["lr"] == 0.1 and len(group["job_ids"]) == 2
    assert group["final"]["n"] == 1 and group["curve"]["n"] == [1, 1]


def test_group_curves_of_long_runs_are_downsampled_with_every_run_in_every_block(client, submit, settings):
    """Two runs of 5,000 steps (values step and 2 * step, written as the worker writes them):
    at most max_points blocks, both runs in each, each run's value there its block's middle."""
    from store.db import session_scope
    from store.repositories import metrics

    ids = [submit(seed=s, train=False) for s in (0, 1)]
    for factor, job_id in zip((1.0, 2.0), ids):
        for first in range(1, 5001, 1000):
            rows = [{"kind": "step", "name": "loss", "epoch": 1, "step": s, "value": factor * s}
                    for s in range(first, first + 1000)]
            with session_scope(settings.resolved_database_url) as session:
                metrics.add_many(session, job_id=job_id, rows=rows)
    out = _ok(client.get("/v1/jobs/groups", params={"by": "training.epochs", "metric": "loss", "max_points": 100}))
    [group] = out["groups"]
    curve = group["curve"]
    assert 50 < len(curve["step"]) <= 100 and curve["step"] == sorted(curve["step"]) and curve["step"][-1] == 5000
    assert set(curve["n"]) == {2}
    width = 64  # the smallest 2**L with at most 100 blocks over steps 1..5000
    for step, mean, std in list(zip(curve["step"], curve["mean"], curve["std"]))[1:-1]:  # the whole blocks
        assert step % width == width - 1
        middle = step - (width - 1) / 2
        assert mean == pytest.approx(1.5 * middle, rel=1e-12) and std == pytest.approx(0.5 * middle, rel=1e-12)
    assert group["final"] == {"mean": 7500.0, "std": 2500.0, "min": 5000.0, "max": 10000.0, "n": 2}
