"""The job list and search (GET /v1/jobs) over 100,000 jobs, and GET /v1/jobs/compare over
three 100,000-step runs, on PostgreSQL.

In a fresh schema of the database at ``--url`` (dropped at the end): ``--jobs`` job rows of
the owner ``local`` (the open API's) and ``--others`` of ten other owners, bulk-loaded with
COPY: a real submitted job's model spec, training config and plan (the learning rate and
seed varied), statuses 70% succeeded / 12% queued / 10% failed / 5% cancelled / 3% running,
names from a few model families plus a counter (a rare word in 0.05%), 0-3 tags each from
60 (a popular one on ~10%, a rare one on ~0.1%), created_at spread over a year (not in id
order), final metrics (val_loss, val_accuracy, train_loss) on the succeeded ones, five
datasets, 10% of jobs in 200 sweeps. Then, through the real app (FastAPI TestClient),
``--repeat`` timed requests of each GET /v1/jobs case the endpoint's query parameters allow
(read from the app's OpenAPI; the cases it cannot take are listed as skipped), with
EXPLAIN (ANALYZE, BUFFERS) of every SELECT one request of each case runs and the indexes
those plans use. Last, three of the jobs get 100,000 steps of loss/lr/samples_per_s and 100
epochs of train_loss/val_loss/val_accuracy (COPY, with their pyramid levels), and
GET /v1/jobs/compare and /v1/jobs/groups over them are timed.

    python bench/jobs_list.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--jobs 100000] [--others 20000] [--steps 100000] [--repeat 30] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

FAMILIES = ["resnet", "mlp", "lstm", "vit", "cnn", "gru", "xor", "digits", "transformer", "logreg"]
STATUSES = (["succeeded"] * 70 + ["queued"] * 12 + ["failed"] * 10 + ["cancelled"] * 5 + ["running"] * 3)
TAGS = [f"tag{i:02d}" for i in range(60)]
POPULAR, RARE = "tag00", "tag59"
RARE_WORD = "needle"


def _pct(ts: list[float], q: float) -> float:
    ts = sorted(ts)
    return ts[min(len(ts) - 1, round(q * (len(ts) - 1)))]


def _summary(ts: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ts) * 1e3, 2), "p99_ms": round(_pct(ts, 0.99) * 1e3, 2),
            "min_ms": round(min(ts) * 1e3, 2), "max_ms": round(max(ts) * 1e3, 2), "runs": len(ts)}


def _timed(fn, repeat: int, warmup: int = 3) -> list[float]:
    for _ in range(warmup):
        fn()
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return ts


def machine(conn) -> dict:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            model = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), model)
    except OSError:
        pass
    show = {k: conn.exec_driver_sql(f"SHOW {k}").scalar() for k in ("shared_buffers", "work_mem", "jit")}
    return {"cpu": model, "cores": os.cpu_count(), "load_avg": os.getloadavg(), "python": platform.python_version(),
            "postgresql": conn.exec_driver_sql("SELECT version()").scalar(), **show}


def _copy(engine, table: str, columns: list[str], rows) -> None:
    raw = engine.raw_connection()
    try:
        with raw.cursor() as cur:
            with cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as cp:
                for row in rows:
                    cp.write_row(row)
        raw.commit()
    finally:
        raw.close()


def load_jobs(engine, template: dict, dataset_ids: list[str], n_mine: int, n_others: int) -> dict:
    """COPY the job and tag rows in; returns what the cases need (ids, a created_at window)."""
    from store.models import Job

    g = np.random.default_rng(0)
    total = n_mine + n_others
    now = datetime.now(UTC).replace(microsecond=0)
    created = [now - timedelta(seconds=int(s)) for s in g.integers(0, 365 * 86400, total)]
    statuses = g.choice(STATUSES, total)
    family = g.choice(FAMILIES, total)
    rare = set(g.choice(total, max(1, total // 2000), replace=False).tolist())
    lrs = g.choice([0.1, 0.03, 0.01, 0.003, 0.001], total)
    sweeps = [uuid.uuid4().hex for _ in range(200)]
    table = Job.__table__
    known = {"id", "owner", "name", "dataset_id", "model_spec", "training", "plan", "status", "attempt",
             "max_restarts", "time_limit_s", "cancel_requested", "epoch", "step", "total_steps", "final_metrics",
             "event_seq", "sweep_id", "created_at", "started_at", "finished_at", "failure_kind", "error"}
    # columns added later with a scalar default get it; nullable ones stay NULL
    extra = {c.name: c.default.arg for c in table.columns
             if c.name not in known and c.default is not None and c.default.is_scalar}
    columns = sorted(known & set(table.columns.keys())) + sorted(extra)
    ids = [uuid.uuid4().hex for _ in range(total)]
    model = json.dumps(template["model"])
    total_steps = template["plan"]["total_steps"]
    tags_rows = []
    out = {"mine": [], "sweep": sweeps[0], "dataset": dataset_ids[0], "created": sorted(created[:n_mine])}

    def rows():
        for i in range(total):
            st = str(statuses[i])
            lr, seed = float(lrs[i]), int(i % 5)
            training = {**template["training"], "seed": seed,
                        "optimizer": {**template["training"]["optimizer"], "lr": lr}}
            plan = {**template["plan"], "training": {**template["plan"]["training"], "seed": seed,
                                                     "optimizer": {**template["plan"]["training"]["optimizer"],
                                                                   "lr": lr}}}
            done = st in ("succeeded", "failed", "cancelled")
            final = ({"train_loss": float(g.random()), "val_loss": float(g.random()),
                      "val_accuracy": float(g.random())} if st == "succeeded" else {})
            name = f"{family[i]}-{RARE_WORD if i in rare else 'run'}-{i}"
            values = {
                "id": ids[i], "owner": "local" if i < n_mine else f"other-{i % 10}", "name": name,
                "dataset_id": dataset_ids[i % len(dataset_ids)], "model_spec": model,
                "training": json.dumps(training), "plan": json.dumps(plan), "status": st,
                "attempt": 0 if st == "queued" else 1, "max_restarts": 3, "time_limit_s": None,
                "cancel_requested": st == "cancelled", "epoch": 0, "step": total_steps if done else 0,
                "total_steps": total_steps, "final_metrics": json.dumps(final), "event_seq": 0,
                "sweep_id": sweeps[i % 200] if i % 10 == 0 else None, "created_at": created[i],
                "started_at": None if st == "queued" else created[i],
                "finished_at": created[i] + timedelta(minutes=5) if done else None,
                "failure_kind": "user" if st == "failed" else None,
                "error": "loss became nan" if st == "failed" else None,
            }
            k = int(g.integers(0, 4))
            chosen = set(g.choice(TAGS[1:-1], k, replace=False).tolist()) if k else set()
            if g.random() < 0.10:
                chosen.add(POPULAR)
            if g.random() < 0.001:
                chosen.add(RARE)
            tags_rows.extend((ids[i], t) for t in sorted(chosen))
            if i < n_mine:
                out["mine"].append((ids[i], st, name))
            yield [values.get(c, extra.get(c)) for c in columns]

    t0 = time.perf_counter()
    _copy(engine, "jobs", columns, rows())
    _copy(engine, "job_tags", ["job_id", "tag"], tags_rows)
    out["load_s"] = round(time.perf_counter() - t0, 1)
    out["tag_rows"] = len(tags_rows)
    return out


def load_curves(engine, job_ids: list[str], steps: int, epochs: int = 100) -> float:
    """100,000 steps of loss, lr and samples_per_s and ``epochs`` epochs of train_loss,
    val_loss and val_accuracy per job, with their pyramid levels; returns seconds."""
    from store.repositories.metrics import levels

    g = np.random.default_rng(1)
    s = np.arange(1, steps + 1, dtype=np.int64)
    per_epoch = max(1, steps // epochs)
    ep = (s - 1) // per_epoch + 1
    t0 = time.perf_counter()

    def rows():
        for j, job_id in enumerate(job_ids):
            step_series = {
                "loss": 2.0 / (1 + s / (5_000 * (j + 1))) + g.normal(0, 0.05, steps),
                "lr": np.full(steps, 0.1 / (j + 1)),
                "samples_per_s": 5_000 + g.normal(0, 200, steps),
            }
            for name, v in step_series.items():
                lv = levels(s, v)
                for a, b, c, d in zip(ep.tolist(), s.tolist(), v.tolist(), lv.tolist()):
                    yield (job_id, "step", name, a, b, c, d)
            e = np.arange(1, epochs + 1)
            es = e * per_epoch
            for name, v in {"train_loss": 1 / e, "val_loss": 1.1 / e + 0.01 * j, "val_accuracy": 1 - 0.5 / e}.items():
                lv = levels(es, v)
                for a, b, c, d in zip(e.tolist(), es.tolist(), v.tolist(), lv.tolist()):
                    yield (job_id, "epoch", name, a, b, c, d)

    _copy(engine, "metrics", ["job_id", "kind", "name", "epoch", "step", "value", "level"], rows())
    return round(time.perf_counter() - t0, 1)


INDEX_RE = re.compile(r"(?:Index Only Scan|Index Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\w+)")


def selects(engine, fn) -> list[tuple[str, dict]]:
    """The SELECT statements (with their parameters) that ``fn()`` runs on ``engine``."""
    from sqlalchemy import event

    captured: list[tuple[str, dict]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))
    event.listen(engine, "before_cursor_execute", capture)
    try:
        fn()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    return captured


def explain(engine, statements: list[tuple[str, dict]]) -> list[dict]:
    plans = []
    with engine.connect() as conn:
        for statement, parameters in statements:
            plan = conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters).scalars().all()
            text = "\n".join(plan)
            execution = re.search(r"Execution Time: ([\d.]+) ms", text)
            plans.append({"sql": " ".join(statement.split()), "plan": plan,
                          "indexes": sorted(set(INDEX_RE.findall(text))),
                          "seq_scans": sorted(set(re.findall(r"Seq Scan on (\w+)", text))),
                          "execution_ms": float(execution.group(1)) if execution else None})
    return plans


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--jobs", type=int, default=100_000)
    ap.add_argument("--others", type=int, default=20_000)
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--json")
    args = ap.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import create_engine, event, select, text

    from api.main import create_app
    from config.settings import Settings, get_settings
    from migrations import upgrade
    from store.db import get_engine

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.url else "?"
    url = f"{args.url}{sep}options=-csearch_path%3D{schema}"
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    out: dict = {"jobs": args.jobs, "others": args.others, "steps": args.steps, "repeat": args.repeat}
    try:
        upgrade(url)
        settings = Settings(database_url=url, redis_url=args.redis, queue=queue)
        app = create_app()
        app.dependency_overrides[get_settings] = lambda: settings
        engine = get_engine(url)
        with engine.connect() as conn:
            out["machine"] = machine(conn)
        print(json.dumps(out["machine"]))
        params = {p["name"] for p in app.openapi()["paths"]["/v1/jobs"]["get"].get("parameters", [])}
        out["list_parameters"] = sorted(params)
        print("GET /v1/jobs takes:", ", ".join(sorted(params)))
        with TestClient(app) as client:
            datasets = [client.post("/v1/datasets", json={"name": f"d{i}", "inputs": [[0, 1], [1, 0]] * 4,
                                                          "targets": [0, 1] * 4}).json()["id"] for i in range(5)]
            r = client.post("/v1/jobs", json={
                "name": "template", "dataset_id": datasets[0],
                "model": {"layers": [{"type": "Linear", "in_features": 2, "out_features": 8}, {"type": "ReLU"},
                                     {"type": "Linear", "in_features": 8, "out_features": 2}]},
                "training": {"epochs": 100, "batch_size": 2, "optimizer": {"type": "Adam", "lr": 0.01}}})
            assert r.status_code == 202, r.text
            client.post(f"/v1/jobs/{r.json()['id']}/cancel")
            with engine.connect() as conn:  # the stored row: its plan holds the resolved training config
                from store.models import Job
                row = conn.execute(select(Job.model_spec, Job.training, Job.plan).where(Job.id == r.json()["id"])).one()
            template = {"model": row.model_spec, "training": row.training, "plan": row.plan}
            loaded = load_jobs(engine, template, datasets, args.jobs, args.others)
            with engine.connect() as conn:
                ac = conn.execution_options(isolation_level="AUTOCOMMIT")
                for t in ("jobs", "job_tags"):
                    ac.exec_driver_sql(f"VACUUM ANALYZE {t}")
                out["table_mb"] = {t: round(ac.exec_driver_sql(f"SELECT pg_total_relation_size('{t}')").scalar()
                                            / 2**20, 1) for t in ("jobs", "job_tags")}
            out["load"] = {"jobs_s": loaded["load_s"], "tag_rows": loaded["tag_rows"]}
            print(f"loaded {args.jobs + args.others} jobs, {loaded['tag_rows']} tags in {loaded['load_s']} s;"
                  f" {out['table_mb']}")

            def get(path: str, **q):
                r = client.get(path, params=q)
                assert r.status_code == 200, (path, q, r.text)
                return r.json()

            def page_after(pages: int, **q) -> str | None:
                cursor = None
                for _ in range(pages):
                    body = get("/v1/jobs", **q, **({"cursor": cursor} if cursor else {}))
                    cursor = body.get("next_cursor")
                    if not cursor:
                        return None
                return cursor

            created = loaded["created"]
            window = {"created_after": created[len(created) // 2].isoformat(),
                      "created_before": (created[len(created) // 2] + timedelta(days=7)).isoformat()}
            cases: dict[str, tuple[set, dict | None]] = {
                "first page, newest first": (set(), {}),
                "page 101 (10,000 in) by cursor": ({"cursor"}, None),
                "status=running (3%)": ({"status"}, {"status": "running"}),
                "status=failed (10%)": ({"status"}, {"status": "failed"}),
                f"tag={POPULAR} (~10%)": ({"tag"}, {"tag": POPULAR}),
                f"tag={RARE} (~0.1%)": ({"tag"}, {"tag": RARE}),
                f"tag={POPULAR}&tag=tag01": ({"tag"}, {"tag": [POPULAR, "tag01"]}),
                "q=vit (~10% of names)": ({"q"}, {"q": "vit"}),
                f"q={RARE_WORD} (0.05%)": ({"q"}, {"q": RARE_WORD}),
                "sort=-metric:val_accuracy": ({"sort"}, {"sort": "-metric:val_accuracy"}),
                "sort=metric:val_loss, page 11 by cursor": ({"sort", "cursor"}, None),
                "status=succeeded&sort=metric:val_loss": ({"status", "sort"},
                                                          {"status": "succeeded", "sort": "metric:val_loss"}),
                "dataset_id (20%)": ({"dataset_id"}, {"dataset_id": loaded["dataset"]}),
                "sweep_id (0.05%)": ({"sweep_id"}, {"sweep_id": loaded["sweep"]}),
                "created_after/before (a 7-day window)": ({"created_after", "created_before"}, window),
                f"status=succeeded&tag={POPULAR}&sort=-metric:val_accuracy": (
                    {"status", "tag", "sort"}, {"status": "succeeded", "tag": POPULAR, "sort": "-metric:val_accuracy"}),
            }
            timings, skipped, plans, counts = {}, {}, {}, {}
            for label, (needs, q) in cases.items():
                if not needs <= params:
                    skipped[label] = f"GET /v1/jobs has no {', '.join(sorted(needs - params))}"
                    continue
                if q is None:  # a page reached by following cursors
                    if label.startswith("page 101"):
                        cursor = page_after(100)
                        q = {"cursor": cursor}
                    else:
                        q = {"sort": "metric:val_loss", "cursor": page_after(10, sort="metric:val_loss")}
                    if not q["cursor"]:
                        skipped[label] = "no next_cursor in the answer"
                        continue
                counts[label] = len(get("/v1/jobs", **q)["items"])
                plans[label] = explain(engine, selects(engine, lambda q=q: get("/v1/jobs", **q)))
                timings[label] = _summary(_timed(lambda q=q: get("/v1/jobs", **q), args.repeat))
                used = "; ".join(f"{p['indexes'] or 'no index'}"
                                 f"{' seq ' + str(p['seq_scans']) if p['seq_scans'] else ''} {p['execution_ms']} ms"
                                 for p in plans[label])
                print(f"{label}: {counts[label]} items {timings[label]} | {used}")
            for label, why in skipped.items():
                print(f"skipped {label}: {why}")
            out.update(list_timings=timings, list_items=counts, list_skipped=skipped, list_explain=plans)

            # contrast: the newest-first page and a cursor page in the order ix_jobs_owner_created
            # holds (created_at is NOT NULL: no NULLS LAST; the cursor as one row comparison)
            mid = get("/v1/jobs", limit=1000)["items"][-1]
            contrast = {
                "SQL: ORDER BY created_at DESC, id DESC LIMIT 101":
                    ("SELECT * FROM jobs WHERE owner = 'local' ORDER BY created_at DESC, id DESC LIMIT 101", {}),
                "SQL: (created_at, id) < cursor, same order":
                    ("SELECT * FROM jobs WHERE owner = 'local' AND (created_at, id) < (%(c)s::timestamptz, %(i)s)"
                     " ORDER BY created_at DESC, id DESC LIMIT 101", {"c": mid["created_at"], "i": mid["id"]}),
            }
            ctrast = {}
            for label, (sql, p) in contrast.items():
                def run(sql=sql, p=p):
                    with engine.connect() as conn:
                        conn.exec_driver_sql(sql, p).all()
                [plan] = explain(engine, [(sql, p)])
                ctrast[label] = {**_summary(_timed(run, args.repeat)), "indexes": plan["indexes"],
                                 "execution_ms": plan["execution_ms"], "plan": plan["plan"]}
                print(label, {k: v for k, v in ctrast[label].items() if k != "plan"})
            out["list_contrast"] = ctrast

            # compare: three of the jobs with 100,000-step curves
            trio = [i for i, st, _ in loaded["mine"] if st == "succeeded"][:3]
            out["curves_load_s"] = load_curves(engine, trio, args.steps)
            with engine.connect() as conn:
                conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE metrics")
            print(f"loaded 3 x {args.steps} steps x 3 series + 3 x 100 epochs x 3 in {out['curves_load_s']} s")
            ids = ",".join(trio)
            ccases = {
                "compare 3 jobs (max_points=500, all 6 metrics)": ("/v1/jobs/compare", {"ids": ids}),
                "compare 3 jobs max_points=2000": ("/v1/jobs/compare", {"ids": ids, "max_points": 2000}),
                "compare 3 jobs names=loss": ("/v1/jobs/compare", {"ids": ids, "names": "loss"}),
                "groups ids=3 by lr metric=loss": ("/v1/jobs/groups", {"ids": ids, "by": "training.optimizer.lr",
                                                                        "metric": "loss"}),
                "groups ids=3 by seed metric=val_loss": ("/v1/jobs/groups", {"ids": ids, "by": "training.seed",
                                                                              "metric": "val_loss"}),
            }
            ctimes, cstatements, cplans = {}, {}, {}
            for label, (path, q) in ccases.items():
                body = get(path, **q)
                if path.endswith("compare"):
                    assert len(body["curves"]["loss"]) == 3
                    print(label, "points per loss curve:", [len(c["step"]) for c in body["curves"]["loss"].values()])
                n = [0]

                def count(*_a, n=n):
                    n[0] += 1
                event.listen(engine, "before_cursor_execute", count)
                get(path, **q)
                event.remove(engine, "before_cursor_execute", count)
                cstatements[label] = n[0]
                cplans[label] = explain(engine, selects(engine, lambda p=path, q=q: get(p, **q)))
                print("  explain:", [(p["indexes"], p["seq_scans"], p["execution_ms"]) for p in cplans[label]])
                ctimes[label] = _summary(_timed(lambda p=path, q=q: get(p, **q), args.repeat))
                print(f"{label}: {n[0]} statements {ctimes[label]}")
            # contrast: what the same curves cost through the metrics endpoint, one job at a time

            def per_job(**q):
                for job_id in trio:
                    get(f"/v1/jobs/{job_id}/metrics", **q)
            for label, q in (("contrast: 3 x GET /metrics?max_points=500", {"max_points": 500}),
                             ("contrast: 3 x GET /metrics?names=loss&max_points=500", {"names": "loss",
                                                                                       "max_points": 500})):
                ctimes[label] = _summary(_timed(lambda q=q: per_job(**q), args.repeat))
                print(f"{label}: {ctimes[label]}")
            out.update(compare_timings=ctimes, compare_statements=cstatements, compare_explain=cplans)
            out["machine"]["load_avg_end"] = os.getloadavg()
            print("load average at the end:", out["machine"]["load_avg_end"])
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
            json.dump(out, f, indent=1, default=str)


if __name__ == "__main__":
    main()
