"""API load: N concurrent clients against a real API process for a bounded time.

One uvicorn API process (``bench.live_latency.api_process``) over PostgreSQL (a schema of its
own) and the machine's Redis; in this process ``--clients`` asyncio clients (httpx, one
connection each) loop for ``--seconds`` over a weighted mix of the service's endpoints:
health, the job list, a job, its metrics (a 2,000-step run seeded in the database), its
checkpoints, the dataset list, the fleet, spec validation and job submission (1 in 50;
no worker runs, so submitted jobs stay queued). Every request's status and wall latency
are kept; reported per endpoint: count, p50, p99, max and the 5xx (and other non-2xx)
count, plus requests per second overall. The client and the server share the machine.

    .venv/bin/python bench/api_load.py --clients 100 --seconds 60 [--json out.json]
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.live_latency import api_process, database, machine, percentile  # noqa: E402

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 16, "out_features": 4}]}
TRAINING = {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}}


def seed(url: str) -> tuple[str, str]:
    """A dataset and a job with a 2,000-step metric history."""
    import numpy as np

    from api.routes.jobs import create_job
    from config.settings import Settings
    from plan.request import JobCreate
    from store.db import session_scope
    from store.repositories import datasets, metrics

    x = np.random.default_rng(0).normal(size=(256, 4, 4)).astype(np.float32)
    with session_scope(url) as s:
        ds = datasets.create(s, name="load", inputs=x, targets=np.arange(256) % 4, task="classification").id
    with session_scope(url) as s:
        job = create_job(s, JobCreate(name="seeded", dataset_id=ds, model=SPEC, training=TRAINING),
                         Settings(database_url=url), "local")
        rows = [{"kind": "step", "name": "loss", "epoch": 1 + k // 500, "step": k, "value": 1.0 / k}
                for k in range(1, 2001)]
        metrics.add_many(s, job_id=job.id, rows=rows)
        return ds, job.id


def mix(ds: str, job: str) -> list[tuple[str, int, str, str, dict | None]]:
    """(name, weight, method, path, json body)."""
    submit = {"name": "load", "dataset_id": ds, "model": SPEC, "training": TRAINING}
    return [
        ("GET /v1/health", 10, "GET", "/v1/health", None),
        ("GET /v1/jobs", 20, "GET", "/v1/jobs?limit=20", None),
        ("GET /v1/jobs/{id}", 20, "GET", f"/v1/jobs/{job}", None),
        ("GET /v1/jobs/{id}/metrics", 15, "GET", f"/v1/jobs/{job}/metrics?max_points=200", None),
        ("GET /v1/jobs/{id}/checkpoints", 8, "GET", f"/v1/jobs/{job}/checkpoints", None),
        ("GET /v1/datasets", 10, "GET", "/v1/datasets", None),
        ("GET /v1/workers", 8, "GET", "/v1/workers", None),
        ("POST /v1/specs/validate", 7, "POST", "/v1/specs/validate", {"model": SPEC, "input_shape": [4, 4]}),
        ("POST /v1/jobs", 2, "POST", "/v1/jobs", submit),
    ]


async def client(base: str, endpoints, deadline: float, seed_: int, out: list) -> None:
    import httpx

    rng = random.Random(seed_)
    weights = [e[1] for e in endpoints]
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=httpx.Limits(max_connections=1)) as http:
        while time.monotonic() < deadline:
            name, _, method, path, body = rng.choices(endpoints, weights)[0]
            t0 = time.perf_counter()
            try:
                r = await http.request(method, path, json=body)
                status = r.status_code
            except httpx.HTTPError as exc:
                status = f"error: {type(exc).__name__}"
            out.append((name, status, time.perf_counter() - t0))


async def load(base: str, endpoints, clients: int, seconds: float) -> list:
    out: list = []
    deadline = time.monotonic() + seconds
    await asyncio.gather(*(client(base, endpoints, deadline, i, out) for i in range(clients)))
    return out


def report(samples: list, seconds: float) -> dict:
    by: dict[str, list] = {}
    for name, status, dt in samples:
        by.setdefault(name, []).append((status, dt))
    rows = {}
    for name, got in sorted(by.items()):
        lat = [dt * 1000 for _, dt in got]
        rows[name] = {"n": len(got), "p50_ms": percentile(lat, 50), "p99_ms": percentile(lat, 99),
                      "max_ms": max(lat), "5xx": sum(1 for s, _ in got if isinstance(s, int) and s >= 500),
                      "other_non_2xx": sum(1 for s, _ in got if not (isinstance(s, int) and (s < 300 or s >= 500))),
                      "statuses": dict(Counter(str(s) for s, _ in got))}
    return {"requests": len(samples), "rps": len(samples) / seconds, "endpoints": rows,
            "total_5xx": sum(r["5xx"] for r in rows.values())}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--postgres-url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis-url", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    info = machine(a.postgres_url)
    with tempfile.TemporaryDirectory() as tmp, database("postgresql", Path(tmp), a.postgres_url) as url:
        ds, job = seed(url)
        with api_process(url, a.redis_url, Path(tmp)) as (_, base):
            load_before = os.getloadavg()
            samples = asyncio.run(load(base, mix(ds, job), a.clients, a.seconds))
            result = report(samples, a.seconds)
    result.update(clients=a.clients, seconds=a.seconds, machine=info, load_before=load_before,
                  load_after=os.getloadavg())
    print(json.dumps(result, indent=1))
    if a.json:
        a.json.write_text(json.dumps(result, indent=1))
    return 1 if result["total_5xx"] else 0


if __name__ == "__main__":
    sys.exit(main())
