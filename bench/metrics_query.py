"""Metric history queries: GET /v1/jobs/{id}/metrics over a million-step series on PostgreSQL.

In a fresh schema of the database at ``--url`` (dropped at the end): one job whose ``loss``
series has ``--steps`` rows (a noisy decaying curve; ``--series`` > 1 adds more step-kind
series beside it, interleaved in the heap as the worker writes them), bulk-loaded with COPY
together with their pyramid levels (store.repositories.metrics.levels). Then, through the
real app (FastAPI TestClient), ``--repeat`` timed requests each of:

- ``max_points=2000`` (the whole history downsampled) and ``names=loss&max_points=2000``;
- ``after_step`` polls: the last 50 steps, raw and with ``max_points=2000``, and the
  last 100,000 steps with ``max_points=2000``;
- ``store.repositories.metrics.series`` alone for the downsampled read (no HTTP, no JSON);

and, for contrast, the scan a bucket-GROUP-BY design needs (min/max per bucket over every
row, in SQL) and the whole 1M-row history without ``max_points`` (3 runs). Also: the cost of
appending rows through ``add_many`` (which keeps the levels) vs a plain insert, EXPLAIN
(ANALYZE, BUFFERS) of every statement one downsampled request runs, and the machine.

    python bench/metrics_query.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--steps 1000000] [--series 1] [--repeat 30] [--json out.json]
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import time
import uuid

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _pct(ts: list[float], q: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(q * (len(ts) - 1)))]


def _summary(timed: tuple[list[float], list[float]]) -> dict:
    ts, cpu = timed
    return {"p50_ms": round(statistics.median(ts) * 1e3, 2), "p99_ms": round(_pct(ts, 0.99) * 1e3, 2),
            "min_ms": round(min(ts) * 1e3, 2), "max_ms": round(max(ts) * 1e3, 2), "runs": len(ts),
            "cpu_p50_ms": round(statistics.median(cpu) * 1e3, 2), "cpu_p99_ms": round(_pct(cpu, 0.99) * 1e3, 2)}


def _timed(fn, repeat: int, warmup: int = 3) -> tuple[list[float], list[float]]:
    """Wall times and this process's CPU times (client, app and driver; not PostgreSQL's)."""
    for _ in range(warmup):
        fn()
    ts, cpu = [], []
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        ts.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    return ts, cpu


def machine(conn) -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
            "postgresql": conn.exec_driver_sql("SELECT version()").scalar()}


def load(engine, job_id: str, steps: int, names: list[str]) -> float:
    """COPY the rows (with their levels) in; returns seconds."""
    from store.repositories.metrics import levels

    g = np.random.default_rng(0)
    s = np.arange(1, steps + 1, dtype=np.int64)
    epoch = (s - 1) // 1000 + 1
    series = {}
    for i, name in enumerate(names):
        v = (2.0 / (1 + s / 20_000) if name == "loss" else np.full(steps, 0.001 * (i + 1))) + g.normal(0, 0.05, steps)
        series[name] = (v, levels(s, v))
    t0 = time.perf_counter()
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            with cur.copy("COPY metrics (job_id, kind, name, epoch, step, value, level) FROM STDIN") as cp:
                chunk = 50_000
                for a in range(0, steps, chunk):  # step-major, as the worker writes: series interleave
                    buf = io.StringIO()
                    sl = slice(a, a + chunk)
                    cols = [(name, v[sl].tolist(), lv[sl].tolist()) for name, (v, lv) in series.items()]
                    for k, (st, ep) in enumerate(zip(s[sl].tolist(), epoch[sl].tolist())):
                        for name, v, lv in cols:
                            buf.write(f"{job_id}\tstep\t{name}\t{ep}\t{st}\t{v[k]!r}\t{lv[k]}\n")
                    cp.write(buf.getvalue())
        raw.commit()
    finally:
        raw.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--series", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, event, text

    from api.main import create_app
    from config.settings import Settings, get_settings
    from migrations import upgrade
    from store.db import get_engine, session_scope
    from store.repositories import metrics

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.url else "?"
    url = f"{args.url}{sep}options=-csearch_path%3D{schema}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    out: dict = {"steps": args.steps, "series": args.series, "repeat": args.repeat}
    try:
        upgrade(url)
        settings = Settings(database_url=url, redis_url=args.redis, queue=queue)
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: settings
        engine = get_engine(url)
        with engine.connect() as conn:
            out["machine"] = machine(conn)
        print(json.dumps(out["machine"]))
        with TestClient(app) as client:
            ds = client.post("/v1/datasets", json={"name": "d", "inputs": [[0, 1], [1, 0]], "targets": [0, 1]}).json()
            r = client.post("/v1/jobs", json={
                "name": "bench", "dataset_id": ds["id"],
                "model": {"layers": [{"type": "Linear", "in_features": 2, "out_features": 2}]},
                "training": {"epochs": 1, "batch_size": 2, "optimizer": {"type": "SGD", "lr": 0.1}}})
            assert r.status_code == 202, r.text
            job_id = r.json()["id"]
            names = ["loss", "lr", "samples_per_s", "digit_loss", "parity_loss"][:max(1, args.series)]
            out["load_s"] = round(load(engine, job_id, args.steps, names), 1)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE metrics")
            print(f"loaded {args.steps} steps x {len(names)} series in {out['load_s']} s")

            def get(**params):
                r = client.get(f"/v1/jobs/{job_id}/metrics", params=params)
                assert r.status_code == 200, r.text
                return r.json()

            m = get(max_points=2000)
            assert len(m["series"]["loss"]["step"]) <= 2000 and m["last_step"] == args.steps
            out["points_returned"] = len(m["series"]["loss"]["step"])
            n = args.steps
            cases = {
                "GET max_points=2000": {"max_points": 2000},
                "GET names=loss&max_points=2000": {"names": "loss", "max_points": 2000},
                "GET after_step=N-50 (raw)": {"after_step": n - 50},
                "GET after_step=N-50&max_points=2000": {"after_step": n - 50, "max_points": 2000},
                "GET after_step=N-100000&max_points=2000": {"after_step": n - 100_000, "max_points": 2000},
            }
            timings = {}
            for label, params in cases.items():
                timings[label] = _summary(_timed(lambda p=params: get(**p), args.repeat))
                print(label, timings[label])

            def repo():
                with session_scope(url) as s:
                    metrics.series(s, job_id=job_id, kind="step", name="loss", max_points=2000)
            timings["repository series(max_points=2000)"] = _summary(_timed(repo, args.repeat))

            def scan():  # what bucket-by-GROUP-BY downsampling costs: every row, min/max per bucket
                with engine.connect() as conn:
                    conn.execute(text("SELECT (step - 1) / 1000 AS k, count(*), min(ARRAY[value, step, epoch]), "
                                      "max(ARRAY[value, step, epoch]) FROM metrics WHERE job_id = :j AND "
                                      "kind = 'step' AND name = 'loss' GROUP BY k"), {"j": job_id}).all()
            timings["contrast: SQL GROUP BY bucket scan"] = _summary(_timed(scan, max(5, args.repeat // 3), 1))
            timings["contrast: GET whole history, no max_points"] = _summary(_timed(lambda: get(names="loss"), 3, 1))
            for label in list(timings)[-3:]:
                print(label, timings[label])
            out["timings"] = timings

            # appends through add_many (levels kept) vs a plain insert, 200 steps x each series per batch
            def batches(first_step, name_suffix=""):
                for b in range(20):
                    a = first_step + b * 200
                    yield [{"kind": "step", "name": nm + name_suffix, "epoch": 1, "step": st, "value": float(st % 7)}
                           for st in range(a, a + 200) for nm in names]
            from sqlalchemy import insert

            from store.models import Metric

            def write(rows, plain: bool):
                with session_scope(url) as s:
                    if plain:
                        s.execute(insert(Metric), [{"job_id": job_id, **r} for r in rows])
                    else:
                        metrics.add_many(s, job_id=job_id, rows=rows)
            leveled, plain = batches(n + 1), batches(n + 1, "_plain")
            out["append_batch"] = {
                "rows": 200 * len(names),
                "add_many": _summary(_timed(lambda: write(next(leveled), False), 17)),
                "plain_insert": _summary(_timed(lambda: write(next(plain), True), 17)),
            }
            print("append", out["append_batch"])

            # EXPLAIN every statement of one downsampled request
            captured: list[tuple[str, dict]] = []

            def capture(_conn, _cursor, statement, parameters, _context, _many):
                if statement.lstrip().upper().startswith(("SELECT", "WITH")):
                    captured.append((statement, parameters))
            event.listen(engine, "before_cursor_execute", capture)
            get(names="loss", max_points=2000)
            event.remove(engine, "before_cursor_execute", capture)
            plans = []
            with engine.connect() as conn:
                for statement, parameters in captured:
                    plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
                    plans.append({"sql": " ".join(statement.split()), "plan": plan})
            out["explain"] = plans
            for p in plans:
                print("\n" + p["sql"][:300] + ("..." if len(p["sql"]) > 300 else ""))
                print("\n".join(p["plan"]))
            out["machine"]["load_avg_end"] = os.getloadavg()
    finally:
        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
        try:
            import redis
            redis.Redis.from_url(args.redis).delete(queue)
        except Exception:  # noqa: BLE001 - best effort: the queue holds one message
            pass
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
