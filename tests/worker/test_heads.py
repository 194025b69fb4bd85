"""Jobs submitted through the API and trained in-process: every zoo model a few steps, a
multi-task digits job (digit + parity heads) reporting per-head metrics, regression,
scheduler and early stopping."""
from __future__ import annotations

import numpy as np
import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from config.settings import Settings, get_settings
from store.db import session_scope
from store.repositories import jobs, metrics
from worker.lifecycle import run_job

TINY = {"vgg11": {"width": 4, "classifier_width": 8, "pool_size": 1, "dropout": 0.0},
        "resnet18": {"width": 2}, "mlp": {"hidden": [8]},
        "lstm_classifier": {"hidden_size": 4}, "gru_classifier": {"hidden_size": 4},
        "transformer_classifier": {"d_model": 4, "nhead": 2, "num_layers": 1, "dim_feedforward": 8}}


@pytest.fixture
def api(database_url, embedded_redis_url):
    settings = Settings(database_url=database_url, redis_url=embedded_redis_url, queue="test-heads")
    app = create_app()
    app.dependency_overrides[get_settings] = lambda: settings
    with TestClient(app, raise_server_exceptions=True) as c:
        yield c, settings


def _train(client, settings, body) -> dict:
    r = client.post("/v1/jobs", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    assert run_job(job_id, settings) == "succeeded"
    with session_scope(settings.resolved_database_url) as s:
        job = jobs.get(s, job_id=job_id)
        return {"final": job.final_metrics, "names": {m.name for m in metrics.for_job(s, job_id=job_id)}}


@pytest.mark.parametrize("name", ["mlp", "simple_cnn", "vgg11", "resnet18", "lstm_classifier", "gru_classifier",
                                  "transformer_classifier", "logistic_regression", "linear_svm", "linear_regression"])
def test_each_zoo_model_trains_through_the_api(api, name, request):
    if "postgresql" in request.node.name and name not in ("resnet18", "linear_regression"):
        pytest.skip("one database is enough for most models; CI keeps the two slowest on both")
    client, settings = api
    builtin = "diabetes" if name == "linear_regression" else "digits"
    ds = client.post("/v1/datasets/builtin", json={"builtin": builtin, "limit": 24}).json()
    training = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "Adam", "lr": 1e-3}, "validation_split": 0.25,
                "metrics": None}
    out = _train(client, settings, {"name": name, "dataset_id": ds["id"],
                                    "model": {"zoo": name, "args": TINY.get(name, {})}, "training": training})
    assert np.isfinite(out["final"]["train_loss"]) and np.isfinite(out["final"]["val_loss"])


def test_multitask_digits_reports_per_head_metrics(api):
    client, settings = api
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data[:60] / 16).tolist(), d.target[:60]
    ds = client.post("/v1/datasets", json={"name": "mt", "inputs": x,
                                           "targets": {"digit": y.tolist(), "parity": (y % 2).tolist()}}).json()
    graph = {"graph": {"inputs": ["x"], "nodes": [
        {"name": "trunk", "type": "Linear", "in_features": 64, "out_features": 16, "inputs": ["x"]},
        {"name": "act", "op": "relu", "inputs": ["trunk"]},
        {"name": "digit", "type": "Linear", "in_features": 16, "out_features": 10, "inputs": ["act"]},
        {"name": "parity", "type": "Linear", "in_features": 16, "out_features": 2, "inputs": ["act"]}],
        "outputs": {"digit": "digit", "parity": "parity"}}}
    training = {"epochs": 3, "batch_size": 16, "optimizer": {"type": "SGD", "lr": 0.2, "momentum": 0.5},
                "loss": {"digit": {"type": "CrossEntropyLoss"}, "parity": {"type": "CrossEntropyLoss", "weight": 0.5}},
                "metrics": {"digit": ["accuracy", "f1", "confusion_matrix"], "parity": ["accuracy"]},
                "scheduler": {"type": "StepLR", "step_size": 1, "gamma": 0.5}, "clip_grad_norm": 5.0}
    out = _train(client, settings, {"name": "mt", "dataset_id": ds["id"], "model": graph, "training": training})
    names = {"val_digit_accuracy", "val_digit_f1", "val_parity_accuracy", "val_digit_loss", "val_parity_loss"}
    assert names <= out["names"]
    final = out["final"]
    assert len(final["val_digit_confusion_matrix"]) == 10
    assert final["val_loss"] == pytest.approx(final["val_digit_loss"] + 0.5 * final["val_parity_loss"])


def test_early_stopping_stops_and_regression_metrics(api):
    client, settings = api
    ds = client.post("/v1/datasets/builtin", json={"builtin": "diabetes", "limit": 40}).json()
    training = {"epochs": 50, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 1e-9}, "metrics": ["mse", "r2"],
                "early_stopping": {"metric": "val_loss", "patience": 1, "min_delta": 1e9}}
    out = _train(client, settings, {"name": "r", "dataset_id": ds["id"], "model": {"zoo": "linear_regression"},
                                    "training": training})
    assert out["final"]["stopped_early_at_epoch"] == 2 and {"val_mse", "val_r2"} <= out["names"]


def test_a_regression_heads_val_loss_compares_like_shapes(api):
    """(N,) targets against an (N, 1) output: validation must not broadcast them to (N, N)."""
    client, settings = api
    ds = client.post("/v1/datasets/builtin", json={"builtin": "diabetes", "limit": 60}).json()
    out = _train(client, settings, {"name": "reg", "dataset_id": ds["id"], "model": {"zoo": "linear_regression"},
                                    "training": {"epochs": 2, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.01},
                                                 "validation_split": 0.25, "metrics": ["mse"]}})
    assert out["final"]["val_loss"] == pytest.approx(out["final"]["val_mse"], rel=1e-6)
