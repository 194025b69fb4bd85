"""Multi-node placement at full size: 16 CPU ranks over 2 "hosts" (two real Celery worker
processes on 127.0.0.1 and 127.0.0.2, TRAINYARD_HOST_RANKS=8) against one process at 16x the
batch, on PostgreSQL and the machine's Redis. Reports whether the weights and the loss curve
agree, the placement the job logged, and the wall time of each run (on a 2-core machine 16
ranks are far slower than one process: the point is the equality, not the speed).

    .venv/bin/python bench/multinode.py [--ranks 16] [--per-host 8]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench.live_latency import database, machine  # noqa: E402

SPEC = {"layers": [{"type": "Linear", "in_features": 6, "out_features": 16}, {"type": "Tanh"},
                   {"type": "Linear", "in_features": 16, "out_features": 3}]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ranks", type=int, default=16)
    ap.add_argument("--per-host", type=int, default=8)
    ap.add_argument("--postgres-url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                             "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis-url", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    a = ap.parse_args()

    import redis
    from safetensors.numpy import load as load_safetensors

    from api import queue as api_queue
    from api.routes.jobs import create_job
    from config import queues
    from config.settings import Settings
    from plan.request import JobCreate
    from store.db import session_scope
    from store.repositories import checkpoints, datasets, events, jobs, metrics
    from trainyard.commands import worker_command, worker_environment
    from trainyard.processes import Child
    from worker.lifecycle import run_job

    per_rank = 4
    n_train = a.ranks * per_rank * 5  # 5 global batches an epoch
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n_train * 5 // 4, 6)).astype(np.float32)  # validation_split 0.2
    y = (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0.5)
    out: dict = {"machine": machine(a.postgres_url), "ranks": a.ranks, "per_host": a.per_host,
                 "load_before": os.getloadavg()}
    with tempfile.TemporaryDirectory() as tmp, database("postgresql", Path(tmp), a.postgres_url) as url:
        with session_scope(url) as s:
            ds = datasets.create(s, name="d", inputs=x, targets=y, task="classification").id

        def job(devices: int, batch: int) -> str:
            training = {"epochs": 2, "batch_size": batch, "optimizer": {"type": "SGD", "lr": 0.2, "momentum": 0.9},
                        "seed": 4, "validation_split": 0.2, "devices": devices, "device": "cpu"}
            with session_scope(url) as s:
                return create_job(s, JobCreate(name=f"d{devices}", dataset_id=ds, model=SPEC, training=training),
                                  Settings(database_url=url, max_devices=64), "local").id

        t0 = time.perf_counter()
        single = job(1, per_rank * a.ranks)
        assert run_job(single, Settings(database_url=url, train_in_child=False)) == "succeeded"
        out["single_s"] = time.perf_counter() - t0
        base = f"bench-{uuid.uuid4().hex[:8]}"
        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": a.redis_url, "TRAINYARD_QUEUE": base,
               "TRAINYARD_HOST_RANKS": str(a.per_host), "TRAINYARD_DEVICE": "cpu", "TRAINYARD_MAX_DEVICES": "64",
               "TRAINYARD_JOIN_TIMEOUT_S": "300"}
        hosts = []
        for address in ("127.0.0.1", "127.0.0.2"):
            e, _ = worker_environment("none", {**env, "TRAINYARD_WORKER_ADDRESS": address})
            child = Child(address, worker_command(queues.name(base, queues.CPU), hostname=f"b{address}@%h"), e)
            hosts.append(child.start(open(Path(tmp) / f"{address}.log", "ab")))
        try:
            multi = job(a.ranks, per_rank)
            t0 = time.perf_counter()
            api_queue.enqueue_training(Settings(database_url=url, redis_url=a.redis_url, queue=base), multi)
            status = "queued"
            while time.perf_counter() - t0 < 1800:
                with session_scope(url) as s:
                    status = jobs.get(s, job_id=multi).status
                if status in ("succeeded", "failed", "cancelled"):
                    break
                time.sleep(1)
            out["multi_s"] = time.perf_counter() - t0
        finally:
            for h in hosts:
                h.stop()
            redis.Redis.from_url(a.redis_url).delete(f"{base}.cpu")
        with session_scope(url) as s:
            res = {}
            for name, jid in (("single", single), ("multi", multi)):
                j = jobs.get(s, job_id=jid)
                w = load_safetensors(checkpoints.latest_with_data(s, job_id=jid).data)
                losses = [m.value for m in metrics.for_job(s, job_id=jid, kind="step") if m.name == "loss"]
                logs = [json.dumps(e.data) for e in events.after(s, job_id=jid, seq=0, kinds=("log",))]
                res[name] = (j.status, j.attempt, j.error, w, losses, logs)
    (_, _, _, w1, l1, _), (st, att, err, w16, l16, logs) = res["single"], res["multi"]
    out.update(status=st, attempt=att, error=err, steps=len(l16),
               max_weight_diff=max(float(np.abs(w16[k] - w1[k]).max()) for k in w1) if st == "succeeded" else None,
               max_loss_diff=float(np.abs(np.array(l16) - np.array(l1)).max()) if len(l16) == len(l1) else None,
               placement=[line for line in logs if "ranks over" in line][:1], load_after=os.getloadavg())
    out["equal"] = bool(st == "succeeded" and out["max_weight_diff"] < 1e-4 and out["max_loss_diff"] is not None
                        and out["max_loss_diff"] < 1e-5)
    print(json.dumps(out, indent=1, default=str))
    return 0 if out["equal"] else 1


if __name__ == "__main__":
    sys.exit(main())
