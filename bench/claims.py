"""Fleet-scale claims: N worker processes race for M short jobs on PostgreSQL.

A multiprocessing queue stands for the broker: every job's message is in it twice (as a
redelivered or duplicated message would be), so two workers contend for each job. A worker
takes a message and runs the worker's claim transaction (read the job, the owner's cap
under its advisory lock, the compare-and-set claim; a capped job's message goes back). A
claimed job then takes the rest of a short job's database path: a lease renewal, one
reporter flush (progress, 10 metric rows with their pyramid levels, the metric/progress
events) and the finish. A fraction of claims is abandoned (the worker "dies" holding the
lease); reaper processes requeue those once the lease lapses and send their message again,
and another worker resumes them.

Checks, after the run: every (job, attempt) claimed by exactly one worker, attempts 1..k
without gaps, every job succeeded with the finishing attempt's metrics only (no lost jobs,
no double claims). Figures: jobs claimed per second over the run, p50/p99 latency of a
successful claim transaction and of every claim attempt (winning or not).

    python bench/claims.py --url postgresql+psycopg://postgres@127.0.0.1:5432/test --workers 32 --jobs 2000
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402


def _setup(admin_url: str, n_jobs: int, owners: int) -> tuple[str, str, list[str]]:
    from sqlalchemy import create_engine, text, update

    from migrations import upgrade
    from store.db import session_scope
    from store.models import Job, utcnow
    from store.repositories import datasets, jobs

    schema = f"bench_claims_{uuid.uuid4().hex[:8]}"
    with create_engine(admin_url).begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in admin_url else "?"
    url = f"{admin_url}{sep}options=-csearch_path%3D{schema}"
    upgrade(url)
    x = np.zeros((4, 2), np.float32)
    with session_scope(url) as s:
        ds = datasets.create(s, name="tiny", inputs=x, targets=np.zeros(4, np.int64), task="classification").id
        ids = [jobs.create(s, name=f"short-{i}", dataset_id=ds, model_spec={}, training={}, plan={"device_kind": "cpu"},
                           total_steps=10, owner=f"owner-{i % owners}").id for i in range(n_jobs)]
        s.execute(update(Job).values(enqueued_at=utcnow()))  # sent: the reaper re-sends only what it requeues
    return url, schema, ids


def _worker(url: str, broker, seed: int, lease_s: float, abandon: float, max_running: int, out) -> None:
    """Take job ids off ``broker`` (each sent twice, as a redelivered message would be) and run
    each as the worker does: claim (read, owner cap, compare-and-set), lease, flush, finish."""
    import queue

    from sqlalchemy import func, select

    from store.db import session_scope
    from store.models import Job, JobStatus
    from store.repositories import events, jobs, metrics

    rng = random.Random(seed)
    name = f"bench-{seed}:{os.getpid()}"
    won, abandoned, attempt_lat, claim_lat = [], [], [], []
    while True:
        try:
            job_id = broker.get(timeout=0.5)
        except queue.Empty:
            with session_scope(url) as s:
                left = s.scalar(select(func.count()).select_from(Job).where(Job.status != JobStatus.SUCCEEDED))
            if left == 0:
                break
            continue
        t0 = time.perf_counter()
        with session_scope(url) as s:
            job = jobs.get(s, job_id=job_id)
            attempt = None
            if job.status == JobStatus.QUEUED:
                if jobs.owner_at_cap(s, job_id=job_id, max_running=max_running):
                    broker.put(job_id)  # deferred, as the worker re-sends a capped job
                else:
                    attempt = jobs.claim(s, job_id=job_id, worker=name, lease_s=lease_s)
                    if attempt is not None:  # as the worker's claim: a resumed job drops a lost attempt's rows
                        metrics.delete_after(s, job_id=job_id, step=0)
        dt = time.perf_counter() - t0
        attempt_lat.append(dt)
        if attempt is None:
            continue
        claim_lat.append(dt)
        won.append((job_id, attempt))
        if rng.random() < abandon:  # this "worker" dies holding the lease: the reaper requeues it
            abandoned.append((job_id, attempt))
            continue
        with session_scope(url) as s:
            jobs.heartbeat(s, job_id=job_id, attempt=attempt, lease_s=lease_s)
        rows = [{"kind": "step", "name": "loss", "epoch": 1, "step": k, "value": 1.0 / k} for k in range(1, 11)]
        with session_scope(url) as s:
            if jobs.set_progress(s, job_id=job_id, attempt=attempt, epoch=1, step=10):
                metrics.add_many(s, job_id=job_id, rows=rows)
                events.record(s, job_id=job_id, attempt=attempt,
                              events=[(events.METRIC, {"rows": rows}), (events.PROGRESS, {"step": 10})])
        with session_scope(url) as s:
            jobs.finish(s, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics={"loss": 0.1})
    out.put({"name": name, "won": won, "abandoned": abandoned, "attempt_lat": attempt_lat, "claim_lat": claim_lat})


def _reaper(url: str, interval: float, broker, stop) -> None:
    """The reaper's pass: lapsed leases back to queued, and their messages sent again."""
    from store.db import session_scope
    from store.repositories import jobs

    while not stop.wait(interval):
        with session_scope(url) as s:
            due, _ = jobs.reap(s, requeue_after_s=3600)
        for job_id in due:
            broker.put(job_id)


def run(admin_url: str, workers: int, n_jobs: int, *, owners: int = 4, lease_s: float = 2.0, abandon: float = 0.05,
        reapers: int = 2, reaper_interval_s: float = 0.5, max_running: int = 16, timeout_s: float = 600) -> dict:
    """Race ``workers`` processes for ``n_jobs`` jobs; returns the figures and what each process won."""
    from sqlalchemy import create_engine, text

    url, schema, ids = _setup(admin_url, n_jobs, owners)
    ctx = mp.get_context("spawn")
    out, stop, broker = ctx.Queue(), ctx.Event(), ctx.Queue()
    for job_id in ids + ids:  # every message delivered twice: the claims contend
        broker.put(job_id)
    procs = [ctx.Process(target=_worker, args=(url, broker, seed, lease_s, abandon, max_running, out))
             for seed in range(workers)]
    reaps = [ctx.Process(target=_reaper, args=(url, reaper_interval_s, broker, stop)) for _ in range(reapers)]
    try:
        t0 = time.perf_counter()
        for p in procs + reaps:
            p.start()
        results = [out.get(timeout=timeout_s) for _ in procs]
        wall = time.perf_counter() - t0
        stop.set()
        for p in procs + reaps:
            p.join(30)
        rows = _final_state(url, ids)
    finally:
        stop.set()
        for p in procs + reaps:
            if p.is_alive():
                p.kill()
        with create_engine(admin_url).begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    claims = [w for r in results for w in r["won"]]
    lat = np.array([x for r in results for x in r["claim_lat"]]) * 1000
    att = np.array([x for r in results for x in r["attempt_lat"]]) * 1000
    return {"workers": workers, "jobs": n_jobs, "wall_s": wall, "claims": len(claims),
            "claims_per_s": len(claims) / wall, "claim_ms_p50": float(np.percentile(lat, 50)),
            "claim_ms_p99": float(np.percentile(lat, 99)), "attempt_ms_p50": float(np.percentile(att, 50)),
            "attempt_ms_p99": float(np.percentile(att, 99)), "attempts": int(att.size),
            "abandoned": sum(len(r["abandoned"]) for r in results), "results": results, "final": rows}


def _final_state(url: str, ids: list[str]) -> dict[str, dict]:
    from sqlalchemy import func, select

    from store.db import session_scope
    from store.models import Job, Metric

    with session_scope(url) as s:
        counts = dict(s.execute(select(Metric.job_id, func.count()).group_by(Metric.job_id)).all())
        return {j.id: {"status": j.status, "attempt": j.attempt, "worker": j.worker, "metrics": counts.get(j.id, 0)}
                for j in s.scalars(select(Job).where(Job.id.in_(ids)))}


def check(report: dict) -> list[str]:
    """What went wrong: double claims, gaps in attempts, lost or unfinished jobs."""
    problems = []
    by_job: dict[str, list[tuple[int, str]]] = {}
    for r in report["results"]:
        for job_id, attempt in r["won"]:
            by_job.setdefault(job_id, []).append((attempt, r["name"]))
    for job_id, state in report["final"].items():
        won = sorted(by_job.get(job_id, []))
        attempts = [a for a, _ in won]
        if attempts != list(range(1, len(attempts) + 1)):
            problems.append(f"job {job_id}: attempts claimed {attempts} (a double claim or a gap)")
        if state["status"] != "succeeded":
            problems.append(f"job {job_id} is {state['status']}")
        elif not won or state["attempt"] != attempts[-1] or state["worker"] != won[-1][1]:
            problems.append(f"job {job_id}: finished by {state['worker']} attempt {state['attempt']}, claims {won}")
        if state["metrics"] != 10:
            problems.append(f"job {job_id} has {state['metrics']} metric rows")
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--workers", type=int, default=32)
    ap.add_argument("--jobs", type=int, default=2000)
    ap.add_argument("--abandon", type=float, default=0.05)
    ap.add_argument("--lease-s", type=float, default=2.0)
    a = ap.parse_args()
    report = run(a.url, a.workers, a.jobs, abandon=a.abandon, lease_s=a.lease_s, timeout_s=1500)
    problems = check(report)
    summary = {k: v for k, v in report.items() if k not in ("results", "final")}
    summary.update(load=os.getloadavg(), cpus=os.cpu_count(), problems=len(problems))
    print(json.dumps(summary, indent=1))
    for p in problems[:20]:
        print("PROBLEM:", p)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
