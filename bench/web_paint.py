"""The dashboard in a real browser (Debian's Chromium, headless) against the real service
(uvicorn over PostgreSQL and Redis, no worker):

1. time to first paint of the runs table (#/) with 10,000 jobs of the owner in the database;
2. time to first paint of a job page whose loss curve has 1,000,000 steps (with lr and
   samples_per_s as long; the page asks /metrics for max_points=2000 and the server
   downsamples);
3. frame times on the runs table and on a job page while 10 running jobs stream events at
   once (each: a metric batch of 20 step rows and a progress event every 200 ms, written
   through the store and published on Redis as a worker's reporter does).

Jobs and curves are bulk-loaded into a fresh schema (dropped at the end) with
bench/jobs_list.py's loaders. Each paint is measured in a fresh browser context (cold: the
modules load from the server each time), from navigation start to the frame after the rows /
the curve were in the DOM (requestAnimationFrame then a task). Frame time: the intervals
between requestAnimationFrame callbacks over ``--stream-s`` seconds.

    python bench/web_paint.py [--url postgresql+psycopg://postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0] [--jobs 10000] [--steps 1000000] [--repeat 5]
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import httpx

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.jobs_list import load_curves, load_jobs, machine  # noqa: E402

CHROMIUM = os.environ.get("TRAINYARD_CHROMIUM", "/usr/bin/chromium")
PAINT_JS = """
(() => {
  window.__paint = null;
  const want = () => window.__want && document.querySelector(window.__want);
  const obs = new MutationObserver(() => {
    if (window.__paint || !want()) return;
    const inDom = performance.now();
    obs.disconnect();
    requestAnimationFrame(() => setTimeout(() => { window.__paint = { inDom, painted: performance.now() }; }, 0));
  });
  document.addEventListener("DOMContentLoaded", () => obs.observe(document.body, { childList: true, subtree: true,
                                                                                  attributes: true }));
})();
"""
# where the time went: the document, the modules, the API answers (ends, from navigation start)
PHASES_JS = r"""() => {
  const nav = performance.getEntriesByType("navigation")[0];
  const res = performance.getEntriesByType("resource");
  const end = (pred) => {
    const r = res.filter(pred);
    return r.length ? Math.max(...r.map((e) => e.responseEnd)) : null;
  };
  return { dom_content_loaded: nav.domContentLoadedEventEnd, modules_loaded: end((e) => e.name.endsWith(".js")),
           modules: res.filter((e) => e.name.endsWith(".js")).length,
           api_jobs: end((e) => /\/v1\/jobs\?/.test(e.name)), api_job: end((e) => /\/v1\/jobs\/[^/?]+$/.test(e.name)),
           api_metrics: end((e) => e.name.includes("/metrics")) };
}"""
FRAMES_JS = """(ms) => new Promise((resolve) => {
  const out = []; let last = null; const end = performance.now() + ms; let longTasks = 0;
  try { new PerformanceObserver((l) => { longTasks += l.getEntries().length; }).observe({ entryTypes: ["longtask"] }); }
  catch (e) {}
  const f = (t) => { if (last !== null) out.push(t - last); last = t;
                     if (t < end) requestAnimationFrame(f); else resolve({ frames: out, longTasks }); };
  requestAnimationFrame(f);
})"""


def _stats(xs: list[float]) -> dict:
    xs = sorted(xs)
    p95 = xs[min(len(xs) - 1, math.ceil(0.95 * len(xs)) - 1)]  # nearest rank
    return {"median_ms": round(statistics.median(xs), 1), "p95_ms": round(p95, 1),
            "max_ms": round(xs[-1], 1), "n": len(xs)}


def _load() -> dict:
    la = os.getloadavg()
    return {"load_avg_1_5_15": [round(x, 2) for x in la], "cores": os.cpu_count()}


def paint(browser, url: str, selector: str, repeat: int) -> dict:
    times, in_dom, phases = [], [], []
    for _ in range(repeat):
        ctx = browser.new_context(viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.add_init_script(f"window.__want = {json.dumps(selector)};" + PAINT_JS)
        page.goto(url)
        page.wait_for_function("window.__paint !== null", timeout=120_000)
        p = page.evaluate("window.__paint")
        phases.append(page.evaluate(PHASES_JS))
        times.append(p["painted"])
        in_dom.append(p["inDom"])
        ctx.close()
    med = {k: round(statistics.median(p[k] for p in phases if p.get(k) is not None), 1)
           for k in phases[0] if all(p.get(k) is not None for p in phases)}
    return {"first_paint": _stats(times), "in_dom": _stats(in_dom), "runs_ms": [round(t, 1) for t in times],
            "phases_median_ms": med}


class Streamer:
    """Writes events for ``job_ids`` through the store every ``period`` s, as a reporter does."""

    def __init__(self, url: str, redis_url: str, job_ids: list[str], period: float = 0.2, rows: int = 20):
        from store import live

        live.install(redis_url)
        self.url, self.job_ids, self.period, self.rows = url, job_ids, period, rows
        self.stop = threading.Event()
        self.step = {j: 0 for j in job_ids}
        self.batches = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        from store.db import session_scope
        from store.repositories import events

        while not self.stop.is_set():
            t0 = time.monotonic()
            with session_scope(self.url) as s:
                for j in self.job_ids:
                    first = self.step[j] + 1
                    rows = []
                    for k in range(first, first + self.rows):
                        rows += [{"kind": "step", "name": "loss", "epoch": 1 + k // 1000, "step": k,
                                  "value": 2.0 / (1 + k / 500)},
                                 {"kind": "step", "name": "lr", "epoch": 1 + k // 1000, "step": k, "value": 0.01},
                                 {"kind": "step", "name": "samples_per_s", "epoch": 1 + k // 1000, "step": k,
                                  "value": 5000.0}]
                    self.step[j] = first + self.rows - 1
                    events.record(s, job_id=j, attempt=1, events=[
                        (events.METRIC, {"rows": rows}),
                        (events.PROGRESS, {"epoch": 1 + self.step[j] // 1000, "epochs": 100, "step": self.step[j],
                                           "total_steps": 100_000, "samples_per_s": 5000.0, "eta_s": 60.0})])
            self.batches += 1
            self.stop.wait(max(0.0, self.period - (time.monotonic() - t0)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=os.environ.get("TRAINYARD_TEST_POSTGRES_URL",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--redis", default=os.environ.get("TRAINYARD_TEST_REDIS_URL", "redis://127.0.0.1:6379/0"))
    ap.add_argument("--jobs", type=int, default=10_000)
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--stream-s", type=float, default=10.0)
    ap.add_argument("--json")
    args = ap.parse_args()
    # COPYing 3 x 1M metric rows takes minutes on a loaded machine: past the default statement timeout
    os.environ.setdefault("TRAINYARD_DB_STATEMENT_TIMEOUT_S", "3600")

    from playwright.sync_api import sync_playwright
    from sqlalchemy import create_engine, select, text, update

    from store.db import get_engine
    from store.models import Job
    from trainyard.processes import free_port
    from trainyard.stack import Stack

    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(args.url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in args.url else "?"
    url = f"{args.url}{sep}options=-csearch_path%3D{schema}"
    data_dir = Path(f"/tmp/{schema}")
    stack = Stack(port=free_port(), data_dir=data_dir, workers=0, log_file=data_dir / "stack.log",
                  env={"DATABASE_URL": url, "REDIS_URL": args.redis, "TRAINYARD_QUEUE": f"bench-{schema}"})
    out: dict = {"jobs": args.jobs, "steps": args.steps, "repeat": args.repeat}
    streamer = None
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        stack.start()
        engine = get_engine(url)
        with engine.connect() as conn:
            out["machine"] = machine(conn)
        api = httpx.Client(base_url=stack.base_url, timeout=120)
        datasets = [api.post("/v1/datasets", json={"name": f"d{i}", "inputs": [[0, 1], [1, 0]] * 4,
                                                   "targets": [0, 1] * 4}).json()["id"] for i in range(5)]
        r = api.post("/v1/jobs", json={
            "name": "template", "dataset_id": datasets[0],
            "model": {"layers": [{"type": "Linear", "in_features": 2, "out_features": 8}, {"type": "ReLU"},
                                 {"type": "Linear", "in_features": 8, "out_features": 2}]},
            "training": {"epochs": 100, "batch_size": 2, "optimizer": {"type": "Adam", "lr": 0.01}}})
        assert r.status_code == 202, r.text
        api.post(f"/v1/jobs/{r.json()['id']}/cancel")
        with engine.connect() as conn:
            row = conn.execute(select(Job.model_spec, Job.training, Job.plan).where(Job.id == r.json()["id"])).one()
        template = {"model": row.model_spec, "training": row.training, "plan": row.plan}
        loaded = load_jobs(engine, template, datasets, args.jobs - 1, 0)
        long_job = loaded["mine"][0][0]
        curve_s = load_curves(engine, [long_job], args.steps)
        with engine.begin() as conn:
            conn.execute(update(Job).where(Job.id == long_job).values(status="succeeded", step=args.steps,
                                                                         total_steps=args.steps))
            ac = conn
            for t in ("jobs", "metrics"):
                ac.exec_driver_sql(f"ANALYZE {t}")
        out["load"] = {"jobs_s": loaded["load_s"], "curve_s": curve_s}
        print(f"loaded {args.jobs} jobs in {loaded['load_s']} s, {args.steps} steps x 3 series in {curve_s} s")

        t0 = time.perf_counter()
        n = len(api.get("/v1/jobs", params={"limit": 50}).json()["items"])
        out["api_jobs_page_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        t0 = time.perf_counter()
        m = api.get(f"/v1/jobs/{long_job}/metrics", params={"max_points": 2000}).json()
        out["api_metrics_2000_ms"] = round((time.perf_counter() - t0) * 1e3, 1)
        out["curve_points_served"] = len(m["series"]["loss"]["step"])
        print(f"API: first page ({n} jobs) {out['api_jobs_page_ms']} ms; /metrics max_points=2000 "
              f"{out['api_metrics_2000_ms']} ms, {out['curve_points_served']} loss points")

        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                         args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            out["load_before_paint"] = _load()
            out["runs_table"] = paint(browser, f"{stack.base_url}/#/", '[data-testid="job-row"]', args.repeat)
            print("runs table:", json.dumps(out["runs_table"]["first_paint"]))
            out["job_page_1m"] = paint(browser, f"{stack.base_url}/#/jobs/{long_job}",
                                       '[data-testid="train-loss-path"]:not([data-drawn="0"])', args.repeat)
            print("job page, 1M steps:", json.dumps(out["job_page_1m"]["first_paint"]))

            # ten running jobs, streaming
            live_ids = [j for j, st, _ in loaded["mine"][1:] if st == "queued"][:10]
            with engine.begin() as conn:
                conn.execute(update(Job).where(Job.id.in_(live_ids)).values(status="running", name="streaming-run",
                                                                             started_at=Job.created_at, step=0))
            streamer = Streamer(url, args.redis, live_ids)
            streamer.thread.start()
            ctx = browser.new_context(viewport={"width": 1280, "height": 800})
            page = ctx.new_page()
            opened: list[str] = []
            page.on("request", lambda req: opened.append(req.url) if "/events" in req.url else None)
            page.goto(f"{stack.base_url}/#/?q=streaming-run")
            page.wait_for_selector('[data-testid="job-row"]')
            page.wait_for_timeout(1500)
            out["load_during_stream"] = _load()
            res = page.evaluate(FRAMES_JS, int(args.stream_s * 1000))
            streams = len(set(opened))
            out["stream_runs_table"] = {**_stats(res["frames"]), "long_tasks": res["longTasks"],
                                        "event_streams_opened": streams}
            print("frames, runs table, 10 streaming:", json.dumps(out["stream_runs_table"]))
            page.goto(f"{stack.base_url}/#/jobs/{live_ids[0]}")
            page.wait_for_selector('[data-testid="train-loss-path"]:not([data-drawn="0"])', state="attached",
                                   timeout=60_000)
            page.wait_for_timeout(1000)
            res = page.evaluate(FRAMES_JS, int(args.stream_s * 1000))
            drawn = page.get_by_test_id("train-loss-path").get_attribute("data-drawn")
            out["stream_job_page"] = {**_stats(res["frames"]), "long_tasks": res["longTasks"], "points_drawn": drawn}
            print("frames, job page of one of 10 streaming:", json.dumps(out["stream_job_page"]))
            out["stream_batches_written"] = streamer.batches
            ctx.close()
            browser.close()
    finally:
        if streamer:
            streamer.stop.set()
            streamer.thread.join(5)
        stack.stop()
        get_engine(url).dispose()
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()
    out["load_after"] = _load()
    print(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
