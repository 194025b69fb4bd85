"""Live runs: what writing metrics and logs costs the training loop.

The worker's ``TrainingLoop`` on scikit-learn digits (tiled so that an epoch lasts seconds,
no validation split, batch 32) with a real ``Reporter`` (the worker's settings: flush every
0.5 s from a background thread, events published to Redis, the job's log routed to it) on
SQLite and on PostgreSQL, against the same loop with ``SilentReporter`` (the bare engine
loop). Two models: an MLP 64-128-10 with Adam, and logistic regression (Linear 64-10, SGD)
whose steps take a fraction of a millisecond, so that per-step costs show most.

Every run is a process of its own (a fresh interpreter, one job created and claimed the way
a worker claims it); the variants alternate over ``--rounds`` rounds (the order rotates).
Steps/s is measured over blocks of at least ``--block-s`` seconds of in-epoch stepping
(the interval between two consecutive ``reporter.step`` calls of the same epoch; the
end-of-epoch checkpoint in between is left out, as are the first ``--warmup-s`` seconds).
Overhead % = (bare - reporting) / bare of the medians; the issue's goal is under 2 %. Beside
it, CPU time per step of the loop's thread (``time.thread_time``) and of the whole process
(the writer thread included): on a shared machine these swing far less than wall time.

Then, over ``--locked-rounds`` rounds, the database made unavailable for the whole
measurement: SQLite locked by another connection (``BEGIN EXCLUSIVE``), and the job row held
``FOR UPDATE`` by another PostgreSQL transaction; steps/s must stay that of the bare loop (the
loop never waits for the database). The lock is let go at the end of the first epoch (whose
checkpoint is, by design, written synchronously); the rows written while it was held (none)
and the loss rows there afterwards (one per step: nothing lost) are counted.

    .venv/bin/python bench/live_overhead.py [--quick] [--rounds 4] [--block-s 5] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import live_latency as shared  # noqa: E402  (the helpers the live benchmarks share)

MODELS = {
    "mlp": ({"layers": [{"type": "Linear", "in_features": 64, "out_features": 128}, {"type": "ReLU"},
                        {"type": "Linear", "in_features": 128, "out_features": 10}]},
            {"type": "Adam", "lr": 0.001}),
    "logreg": ({"layers": [{"type": "Linear", "in_features": 64, "out_features": 10}]},
               {"type": "SGD", "lr": 0.01}),
}
VARIANTS = ["bare", "sqlite", "postgresql"]
LOCKED = ["sqlite-locked", "postgresql-locked"]


def digits(tile: int):
    import numpy as np
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    return np.tile(x, (tile, 1)), np.tile(y, tile)


# -- one measured run, in a process of its own ---------------------------------------------------

class Timed:
    """The loop's reporter, noting when each step is reported; calls ``done`` once the blocks
    are measured (or epoch 1 ends, if ``first_epoch_only``)."""

    def __init__(self, inner, *, steps_per_epoch: int, block_s: float, blocks: int, warmup_s: float,
                 first_epoch_only: bool, done):
        d = self.__dict__
        d["_inner"], d["_spe"], d["_block_s"], d["_blocks"] = inner, steps_per_epoch, block_s, blocks
        d["_warmup_s"], d["_first_only"], d["_done"] = warmup_s, first_epoch_only, done
        d["_prev"] = None  # (time, epoch) of the previous step
        d["_t0"] = None
        # intervals, their wall time, the block's start, the loop thread's and the process's CPU time
        d["_acc"] = [0, 0.0, None, 0.0, 0.0]
        d["measured"] = []  # per block: {"steps", "step_s", "wall_s"}
        d["finished"] = False
        d["steps"] = 0

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def __setattr__(self, name, value):  # the loop sets .epoch on its reporter
        setattr(self._inner, name, value)

    def step(self, epoch: int, step: int, values: dict, samples: int, **kwargs) -> None:
        now, cpu, proc = time.perf_counter(), time.thread_time(), time.process_time()
        d = self.__dict__
        d["steps"] = step
        prev, d["_prev"] = d["_prev"], (now, epoch, cpu, proc)
        if d["_t0"] is None:
            d["_t0"] = now
        self._inner.step(epoch, step, values, samples, **kwargs)
        if self.finished or prev is None or now - d["_t0"] < self._warmup_s:
            return
        acc = d["_acc"]
        if acc[2] is None:
            acc[2] = prev[0]
        if prev[1] == epoch:  # an interval of the same epoch: no checkpoint in it
            acc[0] += 1
            acc[1] += now - prev[0]
            acc[3] += cpu - prev[2]
            acc[4] += proc - prev[3]
        last_of_epoch1 = self._first_only and step >= self._spe
        if acc[1] >= self._block_s or (last_of_epoch1 and acc[0]):
            self.measured.append({"steps": acc[0], "step_s": acc[1], "wall_s": now - acc[2],
                                  "loop_cpu_s": acc[3], "process_cpu_s": acc[4]})
            d["_acc"] = [0, 0.0, None, 0.0, 0.0]
        if len(self.measured) >= self._blocks or last_of_epoch1:
            d["finished"] = True
            self._done()


def child_main(a) -> None:
    import logging

    import numpy as np
    from sqlalchemy import func, select

    from api.routes.jobs import create_job
    from config.settings import Settings
    from plan.request import JobCreate
    from store import live
    from store.db import session_scope
    from store.models import JobStatus, Metric
    from store.repositories import jobs
    from worker import failures, lifecycle
    from worker.joblog import job_log
    from worker.loop import TrainingLoop
    from worker.reporting import Reporter, SilentReporter
    from worker.supervision import Control

    logging.basicConfig(level=logging.WARNING)
    url = a.url
    settings = Settings(database_url=url, redis_url=a.redis_url, max_running_per_owner=0)
    model, optimizer = MODELS[a.model]
    training = {"epochs": 100, "batch_size": 32, "optimizer": optimizer, "validation_split": 0.0, "seed": 0}
    with session_scope(url) as s:
        job = create_job(s, JobCreate(name=f"{a.variant}-{a.model}", dataset_id=a.dataset, model=model,
                                      training=training), settings, "local")
        s.flush()
        job_id = job.id
    claim = lifecycle._claim(job_id, settings)  # loads the data and claims, as the worker does
    assert claim is not None and claim is not lifecycle.CAPPED
    control = Control()
    locker = None
    if a.variant == "bare":
        inner = SilentReporter()
    else:
        live.install(a.redis_url)
        inner = Reporter(url, job_id, claim.attempt, total_steps=claim.plan.total_steps,
                         epochs=claim.plan.training.epochs, flush_s=settings.metrics_flush_s,
                         flush_rows=settings.metrics_flush_rows, buffer_rows=settings.metrics_buffer_rows,
                         max_log_lines=settings.max_log_lines, on_lost=control.lost.set)
    locked_rows = None
    if a.variant == "sqlite-locked":
        import sqlite3

        locker = sqlite3.connect(url.removeprefix("sqlite:///"), isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
    elif a.variant == "postgresql-locked":
        import psycopg

        locker = psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        locker.execute("SELECT 1 FROM jobs WHERE id = %s FOR UPDATE", (job_id,))  # the writer's UPDATE waits

    def done() -> None:
        nonlocal locked_rows
        if locker is not None:
            q = "SELECT count(*) FROM metrics WHERE job_id = " + ("?" if a.variant.startswith("sqlite") else "%s")
            locked_rows = locker.execute(q, (job_id,)).fetchone()[0]
            locker.commit() if a.variant.startswith("postgresql") else locker.execute("COMMIT")
            locker.close()
        control.cancel.set()

    timed = Timed(inner, steps_per_epoch=claim.plan.steps_per_epoch, block_s=a.block_s, blocks=a.blocks,
                  warmup_s=a.warmup_s, first_epoch_only=a.first_epoch, done=done)
    loop = TrainingLoop(claim, settings, control, None, timed)
    started = time.perf_counter()
    try:
        if isinstance(inner, Reporter):
            with job_log(inner):
                loop.run()
        else:
            loop.run()
    except failures.Cancelled:
        pass
    finally:
        inner.close()
    wall = time.perf_counter() - started
    with session_scope(url) as s:
        jobs.finish(s, job_id=job_id, attempt=claim.attempt, status=JobStatus.CANCELLED, error="benchmark done")
        losses = s.scalar(select(func.count()).select_from(Metric)
                          .where(Metric.job_id == job_id, Metric.kind == "step", Metric.name == "loss"))
    if not timed.finished:
        raise RuntimeError("the run ended before its blocks were measured")
    Path(a.out).write_text(json.dumps({
        "variant": a.variant, "model": a.model, "blocks": timed.measured, "steps": timed.steps, "wall_s": wall,
        "loss_rows": losses, "rows_while_locked": locked_rows, "steps_per_epoch": claim.plan.steps_per_epoch,
        "rss_mb": _rss_mb(), "numpy_threads": _blas_threads(np)}))


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _blas_threads(np) -> str:
    try:
        from threadpoolctl import threadpool_info

        return ",".join(f"{i['internal_api']}:{i['num_threads']}" for i in threadpool_info())
    except ImportError:
        return "?"


# -- the benchmark -------------------------------------------------------------------------------

def run_child(variant: str, model: str, url: str, dataset: str, args, tmp: Path, first_epoch: bool = False) -> dict:
    out = tmp / f"{variant}-{model}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, os.path.abspath(__file__), "--child", "--variant", variant, "--model", model,
           "--url", url, "--dataset", dataset, "--redis-url", args.redis_url, "--block-s", str(args.block_s),
           "--blocks", str(args.blocks), "--warmup-s", str(args.warmup_s), "--out", str(out)]
    cmd += ["--first-epoch"] if first_epoch else []
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        rc = proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    if rc != 0:
        raise RuntimeError(f"{variant}/{model} exited with {rc}")
    r = json.loads(out.read_text())
    r["rates"] = [b["steps"] / b["step_s"] for b in r["blocks"]]
    r["wall_rates"] = [b["steps"] / b["wall_s"] for b in r["blocks"]]
    print(f"  {variant:<18} {model:<7} " + ", ".join(f"{x:.0f}" for x in r["rates"]) + " steps/s", flush=True)
    return r


HEADERS = ["model", "variant", "blocks (s each)", "steps/s: median (range)", "overhead", "paired by round",
           "loop-thread CPU us/step", "process CPU us/step", "note"]


def _med(runs: list[dict], key) -> float:
    return statistics.median([key(b) for r in runs for b in r["blocks"]])


def summarize(runs: list[dict], models: list[str], variants: list[str]) -> list[list]:
    """One row per model and variant: wall-clock steps/s, and CPU time per step (the loop's
    thread; the whole process, the writer thread included), each against the bare loop."""
    def loop_us(b): return b["loop_cpu_s"] / b["steps"] * 1e6
    def proc_us(b): return b["process_cpu_s"] / b["steps"] * 1e6

    rows = []
    for model in models:
        bare = [r for r in runs if r["model"] == model and r["variant"] == "bare"]
        if not bare:
            continue
        bare_rate = statistics.median([x for r in bare for x in r["rates"]])
        bare_loop, bare_proc = _med(bare, loop_us), _med(bare, proc_us)
        for variant in variants:
            mine = [r for r in runs if r["model"] == model and r["variant"] == variant]
            if not mine:
                continue
            rates = [x for r in mine for x in r["rates"]]
            med = statistics.median(rates)
            secs = [b["step_s"] for r in mine for b in r["blocks"]]
            lu, pu = _med(mine, loop_us), _med(mine, proc_us)
            if variant == "bare":
                over = pair = ""
                cpu = [f"{lu:.0f}", f"{pu:.0f}"]
            else:
                over = f"{(bare_rate - med) / bare_rate * 100:+.1f} %"
                paired = []  # each run against the bare run of its round
                for r in mine:
                    b = [x for x in bare if x["round"] == r["round"]]
                    if b:
                        br = statistics.median(b[0]["rates"])
                        paired.append((br - statistics.median(r["rates"])) / br * 100)
                pair = (f"{statistics.median(paired):+.1f} % ({min(paired):+.1f} .. {max(paired):+.1f})"
                        if paired else "")
                cpu = [f"{lu:.0f} ({(lu - bare_loop) / bare_loop * 100:+.1f} %)",
                       f"{pu:.0f} ({(pu - bare_proc) / bare_proc * 100:+.1f} %)"]
            note = ""
            if mine[0].get("rows_while_locked") is not None:
                note = (f"rows written while locked: {sum(r['rows_while_locked'] for r in mine)}; loss rows "
                        f"after: {sum(r['loss_rows'] for r in mine)} of {sum(r['steps'] for r in mine)} steps")
            span = f"{min(secs):.1f}" if min(secs) == max(secs) else f"{min(secs):.1f}-{max(secs):.1f}"
            rows.append([model, variant, f"{len(rates)} ({span})", f"{med:.0f} ({min(rates):.0f}-{max(rates):.0f})",
                         over, pair, *cpu, note])
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="one short round (well under a minute)")
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--block-s", type=float, default=5.0, help="seconds of stepping per block")
    p.add_argument("--blocks", type=int, default=2, help="blocks per run")
    p.add_argument("--warmup-s", type=float, default=1.0)
    p.add_argument("--tile", type=int, default=200, help="copies of digits (1797 samples) in the dataset")
    p.add_argument("--models", default="mlp,logreg")
    p.add_argument("--locked-rounds", type=int, default=2, help="rounds of the unavailable-database runs (0: none)")
    p.add_argument("--postgres-url", default=shared.DEFAULT_POSTGRES)
    p.add_argument("--redis-url", default=shared.DEFAULT_REDIS)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--model", help=argparse.SUPPRESS)
    p.add_argument("--url", help=argparse.SUPPRESS)
    p.add_argument("--dataset", help=argparse.SUPPRESS)
    p.add_argument("--out", help=argparse.SUPPRESS)
    p.add_argument("--first-epoch", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child_main(args)
        return
    shared.on_sigterm_exit()
    if args.quick:
        args.rounds, args.block_s, args.blocks, args.warmup_s, args.tile = 1, 1.0, 1, 0.5, 30
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    variants = list(VARIANTS)
    if args.quick:
        args.locked_rounds = min(args.locked_rounds, 1)
    locked = [] if args.locked_rounds <= 0 else (["sqlite-locked"] if args.quick else list(LOCKED))
    if not shared.postgres_available(args.postgres_url):
        print(f"PostgreSQL at {args.postgres_url} is not reachable: its variants are skipped")
        variants.remove("postgresql")
        locked = [v for v in locked if not v.startswith("postgresql")]
    shared.check_redis(args.redis_url)
    info = shared.machine(args.postgres_url if "postgresql" in variants else None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-live-overhead-"))
    runs: list[dict] = []
    from contextlib import ExitStack

    from store.db import session_scope
    from store.repositories import datasets

    try:
        with ExitStack() as stack:
            urls = {"sqlite": stack.enter_context(shared.database("sqlite", tmp, args.postgres_url))}
            if "postgresql" in variants:
                urls["postgresql"] = stack.enter_context(shared.database("postgresql", tmp, args.postgres_url))
            x, y = digits(args.tile)
            ids = {}
            for kind, url in urls.items():
                with session_scope(url) as s:
                    ids[kind] = datasets.create(s, name="digits-tiled", inputs=x, targets=y,
                                                task="classification").id
            del x, y
            print(f"dataset: digits x{args.tile} = {1797 * args.tile} samples; steps/s per block "
                  f"({args.blocks} x >= {args.block_s:g} s per run):", flush=True)

            def db_of(variant: str) -> str:
                return "postgresql" if variant.startswith("postgresql") else "sqlite"

            for rnd in range(args.rounds):
                order = variants[rnd % len(variants):] + variants[:rnd % len(variants)]
                print(f" round {rnd + 1}/{args.rounds}", flush=True)
                for model in models:
                    for variant in order:
                        kind = db_of(variant)
                        r = run_child(variant, model, urls[kind], ids[kind], args, tmp)
                        r["round"], r["phase"] = rnd, "main"
                        runs.append(r)
            for rnd in range(args.locked_rounds if locked else 0):
                print(f" database unavailable for the whole measurement (epoch 1), round {rnd + 1}/"
                      f"{args.locked_rounds}", flush=True)
                order = locked if args.quick else ["bare", *locked]
                order = order[rnd % len(order):] + order[:rnd % len(order)]
                for model in models:
                    for variant in order:
                        kind = db_of(variant)
                        r = run_child(variant, model, urls[kind], ids[kind], args, tmp, first_epoch=True)
                        r["round"], r["phase"] = rnd, "locked"
                        runs.append(r)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = list(os.getloadavg())
    print(f"\nsteps/s of TrainingLoop (batch 32, digits; {args.rounds} rounds x {args.blocks} blocks, each run a "
          "process of its own); overhead = (bare - reporting) / bare of the medians; CPU time per step of the "
          "loop's thread and of the whole process (the writer thread included), against bare\n")
    shared.table(HEADERS, summarize([r for r in runs if r["phase"] == "main"], models, variants))
    if locked:
        print(f"\ndatabase unavailable for all of epoch 1 (SQLite: BEGIN EXCLUSIVE by another connection; "
              f"PostgreSQL: the job row held FOR UPDATE), {args.locked_rounds} rounds, against bare runs of epoch 1\n")
        lr = [r for r in runs if r["phase"] == "locked"]
        if not any(r["variant"] == "bare" for r in lr):  # --quick: the main round's bare runs
            lr += [r for r in runs if r["phase"] == "main" and r["round"] == 0 and r["variant"] == "bare"]
        shared.table(HEADERS, summarize(lr, models, ["bare", *locked]))
    print(f"\nBLAS threads in the runs: {runs[0]['numpy_threads']}; peak RSS of a run "
          f"{min(r['rss_mb'] for r in runs):.0f}-{max(r['rss_mb'] for r in runs):.0f} MB")
    shared.print_machine(info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": runs, "args": vars(args)}, indent=2))


if __name__ == "__main__":
    main()
