"""Training on a dataset larger than is comfortable in memory: worker RSS and samples/s on a
sharded dataset (blob shards in PostgreSQL -> the worker's local cache -> memory maps, uint8
cast per batch) against the same data stored inline (the old layout: one .npz, decoded whole,
float32 on the device: 4x the uint8 bytes, plus the train split's copy).

Each run is ``worker.lifecycle.run_job`` in a fresh process (its VmHWM is the figure); the
model is deliberately cheap (Flatten + Linear 3072 -> 10, batch 256, 1 epoch, 10% validation)
so the data path dominates. Sizes are scaled to this shared 2-core, 24 GB machine: the
issue's 4 GB dataset becomes ``--mb`` (default 1536 MB) sharded only (inline it would need
~12 GB); the side-by-side comparison uses ``--peer-mb`` (default 384 MB) both ways. The
sharded run is repeated to show the cache reused (no copy the second time).

    python bench/sharded_data.py [--mb 1536] [--peer-mb 384 (0: no side-by-side)] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.blob_common import ROOT, machine, pg_schema  # noqa: E402

SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 3072, "out_features": 10}]}
TRAINING = {"epochs": 1, "batch_size": 256, "optimizer": {"type": "SGD", "lr": 0.01}, "seed": 0,
            "validation_split": 0.1}


def _images(mb: int) -> tuple[np.ndarray, np.ndarray]:
    n = int(mb * 1e6 // 3072)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, size=n)


def _store(url: str, mb: int, inline: bool) -> str:
    from ingest import codec, head_info
    from store.db import session_scope
    from store.models import Dataset
    from store.repositories import datasets

    x, y = _images(mb)
    with session_scope(url) as s:
        if not inline:
            return datasets.create(s, name=f"{mb}mb", inputs=x, targets=y, task="classification").id
        ds = Dataset(name=f"{mb}mb-inline", task="classification", num_samples=len(x), input_shape=[3, 32, 32],
                     input_dtype="float32", num_classes=10, targets_info={"output": head_info("classification", y)},
                     size_bytes=x.nbytes, data=codec.encode(x, {"output": y}), layout=None)
        s.add(ds)
        s.flush()
        return ds.id


def _job(url: str, dataset_id: str) -> str:
    from api.routes.jobs import create_job
    from config.settings import Settings
    from plan.request import JobCreate
    from store.db import session_scope

    with session_scope(url) as s:
        return create_job(s, JobCreate(name="bench", dataset_id=dataset_id, model=SPEC, training=TRAINING),
                          Settings(database_url=url), "local").id


def child(url: str, job_id: str, cache: str) -> None:
    from config.settings import Settings
    from store.db import session_scope
    from store.repositories import jobs
    from worker import lifecycle

    lifecycle._send = lambda *a, **k: None
    t = time.perf_counter()
    outcome = lifecycle.run_job(job_id, Settings(database_url=url, dataset_cache_dir=cache))
    wall = time.perf_counter() - t
    with session_scope(url) as s:
        job = jobs.get(s, job_id=job_id)
        final, plan = job.final_metrics, job.plan
    with open("/proc/self/status") as f:
        hwm = next(int(line.split()[1]) / 1024 for line in f if line.startswith("VmHWM:"))
    print(json.dumps({"outcome": outcome, "wall_s": wall, "epoch_s": final.get("epoch_time_s"),
                      "samples_per_s": plan["train_samples"] / final["epoch_time_s"] if final else None,
                      "peak_rss_mb": hwm}))


def _run(url: str, dataset_id: str, cache: str, label: str, mb: int) -> dict:
    job_id = _job(url, dataset_id)
    proc = subprocess.run([sys.executable, __file__, "--child", url, job_id, cache], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": ROOT}, timeout=3600)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-3000:])
    out = {"case": label, "dataset_mb": mb, **json.loads(proc.stdout.strip().splitlines()[-1])}
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(*sys.argv[2:5])
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1536)
    ap.add_argument("--peer-mb", type=int, default=384)
    ap.add_argument("--postgres", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                         "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--json")
    args = ap.parse_args()
    out = {"machine": machine(), "runs": []}
    with tempfile.TemporaryDirectory() as cache, pg_schema(args.postgres) as url:
        if args.peer_mb:
            inline = _store(url, args.peer_mb, inline=True)
            out["runs"].append(_run(url, inline, cache, "inline (in memory)", args.peer_mb))
            small = _store(url, args.peer_mb, inline=False)
            out["runs"].append(_run(url, small, cache, "sharded, cache filled", args.peer_mb))
            out["runs"].append(_run(url, small, cache, "sharded, cache reused", args.peer_mb))
        big = _store(url, args.mb, inline=False)
        out["runs"].append(_run(url, big, cache, "sharded, cache filled", args.mb))
        out["runs"].append(_run(url, big, cache, "sharded, cache reused", args.mb))
    out["load_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
