"""Predict latency: POST /v1/jobs/{id}/predict through the real app (FastAPI TestClient), for a
small MLP and for ResNet-18, at batch 1 and 64, cold (the model built and its checkpoint
loaded from the database: the cache is cleared before each call) and cached.

Two jobs are trained first (in this process, ``worker.lifecycle.run_job``, on a SQLite
database in a temporary directory; Redis only for the submit's enqueue):

- ``mlp``: ``{"zoo": "mlp"}`` on the builtin ``digits`` (64 features, 10 classes), 1 epoch;
- ``resnet18``: ``{"zoo": "resnet18", "args": {"width": W}}`` (default 64: full width, 11.2M
  parameters; the 'small' stem at 32x32) on 16 random 3x32x32 images of 10 classes, 1 step.

Inputs are sent as base64 float32 (what trainyard.client sends); one more row sends the
ResNet's batch of 64 as nested lists, for the JSON cost. ``forward`` rows time
``LoadedModel.predict`` alone (no HTTP, no JSON), for the overhead. p99 is the nearest rank.

    python bench/predict_latency.py [--width 64] [--repeat 1.0] [--json out.json]
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pct(ts: list[float], q: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(q * (len(ts) - 1)))]


def _summary(ts: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ts) * 1e3, 2), "p99_ms": round(_pct(ts, 0.99) * 1e3, 2),
            "min_ms": round(min(ts) * 1e3, 2), "runs": len(ts)}


def machine() -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": [round(v, 2) for v in os.getloadavg()],
            "python": platform.python_version(), "numpy": np.__version__}


def _encoded(x: np.ndarray) -> dict:
    return {"base64": base64.b64encode(x.astype("<f4").tobytes()).decode(), "dtype": "float32",
            "shape": list(x.shape)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--redis", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--width", type=int, default=64, help="ResNet-18 base width (64: full)")
    ap.add_argument("--repeat", type=float, default=1.0, help="scale every case's number of runs")
    ap.add_argument("--json")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from api import inference
    from api.main import create_app
    from config.settings import Settings, get_settings
    from migrations import upgrade
    from worker.lifecycle import run_job

    out: dict = {"machine_before": machine(), "width": args.width, "cases": []}
    print(json.dumps(out["machine_before"]))
    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{d}/bench.db"
        upgrade(url)
        settings = Settings(database_url=url, redis_url=args.redis, queue=f"bench-{uuid.uuid4().hex[:8]}")
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: settings
        with TestClient(app) as client:
            def train(name: str, dataset: dict, model: dict, training: dict) -> dict:
                t0 = time.perf_counter()
                r = client.post(dataset[0], json=dataset[1])
                assert r.status_code == 201, r.text
                job = client.post("/v1/jobs", json={"name": name, "dataset_id": r.json()["id"], "model": model,
                                                    "training": training}).json()
                assert run_job(job["id"], settings) == "succeeded"
                job = client.get(f"/v1/jobs/{job['id']}").json()
                print(f"trained {name} in {time.perf_counter() - t0:.1f} s")
                return job

            sgd = {"type": "SGD", "lr": 0.01}
            mlp = train("mlp", ("/v1/datasets/builtin", {"builtin": "digits"}), {"zoo": "mlp"},
                        {"epochs": 1, "batch_size": 64, "optimizer": sgd})
            g = np.random.default_rng(0)
            images = g.normal(size=(16, 3, 32, 32)).astype(np.float32)
            resnet = train("resnet18", ("/v1/datasets", {"name": "img", "inputs": _encoded(images),
                                                         "targets": list(range(10)) + list(range(6))}),
                           {"zoo": "resnet18", "args": {"width": args.width}},
                           {"epochs": 1, "batch_size": 64, "optimizer": sgd})

            def case(name: str, job: dict, batch: int, cold: bool, runs: int, lists: bool = False) -> None:
                x = g.normal(size=(batch, *job["plan"]["input_shape"])).astype(np.float32)
                body = {"inputs": x.tolist() if lists else _encoded(x)}
                path = f"/v1/jobs/{job['id']}/predict"
                runs = max(3, round(runs * args.repeat))
                if not cold:
                    assert client.post(path, json=body).status_code == 200  # load it, warm up
                ts = []
                for _ in range(runs):
                    if cold:
                        inference.cache.clear()
                    t0 = time.perf_counter()
                    r = client.post(path, json=body)
                    ts.append(time.perf_counter() - t0)
                    assert r.status_code == 200, r.text
                row = {"model": name, "batch": batch, "inputs": "lists" if lists else "base64",
                       "call": "cold" if cold else "cached", **_summary(ts), "request_bytes": len(json.dumps(body))}
                if not cold:  # the forward alone, on the cached model
                    loaded = inference.cache.get(r.json()["checkpoint"]["id"], None, settings.model_cache_bytes)
                    fts = []
                    for _ in range(runs):
                        t0 = time.perf_counter()
                        loaded.predict(x)
                        fts.append(time.perf_counter() - t0)
                    row["forward"] = _summary(fts)
                    row["parameters_bytes"] = loaded.nbytes
                out["cases"].append(row)
                print(json.dumps(row))

            for name, job, runs in (("mlp", mlp, 200), ("resnet18", resnet, 12)):
                for batch in (1, 64):
                    case(name, job, batch, cold=True, runs=max(5, runs // 10))
                    case(name, job, batch, cold=False, runs=runs if batch == 1 else max(5, runs // 2))
            case("resnet18", resnet, 64, cold=False, runs=6, lists=True)
            out["builds"] = inference.builds
    out["machine_after"] = machine()
    print(json.dumps(out["machine_after"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
