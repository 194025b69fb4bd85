"""POST /v1/jobs/{id}/evaluate and the evaluations' reads, over SQLite and PostgreSQL: jobs
trained in-process, evaluations run in-process with worker.evaluation.run_evaluation, their
results checked against the engine's forward on the downloaded checkpoint."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.main import create_app
from config.settings import get_settings
from store.db import session_scope
from store.models import Evaluation
from store.repositories import datasets, evaluations
from tests.api.checkpoints import forward_on_checkpoint
from worker.evaluation import run_evaluation
from worker.lifecycle import run_job

SPEC = {"layers": [{"type": "Linear", "in_features": 3, "out_features": 8}, {"type": "ReLU"},
                   {"type": "Linear", "in_features": 8, "out_features": 2}]}
TRAINING = {"epochs": 3, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}, "seed": 0,
            "validation_split": 0.25}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x = np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)
    return x, (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)


def _dataset(client, x, targets, headers=None, **extra) -> dict:
    y = {k: v.tolist() for k, v in targets.items()} if isinstance(targets, dict) else targets.tolist()
    r = client.post("/v1/datasets", headers=headers, json={"name": "d", "inputs": x.tolist(), "targets": y, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def _job(client, ds_id: str, model=SPEC, training=TRAINING, headers=None) -> dict:
    r = client.post("/v1/jobs", headers=headers, json={"name": "j", "dataset_id": ds_id, "model": model,
                                                       "training": training})
    assert r.status_code == 202, r.text
    return r.json()


def _trained(client, settings, **kw) -> dict:
    x, y = _data(40, 0)
    job = _job(client, _dataset(client, x, y)["id"], **kw)
    assert run_job(job["id"], settings) == "succeeded"
    return client.get(f"/v1/jobs/{job['id']}").json()


def _evaluations(settings) -> int:
    with session_scope(settings.resolved_database_url) as s:
        return s.scalar(select(func.count()).select_from(Evaluation))


def _evaluate(client, settings, job_id: str, **body) -> dict:
    r = client.post(f"/v1/jobs/{job_id}/evaluate", json=body)
    assert r.status_code == 202, r.text
    ev = r.json()
    assert ev["status"] == "queued" and ev["results"] == {} and ev["job_id"] == job_id
    assert run_evaluation(ev["id"], settings) == "succeeded"
    done = client.get(f"/v1/jobs/{job_id}/evaluations/{ev['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    assert done["finished_at"] is not None and done["checkpoint_id"] == ev["checkpoint_id"]
    return done


def _cross_entropy(logits: np.ndarray, y: np.ndarray) -> float:
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def test_evaluation_matches_a_forward_on_the_downloaded_checkpoint(client, settings):
    job = _trained(client, settings)
    x, y = _data(37, 1)  # another dataset; 37 is not a multiple of the batch size
    ds = _dataset(client, x, y)
    r = client.post(f"/v1/jobs/{job['id']}/evaluate", json={"dataset_id": ds["id"]})
    assert r.status_code == 202, r.text
    ev = r.json()
    latest = [c for c in client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"] if c["latest"]][0]
    assert ev["checkpoint"] == "latest" and ev["checkpoint_id"] == latest["id"] and ev["dataset_id"] == ds["id"]
    assert ev["status"] == "queued" and ev["results"] == {} and ev["error"] is None
    assert [e["id"] for e in client.get(f"/v1/jobs/{job['id']}/evaluations").json()["items"]] == [ev["id"]]

    assert run_evaluation(ev["id"], settings) == "succeeded"
    done = client.get(f"/v1/jobs/{job['id']}/evaluations/{ev['id']}").json()
    assert done["status"] == "succeeded", done["error"]
    res = done["results"]
    head = res["heads"]["output"]
    logits = forward_on_checkpoint(client, job, x, latest["id"])
    assert res["num_samples"] == 37 and head["task"] == "classification" and head["target"] == "output"
    assert head["accuracy"] == float((logits.argmax(1) == y).mean())
    assert head["loss"] == pytest.approx(_cross_entropy(logits, y), rel=1e-6)
    assert res["loss"] == head["loss"]  # one head of weight 1
    cm = np.array(head["confusion_matrix"])
    assert cm.shape == (2, 2) and cm.sum() == 37 and np.trace(cm) / 37 == head["accuracy"]
    assert cm.sum(axis=1).tolist() == np.bincount(y, minlength=2).tolist()  # rows: the true class
    assert {"precision", "recall", "f1"} <= set(head)
    # delivered again (a redelivered message): nothing is recomputed or changed
    assert run_evaluation(ev["id"], settings) == "skipped"
    assert client.get(f"/v1/jobs/{job['id']}/evaluations/{ev['id']}").json() == done


def test_best_and_an_explicit_checkpoint_and_newest_first(client, settings):
    job = _trained(client, settings)
    marks = client.get(f"/v1/jobs/{job['id']}/checkpoints").json()["items"]
    best = next(c for c in marks if c["best"])
    oldest = marks[0]
    x, y = _data(30, 2)
    ds = _dataset(client, x, y)
    first = _evaluate(client, settings, job["id"], dataset_id=ds["id"], checkpoint="best")
    assert first["checkpoint"] == "best" and first["checkpoint_id"] == best["id"]
    second = _evaluate(client, settings, job["id"], dataset_id=ds["id"], checkpoint=oldest["id"])
    assert second["checkpoint"] == second["checkpoint_id"] == oldest["id"]
    for ev, ckpt in ((first, best), (second, oldest)):
        logits = forward_on_checkpoint(client, job, x, ckpt["id"])
        assert ev["results"]["heads"]["output"]["accuracy"] == float((logits.argmax(1) == y).mean())
        assert ev["results"]["loss"] == pytest.approx(_cross_entropy(logits, y), rel=1e-6)
    listed = client.get(f"/v1/jobs/{job['id']}/evaluations").json()["items"]
    assert [e["id"] for e in listed] == [second["id"], first["id"]]
    assert listed[0] == second


def test_multitask_regression_head_gets_mse_mae_r2_and_the_weighted_total(client, settings):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(48, 3)).astype(np.float32)
    targets = {"cls": (x[:, 0] > 0).astype(np.int64), "reg": (x @ np.array([1.0, -2.0, 0.5])).astype(np.float32)}
    task = {"task": {"cls": "classification", "reg": "regression"}}
    graph = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "trunk", "type": "Linear", "in_features": 3, "out_features": 8, "inputs": ["x"]},
        {"name": "act", "op": "relu", "inputs": ["trunk"]},
        {"name": "cls", "type": "Linear", "in_features": 8, "out_features": 2, "inputs": ["act"]},
        {"name": "reg", "type": "Linear", "in_features": 8, "out_features": 1, "inputs": ["act"]}],
        "outputs": {"cls": "cls", "reg": "reg"}}}
    training = {**TRAINING, "loss": {"cls": {"type": "CrossEntropyLoss"}, "reg": {"type": "MSELoss", "weight": 0.5}},
                "metrics": {"cls": ["accuracy"], "reg": []}}
    job = _job(client, _dataset(client, x, targets, **task)["id"], model=graph, training=training)
    assert run_job(job["id"], settings) == "succeeded"
    job = client.get(f"/v1/jobs/{job['id']}").json()
    ex = rng.normal(size=(25, 3)).astype(np.float32)
    etargets = {"cls": (ex[:, 0] > 0).astype(np.int64), "reg": (ex @ np.array([1.0, -2.0, 0.5])).astype(np.float32)}
    ev = _evaluate(client, settings, job["id"], dataset_id=_dataset(client, ex, etargets, **task)["id"])
    res = ev["results"]
    out = forward_on_checkpoint(client, job, ex, ev["checkpoint_id"])
    reg, cls = res["heads"]["reg"], res["heads"]["cls"]
    err = out["reg"][:, 0].astype(np.float64) - etargets["reg"]
    assert set(reg) >= {"mse", "mae", "r2", "loss"} and "confusion_matrix" not in reg and reg["weight"] == 0.5
    assert reg["mse"] == pytest.approx(float((err ** 2).mean()), rel=1e-6)
    assert reg["loss"] == pytest.approx(reg["mse"], rel=1e-5)  # MSELoss over (N, 1) outputs and targets
    assert reg["mae"] == pytest.approx(float(np.abs(err).mean()), rel=1e-6)
    t = etargets["reg"].astype(np.float64)
    assert reg["r2"] == pytest.approx(1 - float((err ** 2).sum()) / float(((t - t.mean()) ** 2).sum()), rel=1e-6)
    assert cls["accuracy"] == float((out["cls"].argmax(1) == etargets["cls"]).mean())
    assert cls["loss"] == pytest.approx(_cross_entropy(out["cls"], etargets["cls"]), rel=1e-6)
    assert np.array(cls["confusion_matrix"]).sum() == 25  # asked or not, classification heads get one
    assert res["loss"] == pytest.approx(cls["loss"] + 0.5 * reg["loss"])


def test_refusals_name_the_field_and_write_nothing(client, settings, row_counts):
    job = _trained(client, settings)
    jid = job["id"]
    x, y = _data(10, 4)
    wide = _dataset(client, np.zeros((4, 5), np.float32), np.array([0, 1, 0, 1]))
    many_classes = _dataset(client, x, np.arange(10) % 3)
    regression = _dataset(client, x, x[:, 0].copy(), task="regression")
    two_heads = _dataset(client, x, {"a": y, "b": y})
    untrained = _job(client, _dataset(client, x, y)["id"])
    fine = _dataset(client, x, y)
    before, evals = row_counts(), _evaluations(settings)
    cases = [
        ({"dataset_id": "nope"}, 422, ["body", "dataset_id"], "does not exist"),
        ({"dataset_id": wide["id"]}, 422, ["body", "dataset_id"], "shape [5]"),
        ({"dataset_id": many_classes["id"]}, 422, ["body", "dataset_id"], "3 classes"),
        ({"dataset_id": regression["id"]}, 422, ["body", "dataset_id"], "regression"),
        ({"dataset_id": two_heads["id"]}, 422, ["body", "dataset_id"], "no target head 'output'"),
        ({"dataset_id": fine["id"], "checkpoint": "0" * 32}, 422, ["body", "checkpoint"], "no checkpoint"),
        ({}, 422, ["body", "dataset_id"], ""),
        ({"dataset_id": fine["id"], "extra": 1}, 422, ["body", "extra"], ""),
    ]
    for body, code, loc, words in cases:
        r = client.post(f"/v1/jobs/{jid}/evaluate", json=body)
        assert r.status_code == code, (body, r.text)
        assert r.json()["detail"][0]["loc"] == loc and words in r.json()["detail"][0]["msg"], r.text
    r = client.post(f"/v1/jobs/{untrained['id']}/evaluate", json={"dataset_id": fine["id"]})
    assert r.status_code == 409 and "no checkpoint" in r.json()["detail"]
    assert client.post(f"/v1/jobs/{'0' * 32}/evaluate", json={"dataset_id": fine["id"]}).status_code == 404
    assert client.get(f"/v1/jobs/{jid}/evaluations/{'0' * 32}").status_code == 404
    assert client.get(f"/v1/jobs/{jid}/evaluations").json() == {"items": []}
    assert row_counts() == before and _evaluations(settings) == evals == 0


def test_a_broker_outage_answers_503_and_keeps_nothing(client, settings, monkeypatch):
    from api import queue

    job = _trained(client, settings)
    x, y = _data(10, 5)
    ds = _dataset(client, x, y)

    def down(*_):
        raise ConnectionError("broker down")

    monkeypatch.setattr(queue, "enqueue_evaluation", down)
    r = client.post(f"/v1/jobs/{job['id']}/evaluate", json={"dataset_id": ds["id"]})
    assert r.status_code == 503 and _evaluations(settings) == 0


def test_a_crashed_run_is_run_again_and_a_lost_dataset_fails_it(client, settings):
    job = _trained(client, settings)
    x, y = _data(12, 6)
    ds = _dataset(client, x, y)
    ev = client.post(f"/v1/jobs/{job['id']}/evaluate", json={"dataset_id": ds["id"]}).json()
    url = settings.resolved_database_url
    with session_scope(url) as s:  # a worker took it and died before finishing
        assert evaluations.start(s, evaluation_id=ev["id"])
    assert client.get(f"/v1/jobs/{job['id']}/evaluations/{ev['id']}").json()["status"] == "running"
    assert run_evaluation(ev["id"], settings) == "succeeded"  # the redelivered message
    assert client.get(f"/v1/jobs/{job['id']}/evaluations/{ev['id']}").json()["results"]["num_samples"] == 12

    gone = client.post(f"/v1/jobs/{job['id']}/evaluate", json={"dataset_id": ds["id"]}).json()
    with session_scope(url) as s:
        datasets.delete(s, dataset_id=ds["id"])
    assert run_evaluation(gone["id"], settings) == "failed"
    failed = client.get(f"/v1/jobs/{job['id']}/evaluations/{gone['id']}").json()
    assert failed["status"] == "failed" and "deleted" in failed["error"] and failed["results"] == {}


def test_another_owners_job_and_dataset_are_404_and_422(settings):
    keyed = settings.model_copy(update={"api_keys": {"key-alice": "alice", "key-bob": "bob"}})
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: keyed
    alice, bob = {"X-API-Key": "key-alice"}, {"X-API-Key": "key-bob"}
    with TestClient(app) as c:
        x, y = _data(16, 7)
        a_ds = _dataset(c, x, y, headers=alice)
        a_job = _job(c, a_ds["id"], training={**TRAINING, "epochs": 1}, headers=alice)
        assert run_job(a_job["id"], keyed) == "succeeded"
        b_job = _job(c, _dataset(c, x, y, headers=bob)["id"], headers=bob)
        jid = a_job["id"]
        assert c.post(f"/v1/jobs/{jid}/evaluate", headers=bob, json={"dataset_id": a_ds["id"]}).status_code == 404
        assert c.get(f"/v1/jobs/{jid}/evaluations", headers=bob).status_code == 404
        r = c.post(f"/v1/jobs/{b_job['id']}/evaluate", headers=bob, json={"dataset_id": a_ds["id"]})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "dataset_id"]
        assert _evaluations(keyed) == 0
        ev = c.post(f"/v1/jobs/{jid}/evaluate", headers=alice, json={"dataset_id": a_ds["id"]}).json()
        assert c.get(f"/v1/jobs/{jid}/evaluations/{ev['id']}", headers=bob).status_code == 404
        assert c.get(f"/v1/jobs/{b_job['id']}/evaluations/{ev['id']}", headers=bob).status_code == 404
        assert c.get(f"/v1/jobs/{jid}/evaluations/{ev['id']}", headers=alice).json()["status"] == "queued"
