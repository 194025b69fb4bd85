"""Live runs: step-to-browser latency of a metric.

A real API process (uvicorn, ``trainyard.commands.api_command``) over the database and the
machine's Redis; in this process a ``worker.reporting.Reporter`` for a claimed job, with
``store.live`` publishing after every commit, exactly as a worker does; an SSE client in a
separate process subscribed to ``GET /v1/jobs/{id}/events``. The producer calls
``reporter.step(...)`` at a steady rate (``--rate`` steps/s for ``--seconds``; the loss
value is the step number) and notes ``time.time()`` at each call; the client notes
``time.time()`` when each ``metric`` event arrives (same machine, same clock). Reported:
p50/p95/p99/max of (receive - step call) per step row, for SQLite and PostgreSQL, plus the
same measured on a raw Redis subscriber beside the SSE client (what the database write and
publish take, before the API's share). Goal: a step's metric reaches the stream within 1 s.

    .venv/bin/python bench/live_latency.py [--quick] [--databases sqlite,postgresql] [--json out.json]

Servers: ``--postgres-url`` (default ``$TRAINYARD_TEST_POSTGRES_URL`` or
postgresql+psycopg://postgres@127.0.0.1:5432/test; the run works in a schema of its own,
dropped at the end) and ``--redis-url`` (default ``$TRAINYARD_TEST_REDIS_URL`` or
redis://127.0.0.1:6379/0; only the job's own channel is used).

This module also holds the helpers ``live_overhead.py`` and ``sse_fanout.py`` share
(machine facts, a throw-away schema, an API process, a claimed job).
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

DEFAULT_POSTGRES = os.environ.get("TRAINYARD_TEST_POSTGRES_URL") or "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_REDIS = os.environ.get("TRAINYARD_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


# -- shared helpers ------------------------------------------------------------------------------

def on_sigterm_exit() -> None:
    """SIGTERM unwinds like Ctrl-C, so ``finally`` blocks stop children and drop schemas."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def postgres_version(base_url: str | None) -> str:
    if not base_url:
        return "not used"
    try:
        from sqlalchemy import create_engine, text

        engine = create_engine(base_url)
        try:
            with engine.connect() as conn:
                return conn.execute(text("SHOW server_version")).scalar()
        finally:
            engine.dispose()
    except Exception as exc:  # noqa: BLE001 - reported, the PostgreSQL variants are skipped
        return f"unreachable ({type(exc).__name__})"


def machine(base_pg_url: str | None) -> dict:
    import numpy as np

    return {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "postgresql": postgres_version(base_pg_url),
            "load_before": list(os.getloadavg())}


def print_machine(info: dict) -> None:
    info.setdefault("load_after", list(os.getloadavg()))
    la = " / ".join(f"{a:.2f} {b:.2f} {c:.2f}" for a, b, c in (info["load_before"], info["load_after"]))
    print(f"machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}, numpy {info['numpy']}, "
          f"PostgreSQL {info['postgresql']}; load average (1/5/15 min) before / after: {la}")


def table(headers: list[str], rows: list[list]) -> None:
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for r in cells:
        print("| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |")


def percentile(values, q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q)) if len(values) else float("nan")


def postgres_available(base_url: str) -> bool:
    return not postgres_version(base_url).startswith("unreachable")


@contextlib.contextmanager
def database(kind: str, tmp: Path, base_pg_url: str) -> Iterator[str]:
    """A migrated, empty database: a SQLite file in ``tmp`` or a fresh PostgreSQL schema,
    dropped afterwards (also after a failure)."""
    from sqlalchemy import create_engine, text

    from migrations import upgrade
    from store.db import get_engine

    if kind == "sqlite":
        url = f"sqlite:///{tmp / f'bench-{uuid.uuid4().hex[:8]}.db'}"
        try:
            upgrade(url)
            yield url
        finally:
            get_engine(url).dispose()
        return
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base_pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in base_pg_url else "?"
    url = f"{base_pg_url}{sep}options=-csearch_path%3D{schema}"
    try:
        upgrade(url)
        yield url
    finally:
        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def check_redis(url: str) -> None:
    import redis

    redis.Redis.from_url(url, socket_timeout=2).ping()


def numsub(client, channel: str) -> int:
    return int(client.pubsub_numsub(channel)[0][1])


def wait_until(predicate, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


@contextlib.contextmanager
def api_process(database_url: str, redis_url: str, data_dir: Path) -> Iterator[tuple[int, str]]:
    """One uvicorn API process over ``database_url`` and ``redis_url``; yields (pid, base URL)."""
    import httpx

    from trainyard.commands import api_command
    from trainyard.processes import Child, free_port, wait_for_port

    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url,
           "TRAINYARD_DATA_DIR": str(data_dir), "TRAINYARD_QUEUE": f"bench-{uuid.uuid4().hex[:8]}",
           "PYTHONPATH": os.pathsep.join(p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)}
    env.pop("TRAINYARD_API_KEYS", None)
    log_path = data_dir / f"api-{port}.log"
    out = open(log_path, "ab")
    child = Child("api", api_command("127.0.0.1", port, log_level="warning"), env, stop_timeout=10)
    try:
        child.start(out)
        wait_for_port("127.0.0.1", port, 60, child.proc)
        base = f"http://127.0.0.1:{port}"
        if not wait_until(lambda: _healthy(httpx, base), 30, 0.2):
            raise RuntimeError(f"the API at {base} did not become healthy")
        yield child.proc.pid, base
    except Exception:
        out.flush()
        sys.stderr.write(f"--- API log ({log_path}) ---\n{log_path.read_text(errors='replace')[-4000:]}\n")
        raise
    finally:
        child.stop()
        out.close()


def _healthy(httpx, base: str) -> bool:
    try:
        return httpx.get(f"{base}/v1/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def running_job(url: str, *, inputs=None, targets=None, model: dict | None = None,
                training: dict | None = None) -> tuple[str, int]:
    """A dataset and a job planned as POST /v1/jobs plans it, claimed as a worker claims it;
    returns (job id, attempt)."""
    import numpy as np

    from api.routes.jobs import create_job
    from config.settings import Settings
    from plan.request import JobCreate
    from store.db import session_scope
    from store.repositories import datasets, jobs

    if inputs is None:
        rng = np.random.default_rng(0)
        inputs = rng.normal(size=(64, 4)).astype(np.float32)
        targets = (inputs[:, 0] > 0).astype(np.int64)
    model = model or {"layers": [{"type": "Linear", "in_features": inputs.shape[1], "out_features": 2}]}
    training = training or {"epochs": 1, "batch_size": 8, "optimizer": {"type": "SGD", "lr": 0.1}}
    with session_scope(url) as s:
        ds = datasets.create(s, name="bench", inputs=inputs, targets=targets, task="classification").id
    with session_scope(url) as s:
        job = create_job(s, JobCreate(name="bench", dataset_id=ds, model=model, training=training),
                         Settings(database_url=url), "local")
        s.flush()
        job_id = job.id
    with session_scope(url) as s:
        attempt = jobs.claim(s, job_id=job_id, worker=f"bench:{os.getpid()}", lease_s=3600)
    assert attempt is not None
    return job_id, attempt


def finish_job(url: str, job_id: str, attempt: int) -> None:
    from store.db import session_scope
    from store.models import JobStatus
    from store.repositories import jobs

    with session_scope(url) as s:
        jobs.finish(s, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics={})


class Pacer:
    """Calls ``reporter.step`` at a steady rate in a thread; ``calls[step]`` = time.time()."""

    def __init__(self, reporter, rate: float, seconds: float, rows_per_step: int = 1):
        self.reporter, self.rate, self.n = reporter, rate, int(rate * seconds)
        self.rows_per_step = rows_per_step
        self.calls: dict[int, float] = {}
        self.late = 0  # steps that were due more than one period ago when called
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="pacer", daemon=True)

    def start(self) -> Pacer:
        self.thread.start()
        return self

    def _run(self) -> None:
        start = time.perf_counter()
        period = 1.0 / self.rate
        for step in range(1, self.n + 1):
            due = start + (step - 1) * period
            now = time.perf_counter()
            if due > now:
                time.sleep(due - now)
            elif now - due > period:
                self.late += 1
            if self.stop.is_set():
                return
            values = {"loss": float(step)}
            values.update({f"extra_{i}": float(i) for i in range(self.rows_per_step - 1)})
            self.calls[step] = time.time()
            self.reporter.step(1, step, values, samples=32)

    def join(self) -> None:
        self.thread.join()


# -- the subscriber process ----------------------------------------------------------------------

def subscriber_main(base: str, job_id: str, redis_url: str, out: str) -> None:
    """Follow the job's stream until ``end``; note when each step's loss row arrived, on the
    SSE stream and on a raw Redis subscription of the job's channel."""
    import httpx
    import redis
    from httpx_sse import connect_sse

    from store import live

    sse: dict[int, float] = {}
    raw: dict[int, float] = {}
    kinds: dict[str, int] = {}
    pubsub = redis.Redis.from_url(redis_url).pubsub()
    pubsub.subscribe(live.channel(job_id))
    done = threading.Event()

    def watch_redis() -> None:
        while not done.is_set():
            m = pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if m is None:
                continue
            t = time.time()
            for e in json.loads(m["data"]):
                if e["kind"] == "metric":
                    for r in e["data"]["rows"]:
                        if r["name"] == "loss":
                            raw.setdefault(r["step"], t)

    watcher = threading.Thread(target=watch_redis, daemon=True)
    watcher.start()
    with httpx.Client(base_url=base, timeout=httpx.Timeout(10, read=120)) as client:
        with connect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
            for e in source.iter_sse():
                t = time.time()
                kinds[e.event] = kinds.get(e.event, 0) + 1
                if e.event == "metric":
                    for r in json.loads(e.data)["rows"]:
                        if r["name"] == "loss":
                            assert r["value"] == float(r["step"]), r
                            sse.setdefault(r["step"], t)
                elif e.event == "end":
                    break
    done.set()
    watcher.join(2)
    pubsub.close()
    Path(out).write_text(json.dumps({"sse": sse, "redis": raw, "kinds": kinds}))


# -- the benchmark -------------------------------------------------------------------------------

def run_one(kind: str, args, tmp: Path) -> dict:
    import redis

    from store import live
    from worker.reporting import Reporter

    with database(kind, tmp, args.postgres_url) as url, api_process(url, args.redis_url, tmp) as (_, base):
        job_id, attempt = running_job(url)
        live.install(args.redis_url)
        out = tmp / f"sub-{kind}.json"
        broker = redis.Redis.from_url(args.redis_url)
        channel = live.channel(job_id)
        sub = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--subscriber", base, job_id,
                                args.redis_url, str(out)], start_new_session=True)
        reporter = None
        try:
            # the API's stream and the raw subscriber are both on the channel before step 1
            if not wait_until(lambda: numsub(broker, channel) >= 2 or sub.poll() is not None, 60):
                raise RuntimeError("the subscribers did not subscribe within 60 s")
            if sub.poll() is not None:
                raise RuntimeError(f"the subscriber exited with {sub.returncode}")
            n = int(args.rate * args.seconds)
            reporter = Reporter(url, job_id, attempt, total_steps=n, epochs=1)  # the worker's flush_s = 0.5
            pacer = Pacer(reporter, args.rate, args.seconds).start()
            pacer.join()
            reporter.close()
            reporter = None
            finish_job(url, job_id, attempt)  # status succeeded -> the stream ends
            sub.wait(120)
        finally:
            if reporter is not None:
                reporter.close()
            if sub.poll() is None:
                os.killpg(sub.pid, signal.SIGKILL)
                sub.wait()
            live.install(None)
            broker.close()
        if sub.returncode != 0:
            raise RuntimeError(f"the subscriber exited with {sub.returncode}")
        got = json.loads(out.read_text())
    result = {"database": kind, "steps": n, "late_calls": pacer.late, "events": got["kinds"]}
    for side in ("sse", "redis"):
        received = {int(k): v for k, v in got[side].items()}
        lat = [received[s] - pacer.calls[s] for s in pacer.calls if s in received]
        result[side] = {"received": len(lat), "missing": n - len(lat),
                        **{f"p{q}": percentile(lat, q) for q in (50, 95, 99)},
                        "max": max(lat) if lat else float("nan"), "min": min(lat) if lat else float("nan")}
    return result


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="5 s per database (the whole run well under a minute)")
    p.add_argument("--rate", type=float, default=200.0, help="steps per second")
    p.add_argument("--seconds", type=float, default=20.0, help="how long the producer steps")
    p.add_argument("--databases", default="sqlite,postgresql")
    p.add_argument("--postgres-url", default=DEFAULT_POSTGRES)
    p.add_argument("--redis-url", default=DEFAULT_REDIS)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--subscriber", nargs=4, metavar=("BASE", "JOB", "REDIS", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.subscriber:
        subscriber_main(*args.subscriber)
        return
    on_sigterm_exit()
    if args.quick:
        args.seconds = 5.0
    kinds = [k.strip() for k in args.databases.split(",") if k.strip()]
    if "postgresql" in kinds and not postgres_available(args.postgres_url):
        print(f"PostgreSQL at {args.postgres_url} is not reachable: its row is skipped")
        kinds.remove("postgresql")
    check_redis(args.redis_url)
    info = machine(args.postgres_url if "postgresql" in kinds else None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-latency-"))
    results = []
    try:
        for kind in kinds:
            results.append(run_one(kind, args, tmp))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = list(os.getloadavg())
    print(f"\nstep-to-browser latency: {args.rate:g} steps/s for {args.seconds:g} s, Reporter flush_s 0.5 "
          "(the worker's default); ms from reporter.step() to the SSE client receiving the row\n")
    rows = []
    for r in results:
        for side, label in (("sse", "SSE client (browser)"), ("redis", "raw Redis subscriber")):
            s = r[side]
            rows.append([r["database"], label, f"{s['received']}/{r['steps']}", f"{s['p50'] * 1e3:.0f}",
                         f"{s['p95'] * 1e3:.0f}", f"{s['p99'] * 1e3:.0f}", f"{s['max'] * 1e3:.0f}",
                         "yes" if s["missing"] == 0 and s["max"] < 1.0 else "NO"])
    table(["database", "receiver", "rows", "p50 ms", "p95 ms", "p99 ms", "max ms", "all < 1 s"], rows)
    for r in results:
        if r["late_calls"]:
            print(f"note: {r['database']}: {r['late_calls']} step calls were more than one period late "
                  "(the producer itself was starved of CPU)")
    print()
    print_machine(info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "results": results,
                                               "rate": args.rate, "seconds": args.seconds}, indent=2))


if __name__ == "__main__":
    main()
