"""Sweeps: the overhead between one trial finishing and the next one starting on a free worker.

The real service (``trainyard.stack.Stack``: uvicorn and Celery worker processes) over the
machine's PostgreSQL (a schema of its own, dropped at the end) and Redis (a queue name of its
own). Each run creates a grid sweep of ``--trials`` short trials (a 64-512-10 MLP on
scikit-learn's 1,797 digits, 1 epoch at batch size 1: 1,437 steps, ~1 s a trial on one
core), waits until it is finished, and reads every trial's job (``GET /v1/sweeps/{id}``
for the trial job ids, ``GET /v1/jobs/{id}`` for created_at / started_at / finished_at; the
job row's ``enqueued_at``, which the API does not show, from the database).

The gap: the trials launched by a finish (index >= max_concurrent) are launched in index
order, one per finish, so trial ``max_concurrent + j`` pairs with the ``j``-th trial to finish
(for max_concurrent=1: finished_at of trial k vs started_at of trial k+1). Each gap is split
into
  - reaction: finished_at -> next job's created_at (the finishing worker's
    ``worker.sweeps.job_finished`` -> ``store.repositories.sweeps.advance``),
  - send: created_at -> enqueued_at (advance's commit, ``send_task``, the enqueued_at update),
  - claim: enqueued_at -> started_at (broker delivery, the worker taking the next message,
    ``worker.lifecycle._claim``: the job row, the owner cap, the dataset, the claim update).
(With two workers the idle one may claim before ``enqueued_at`` is written: send + claim is
the robust sum.) Each run also reports trial wall time (started -> finished), the API's first
launch (sweep created_at -> first trial started_at) and the sweep's wall time.

Runs (``--runs``, all by default): ``fast1`` 1 worker / max_concurrent 1 and ``fast2`` 2
workers / max_concurrent 2 with a fast reaper (``TRAINYARD_REAPER_INTERVAL_S=0.5``, as the e2e
tests use); ``default1`` 1 worker / max_concurrent 1 with the reaper at its default (5 s): if
the next trial waited for a reaper pass, the gaps there would spread over 0-5 s; ``failing``
the same with trials that fail at their first steps (SGD at lr 1e30: the loss overflows, a
user error), i.e. the path a trial takes when it does not succeed. ``--quick`` (< 60 s): only
``default1``, 6 trials.

    .venv/bin/python bench/sweep_overhead.py [--quick] [--runs fast1,fast2,default1,failing]
        [--trials 12] [--batch-size 1] [--json out.json]

Servers: ``--postgres-url`` (default ``$TRAINYARD_TEST_POSTGRES_URL`` or
postgresql+psycopg://postgres@127.0.0.1:5432/test) and ``--redis-url`` (default
``$TRAINYARD_TEST_REDIS_URL`` or redis://127.0.0.1:6379/0; only this run's queue keys are
touched, and deleted at the end).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_POSTGRES = os.environ.get("TRAINYARD_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = os.environ.get("TRAINYARD_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"

MLP_SPEC = {"layers": [{"type": "Flatten"}, {"type": "Linear", "in_features": 64, "out_features": 512},
                       {"type": "ReLU"}, {"type": "Linear", "in_features": 512, "out_features": 10}]}
TRAINING = {"epochs": 1, "batch_size": 1, "optimizer": {"type": "Adam", "lr": 0.005}, "seed": 7,
            "validation_split": 0.2}


# -- machine and numbers ---------------------------------------------------------------------

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(url: str) -> str:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SHOW server_version")).scalar()
    finally:
        engine.dispose()


def pct(values: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if values else float("nan")


def dist(values: list[float]) -> dict:
    """p50 / p95 / max / min in milliseconds."""
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50": pct(ms, 50), "p95": pct(ms, 95), "max": max(ms, default=float("nan")),
            "min": min(ms, default=float("nan"))}


def ts(value: str | datetime | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value.timestamp()


# -- the service -----------------------------------------------------------------------------

class Schema:
    """A fresh PostgreSQL schema; ``drop`` removes it (idempotent)."""

    def __init__(self, base_url: str):
        from sqlalchemy import create_engine, text

        self.name = f"bench_sweep_{uuid.uuid4().hex[:10]}"
        self.admin = create_engine(base_url)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.name}"'))
        sep = "&" if "?" in base_url else "?"
        self.url = f"{base_url}{sep}options=-csearch_path%3D{self.name}"

    def drop(self) -> None:
        from sqlalchemy import text

        from store.db import get_engine

        if self.admin is None:
            return
        try:
            get_engine(self.url).dispose()
        finally:
            with self.admin.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
            self.admin.dispose()
            self.admin = None


def wait_workers_ready(stack, log_file: Path, n: int, timeout: float = 90) -> None:
    """Celery logs '<hostname> ready.' once a worker consumes; the stack's log has them all."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = log_file.read_text(errors="replace") if log_file.exists() else ""
        if text.count(" ready.") >= n:
            return
        dead = stack.dead_child()
        if dead is not None:
            raise RuntimeError(f"{dead.name} exited while starting:\n{text[-4000:]}")
        time.sleep(0.2)
    raise TimeoutError(f"{n} worker(s) not ready within {timeout}s")


def post_dataset(client, samples: int) -> str:
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.images[:samples] / 16.0).astype(np.float32), d.target[:samples].astype(np.int64)
    r = client.post("/v1/datasets", json={"name": f"digits-{len(x)}", "inputs": x.tolist(), "targets": y.tolist()})
    r.raise_for_status()
    return r.json()["id"]


def run_sweep(client, dataset_id: str, trials: int, max_concurrent: int, training: dict,
              timeout: float) -> tuple[dict, float]:
    body = {"name": f"overhead-{trials}x{max_concurrent}", "method": "grid",
            "metric": {"name": "val_accuracy", "goal": "maximize"},
            "base": {"name": "trial", "dataset_id": dataset_id, "model": MLP_SPEC,
                     "training": {**TRAINING, **training}},
            "parameters": {"training.seed": {"values": list(range(1, trials + 1))}},
            "max_concurrent": max_concurrent}
    t0 = time.time()
    r = client.post("/v1/sweeps", json=body)
    if r.status_code != 201:
        raise RuntimeError(f"POST /v1/sweeps: {r.status_code} {r.text}")
    sweep_id = r.json()["id"]
    deadline = time.monotonic() + timeout
    while True:
        sweep = client.get(f"/v1/sweeps/{sweep_id}").json()
        if sweep["status"] != "running":
            return sweep, time.time() - t0
        if time.monotonic() > deadline:
            raise TimeoutError(f"sweep {sweep_id} still running after {timeout}s: {sweep['progress']}")
        time.sleep(0.25)


def enqueued_at(database_url: str, job_ids: list[str]) -> dict[str, float | None]:
    from sqlalchemy import select

    from store.db import session_scope
    from store.models import Job

    with session_scope(database_url) as s:
        return {i: ts(e) for i, e in s.execute(select(Job.id, Job.enqueued_at).where(Job.id.in_(job_ids)))}


def analyse(sweep: dict, jobs: list[dict], enq: dict[str, float | None], max_concurrent: int) -> dict:
    rows = [{"index": t["index"], "id": j["id"], "status": j["status"], "attempt": j["attempt"],
             "created": ts(j["created_at"]), "enqueued": enq.get(j["id"]), "started": ts(j["started_at"]),
             "finished": ts(j["finished_at"])} for t, j in zip(sweep["trials"], jobs)]
    rows.sort(key=lambda r: r["index"])
    finishes = sorted(r["finished"] for r in rows)
    gap, reaction, send, claim, send_claim, pairs = [], [], [], [], [], []
    for j, nxt in enumerate(rows[max_concurrent:]):
        done = finishes[j]
        gap.append(nxt["started"] - done)
        reaction.append(nxt["created"] - done)
        send_claim.append(nxt["started"] - nxt["created"])
        if nxt["enqueued"] is not None:
            send.append(nxt["enqueued"] - nxt["created"])
            claim.append(nxt["started"] - nxt["enqueued"])
        pairs.append({"next_index": nxt["index"], "gap_ms": round((nxt["started"] - done) * 1000, 1)})
    # how many trials ran at once, from the timestamps
    events = sorted([(r["started"], 1) for r in rows] + [(r["finished"], -1) for r in rows])
    running = most = 0
    for _, d in events:
        running += d
        most = max(most, running)
    sweep_created = ts(sweep["created_at"])
    return {
        "trials": len(rows), "statuses": sorted({r["status"] for r in rows}),
        "attempts": sorted({r["attempt"] for r in rows}), "most_running": most,
        "gap": dist(gap), "reaction": dist(reaction), "send": dist(send), "claim": dist(claim),
        "send_claim": dist(send_claim), "trial": dist([r["finished"] - r["started"] for r in rows]),
        "first_start_ms": (min(r["started"] for r in rows) - sweep_created) * 1000,
        "sweep_wall_s": ts(sweep["finished_at"]) - sweep_created if sweep.get("finished_at") else None,
        "negative_gaps": sum(1 for g in gap if g < 0), "pairs": pairs,
    }


def one_run(args, schema_url: str, *, workers: int, max_concurrent: int, reaper_s: float | None,
            trials: int, label: str, fail: bool = False) -> dict:
    import httpx

    from trainyard.processes import free_port
    from trainyard.stack import Stack

    queue = f"bench-sweep-{uuid.uuid4().hex[:8]}"
    data_dir = Path(tempfile.mkdtemp(prefix="sweep-overhead-"))
    log_file = data_dir / "stack.log"
    env = {"DATABASE_URL": schema_url, "REDIS_URL": args.redis_url, "TRAINYARD_QUEUE": queue,
           "TRAINYARD_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    if reaper_s is not None:
        env["TRAINYARD_REAPER_INTERVAL_S"] = str(reaper_s)
    stack = Stack(port=free_port(), data_dir=data_dir, env=env, log_file=log_file, workers=workers)
    if reaper_s is None:  # the setting's default, whatever the caller's environment says
        stack.env.pop("TRAINYARD_REAPER_INTERVAL_S", None)
    stack.env.pop("TRAINYARD_API_KEYS", None)
    t0 = time.monotonic()
    try:
        stack.start()
        wait_workers_ready(stack, log_file, workers)
        startup = time.monotonic() - t0
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            dataset_id = post_dataset(client, args.samples)
            training = {"batch_size": args.batch_size}
            if fail:  # the loss overflows in the first steps: every trial fails (a user error)
                training["optimizer"] = {"type": "SGD", "lr": 1e30}
            sweep, wall = run_sweep(client, dataset_id, trials, max_concurrent, training, args.timeout)
            jobs = [client.get(f"/v1/jobs/{t['job_id']}").json() for t in sweep["trials"]]
        if sweep["status"] != "finished":
            raise RuntimeError(f"sweep ended {sweep['status']}: {sweep['progress']}")
        want = "failed" if fail else "succeeded"
        bad = [(j["id"], j["status"], j["error"]) for j in jobs if j["status"] != want]
        if bad:
            raise RuntimeError(f"trials did not succeed: {bad}")
        result = analyse(sweep, jobs, enqueued_at(schema_url, [j["id"] for j in jobs]), max_concurrent)
        result.update(label=label, workers=workers, max_concurrent=max_concurrent,
                      reaper_interval_s=reaper_s if reaper_s is not None else "default (5)",
                      stack_start_s=round(startup, 1), client_wall_s=round(wall, 2))
        return result
    except BaseException:
        if log_file.exists():
            sys.stderr.write(f"--- stack log ({label}) ---\n{log_file.read_text(errors='replace')[-6000:]}\n")
        raise
    finally:
        stack.stop()
        _drop_queue(args.redis_url, queue)
        shutil.rmtree(data_dir, ignore_errors=True)


def _drop_queue(redis_url: str, queue: str) -> None:
    """Delete this run's own keys (its queue list and kombu's binding sets); nothing else."""
    try:
        import redis

        client = redis.Redis.from_url(redis_url, socket_timeout=2)
        client.delete(queue, f"_kombu.binding.{queue}", f"_kombu.binding_permanent.{queue}")
        client.close()
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        print(f"(could not delete Redis keys of queue {queue}: {exc})", file=sys.stderr)


# -- output ----------------------------------------------------------------------------------

def fmt(d: dict) -> str:
    return f"{d['p50']:.0f} / {d['p95']:.0f} / {d['max']:.0f}" if d["n"] else "-"


def report(results: list[dict]) -> None:
    headers = ["run", "trials", "gap p50/p95/max ms", "reaction", "send", "claim", "send+claim",
               "trial p50 ms", "first start ms", "sweep wall s", "most running"]
    rows = [[r["label"], r["trials"], fmt(r["gap"]), fmt(r["reaction"]), fmt(r["send"]), fmt(r["claim"]),
             fmt(r["send_claim"]), f"{r['trial']['p50']:.0f}", f"{r['first_start_ms']:.0f}",
             f"{r['sweep_wall_s']:.1f}" if r["sweep_wall_s"] is not None else "-", r["most_running"]]
            for r in results]
    widths = [max(len(h), *(len(str(row[i])) for row in rows)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(row, widths)) + " |")
    for r in results:
        notes = []
        if r["negative_gaps"]:
            notes.append(f"{r['negative_gaps']} negative gap(s): a trial started before its slot was freed")
        if r["most_running"] > r["max_concurrent"]:
            notes.append(f"{r['most_running']} trials ran at once (max_concurrent {r['max_concurrent']})")
        if r["attempts"] != [1]:
            notes.append(f"attempts {r['attempts']}")
        print(f"{r['label']}: gaps (ms) {[p['gap_ms'] for p in r['pairs']]}"
              + (f"; WARNING: {'; '.join(notes)}" if notes else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one run (1 worker, default reaper), 6 trials; < 60 s")
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--samples", type=int, default=1797, help="digits samples (1797: all); 80%% train")
    p.add_argument("--batch-size", type=int, default=1, help="with 1797 samples: 1437 steps, ~1 s a trial")
    p.add_argument("--runs", default="fast1,fast2,default1,failing",
                   help="which runs, comma-separated: fast1, fast2, default1, failing (ignored with --quick)")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--timeout", type=float, default=300, help="seconds one sweep may take")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: stop the stack, drop the schema

    import numpy as np

    known = {"fast1": ("1 worker, max_concurrent 1, reaper 0.5 s", 1, 1, 0.5, False),
             "fast2": ("2 workers, max_concurrent 2, reaper 0.5 s", 2, 2, 0.5, False),
             "default1": ("1 worker, max_concurrent 1, reaper default", 1, 1, None, False),
             "failing": ("failing trials, 1 worker, max_concurrent 1, reaper default", 1, 1, None, True)}
    names = ["default1"] if args.quick else [n.strip() for n in args.runs.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown:
        p.error(f"unknown run(s) {unknown}; choose from {list(known)}")
    runs = [known[n] for n in names]
    trials = 6 if args.quick and args.trials == 12 else args.trials
    info = {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "cpu": cpu_model(), "cores": os.cpu_count(),
            "python": platform.python_version(), "numpy": np.__version__,
            "postgresql": postgres_version(args.postgres_url), "load_before": list(os.getloadavg())}
    t0 = time.monotonic()
    results = []
    schema = Schema(args.postgres_url)
    try:
        for label, workers, mc, reaper, fail in runs:
            print(f"... {label}: {trials} trials", flush=True)
            results.append(one_run(args, schema.url, workers=workers, max_concurrent=mc, reaper_s=reaper,
                                   trials=trials, label=label, fail=fail))
    finally:
        schema.drop()
    info["load_after"] = list(os.getloadavg())
    info["total_s"] = round(time.monotonic() - t0, 1)
    la = " / ".join(" ".join(f"{x:.2f}" for x in v) for v in (info["load_before"], info["load_after"]))
    print(f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy {info['numpy']}, "
          f"PostgreSQL {info['postgresql']}; load average (1/5/15 min) before / after: {la}; {info['date']}")
    print("gap = next trial's started_at - the freeing trial's finished_at; reaction = finished -> next "
          "created_at; send = created -> enqueued_at; claim = enqueued -> started_at (all ms, p50 / p95 / max)")
    report(results)
    print(f"total {info['total_s']} s")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
