"""Live runs: many SSE subscribers on one API process.

One API process (uvicorn, ``trainyard.commands.api_command``) over the database and the
machine's Redis; one job fed by a ``worker.reporting.Reporter`` in this process at
``--rate`` steps/s (a worker's flush every 0.5 s: a metric and a progress event each time);
``--subscribers`` concurrent SSE clients (asyncio + httpx_sse, in a process of their own) on
``GET /v1/jobs/{id}/events``. The API process's RSS (VmRSS of /proc/<pid>/status) and CPU
time (utime + stime of /proc/<pid>/stat) are sampled before (one warm-up client came and
went), during ``--during-s`` seconds with every subscriber connected, and after they left.

Two ways of leaving, one job each:
1. the job ends (status succeeded, then ``end``): every subscriber must have received the
   same event sequence, ids 1..n without a gap, ending with ``end``;
2. the clients hang up mid-stream: every sequence must be a gapless prefix of the longest.
After each, ``PUBSUB NUMSUB`` of the job's channel must return to 0 (no subscription
outlives its client).

    .venv/bin/python bench/sse_fanout.py [--quick] [--subscribers 200] [--database postgresql|sqlite]
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import live_latency as shared  # noqa: E402  (the helpers the live benchmarks share)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_sample(pid: int) -> dict:
    """RSS (MiB), threads and CPU seconds (user + system) of process ``pid`` now."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    stat = Path(f"/proc/{pid}/stat").read_text()
    after = stat[stat.rindex(")") + 2:].split()  # fields from the 3rd on; utime, stime are the 14th, 15th
    return {"t": time.monotonic(), "rss_mb": int(fields["VmRSS"].split()[0]) / 1024,
            "threads": int(fields["Threads"]), "cpu_s": (int(after[11]) + int(after[12])) / CLK_TCK}


def window(pid: int, seconds: float, every: float = 1.0) -> dict:
    """Samples over ``seconds``: RSS median/max, threads max, CPU % of one core."""
    samples = [proc_sample(pid)]
    end = samples[0]["t"] + seconds
    while time.monotonic() < end:
        time.sleep(min(every, max(0.0, end - time.monotonic())))
        samples.append(proc_sample(pid))
    first, last = samples[0], samples[-1]
    rss = [s["rss_mb"] for s in samples]
    return {"seconds": last["t"] - first["t"], "rss_mb_median": statistics.median(rss), "rss_mb_max": max(rss),
            "rss_mb_last": rss[-1], "threads_max": max(s["threads"] for s in samples),
            "cpu_pct": (last["cpu_s"] - first["cpu_s"]) / max(last["t"] - first["t"], 1e-9) * 100}


# -- the subscribers' process --------------------------------------------------------------------

async def _subscribers(base: str, job_id: str, n: int, leave_after: float | None) -> list[dict]:
    import httpx
    from httpx_sse import aconnect_sse

    results = [{"events": [], "error": None, "first_s": None, "pings": 0} for _ in range(n)]
    bodies: dict[str, str] = {}  # hash -> data, to show what differs
    t0 = time.monotonic()

    async def one(i: int, client: httpx.AsyncClient) -> None:
        r = results[i]
        try:
            async with aconnect_sse(client, "GET", f"/v1/jobs/{job_id}/events") as source:
                async for e in source.aiter_sse():
                    if e.event == "message" and not e.data:
                        # a keep-alive comment (every 15 s), which httpx_sse 0.4 hands on as an empty
                        # "message" with the last id; EventSource in a browser dispatches nothing
                        r["pings"] += 1
                        continue
                    if r["first_s"] is None:
                        r["first_s"] = time.monotonic() - t0
                    digest = hashlib.sha1(e.data.encode()).hexdigest()[:16]
                    bodies.setdefault(digest, e.data)
                    r["events"].append([int(e.id), e.event, digest])
                    if e.event == "end":
                        return
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - counted and reported
            r["error"] = f"{type(exc).__name__}: {exc}"

    limits = httpx.Limits(max_connections=n + 10, max_keepalive_connections=n + 10)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=httpx.Timeout(60, read=None)) as client:
        tasks = [asyncio.create_task(one(i, client)) for i in range(n)]
        if leave_after is None:
            await asyncio.gather(*tasks)
        else:
            done, pending = await asyncio.wait(tasks, timeout=leave_after)
            for t in pending:
                t.cancel()  # hang up: the connection closes
            await asyncio.gather(*pending, return_exceptions=True)
    return {"subscribers": results, "bodies": bodies}


def subscribers_main(base: str, job_id: str, n: str, out: str, leave_after: str) -> None:
    results = asyncio.run(_subscribers(base, job_id, int(n), float(leave_after) if float(leave_after) > 0 else None))
    Path(out).write_text(json.dumps(results))


# -- checks --------------------------------------------------------------------------------------

def first_difference(got: dict, seqs: list[list]) -> str:
    """Where the first sequence that differs from the most common one departs from it."""
    from collections import Counter

    common = json.loads(Counter(json.dumps(s) for s in seqs).most_common(1)[0][0])
    for s in seqs:
        for i, (x, y) in enumerate(zip(common, s)):
            if x != y:
                return (f"event #{i}: {x[:2]} vs {y[:2]}; data {got['bodies'].get(x[2], '?')[:300]!r} vs "
                        f"{got['bodies'].get(y[2], '?')[:300]!r}")
        if len(s) != len(common):
            return f"lengths {len(common)} vs {len(s)}"
    return ""


def check_same(got: dict) -> tuple[bool, str]:
    results = got["subscribers"]
    errors = [r["error"] for r in results if r["error"]]
    seqs = [r["events"] for r in results if not r["error"]]  # a failed request: counted as an error
    first = seqs[0] if seqs else []
    ids = [e[0] for e in first]
    ok = (not errors and all(s == first for s in seqs) and first and first[-1][1] == "end"
          and ids[:-1] == list(range(1, len(ids))))
    return bool(ok), (f"{sum(s == first for s in seqs)}/{len(results)} identical, {len(first)} events each, "
                      f"last {first[-1][1] if first else None!r}, {len(errors)} errors"
                      + (f" (first: {errors[0]})" if errors else "")
                      + f", {sum(r['pings'] for r in results)} keep-alive pings left out"
                      + ("" if ok else f"; first difference: {first_difference(got, seqs)}"))


def check_prefixes(got: dict) -> tuple[bool, str]:
    results = got["subscribers"]
    seqs = [r["events"] for r in results]
    errors = [r["error"] for r in results if r["error"]]
    longest = max(seqs, key=len)
    prefix = sum(s == longest[:len(s)] for s in seqs)
    gapless = sum([e[0] for e in s] == list(range(1, len(s) + 1)) for s in seqs)
    lengths = sorted(len(s) for s in seqs)
    ok = not errors and prefix == len(seqs) == gapless and lengths[0] > 0
    return ok, (f"{prefix}/{len(seqs)} prefixes of the longest, {gapless} gapless, {lengths[0]}-{lengths[-1]} "
                f"events each, {len(errors)} errors" + (f" (first: {errors[0]})" if errors else ""))


# -- the benchmark -------------------------------------------------------------------------------

def start_subscribers(base: str, job_id: str, n: int, out: Path, leave_after: float = 0.0) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--subscribers-of", base, job_id, str(n),
                             str(out), str(leave_after)], start_new_session=True)


def stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run(args, tmp: Path) -> dict:
    import redis

    from store import live
    from worker.reporting import Reporter

    res: dict = {"database": args.database, "subscribers": args.subscribers, "rate": args.rate}
    broker = redis.Redis.from_url(args.redis_url)
    live.install(args.redis_url)
    procs: list[subprocess.Popen] = []
    feeds: list = []  # (reporter, pacer)
    try:
        with shared.database(args.database, tmp, args.postgres_url) as url, \
                shared.api_process(url, args.redis_url, tmp) as (pid, base):

            def feed() -> tuple[str, int, str]:
                job_id, attempt = shared.running_job(url)
                reporter = Reporter(url, job_id, attempt, total_steps=10**6, epochs=1)
                pacer = shared.Pacer(reporter, args.rate, 3600).start()
                feeds.append((reporter, pacer))
                return job_id, attempt, live.channel(job_id)

            def end_feed(job_id: str, attempt: int) -> None:
                reporter, pacer = feeds.pop()
                pacer.stop.set()
                pacer.join()
                reporter.close()
                shared.finish_job(url, job_id, attempt)

            job_id, attempt, channel = feed()
            # warm-up: one client comes and goes, so lazy imports and pools are not counted
            warm = start_subscribers(base, job_id, 1, tmp / "warm.json", leave_after=2.0)
            procs.append(warm)
            warm.wait(60)
            res["before"] = window(pid, args.idle_s)
            print(f"before: RSS {res['before']['rss_mb_last']:.1f} MiB, CPU {res['before']['cpu_pct']:.1f} %",
                  flush=True)

            # 1. N subscribers until the job ends
            out = tmp / "subscribers.json"
            t0 = time.monotonic()
            subs = start_subscribers(base, job_id, args.subscribers, out)
            procs.append(subs)
            # (a subscriber whose request failed never subscribes: go on after 60 s, its error is reported)
            shared.wait_until(lambda: shared.numsub(broker, channel) >= args.subscribers or subs.poll() is not None,
                              60, 0.1)
            res["subscribe_all_s"] = time.monotonic() - t0
            res["numsub_during"] = shared.numsub(broker, channel)
            res["during"] = window(pid, args.during_s)
            res["numsub_during_end"] = shared.numsub(broker, channel)
            print(f"during: RSS {res['during']['rss_mb_median']:.1f} MiB, CPU {res['during']['cpu_pct']:.1f} %",
                  flush=True)
            t1 = time.monotonic()
            end_feed(job_id, attempt)
            subs.wait(120)
            res["all_ended_s"] = time.monotonic() - t1
            if subs.returncode != 0:
                raise RuntimeError(f"the subscribers' process exited with {subs.returncode}")
            res["numsub_zero"] = shared.wait_until(lambda: shared.numsub(broker, channel) == 0, 30)
            res["numsub_zero_s"] = time.monotonic() - t1
            res["numsub_after"] = shared.numsub(broker, channel)
            got = json.loads(out.read_text())
            results = got["subscribers"]
            res["same_ok"], res["same"] = check_same(got)
            res["first_event_s"] = [min(r["first_s"] for r in results if r["first_s"] is not None),
                                    max(r["first_s"] for r in results if r["first_s"] is not None)]
            res["after"] = window(pid, args.idle_s)
            print(f"after: RSS {res['after']['rss_mb_last']:.1f} MiB, CPU {res['after']['cpu_pct']:.1f} %",
                  flush=True)

            # 2. N subscribers that hang up mid-stream
            job_id, attempt, channel = feed()
            out = tmp / "leavers.json"
            t0 = time.monotonic()
            subs = start_subscribers(base, job_id, args.subscribers, out, leave_after=args.leave_after_s)
            procs.append(subs)
            shared.wait_until(lambda: shared.numsub(broker, channel) >= args.subscribers or subs.poll() is not None,
                              60, 0.1)
            res["leave_numsub_peak"] = shared.numsub(broker, channel)
            res["leave_during"] = window(pid, max(0.0, args.leave_after_s - (time.monotonic() - t0) - 0.5))
            subs.wait(120)
            t1 = time.monotonic()
            if subs.returncode != 0:
                raise RuntimeError(f"the leaving subscribers' process exited with {subs.returncode}")
            res["leave_numsub_zero"] = shared.wait_until(lambda: shared.numsub(broker, channel) == 0, 30)
            res["leave_numsub_zero_s"] = time.monotonic() - t1
            res["leave_numsub_after"] = shared.numsub(broker, channel)
            res["leave_ok"], res["leave"] = check_prefixes(json.loads(out.read_text()))
            res["leave_after"] = window(pid, args.idle_s)
            end_feed(job_id, attempt)
    finally:
        for proc in procs:
            stop(proc)
        for reporter, pacer in feeds:
            pacer.stop.set()
            pacer.join()
            reporter.close()
        live.install(None)
        broker.close()
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="short windows (well under a minute)")
    p.add_argument("--subscribers", type=int, default=200)
    p.add_argument("--rate", type=float, default=100.0, help="steps per second fed to the job")
    p.add_argument("--during-s", type=float, default=30.0, help="seconds measured with every subscriber connected")
    p.add_argument("--idle-s", type=float, default=5.0, help="seconds measured before and after")
    p.add_argument("--leave-after-s", type=float, default=15.0, help="when the second set of clients hangs up")
    p.add_argument("--database", choices=["postgresql", "sqlite"], default=None,
                   help="default: postgresql when reachable, else sqlite")
    p.add_argument("--postgres-url", default=shared.DEFAULT_POSTGRES)
    p.add_argument("--redis-url", default=shared.DEFAULT_REDIS)
    p.add_argument("--json", help="write the results here")
    p.add_argument("--subscribers-of", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.subscribers_of:
        subscribers_main(*args.subscribers_of)
        return
    shared.on_sigterm_exit()
    if args.quick:
        args.during_s, args.idle_s, args.leave_after_s = 8.0, 2.0, 8.0
    if args.database is None:
        args.database = "postgresql" if shared.postgres_available(args.postgres_url) else "sqlite"
    shared.check_redis(args.redis_url)
    info = shared.machine(args.postgres_url if args.database == "postgresql" else None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-sse-fanout-"))
    try:
        r = run(args, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    info["load_after"] = list(os.getloadavg())
    n = args.subscribers
    b, d, a = r["before"], r["during"], r["after"]
    print(f"\n{n} SSE subscribers on one API process ({args.database}, Redis), one job at {args.rate:g} steps/s "
          f"(2 events per 0.5 s flush); during = {d['seconds']:.0f} s with all {n} connected\n")
    shared.table(["phase", "RSS MiB (median / max)", "threads", "CPU % of one core"], [
        ["before (warmed up)", f"{b['rss_mb_median']:.1f} / {b['rss_mb_max']:.1f}", b["threads_max"],
         f"{b['cpu_pct']:.1f}"],
        [f"during, {n} subscribers", f"{d['rss_mb_median']:.1f} / {d['rss_mb_max']:.1f}", d["threads_max"],
         f"{d['cpu_pct']:.1f}"],
        ["after they left", f"{a['rss_mb_median']:.1f} / {a['rss_mb_max']:.1f}", a["threads_max"],
         f"{a['cpu_pct']:.1f}"],
        ["hang-up set: connected", f"{r['leave_during']['rss_mb_median']:.1f} / "
         f"{r['leave_during']['rss_mb_max']:.1f}", r["leave_during"]["threads_max"],
         f"{r['leave_during']['cpu_pct']:.1f}"],
        ["hang-up set: after", f"{r['leave_after']['rss_mb_median']:.1f} / {r['leave_after']['rss_mb_max']:.1f}",
         r["leave_after"]["threads_max"], f"{r['leave_after']['cpu_pct']:.1f}"],
    ])
    per = (d["rss_mb_median"] - b["rss_mb_median"]) * 1024 / n
    print(f"\nRSS per subscriber: {per:.0f} KiB (median during - before) / {n}; CPU per subscriber "
          f"{(d['cpu_pct'] - b['cpu_pct']) / n:.3f} % of a core")
    print(f"{r['numsub_during']} of {n} subscribed (PUBSUB NUMSUB) {r['subscribe_all_s']:.1f} s after the clients "
          f"started; first event after {r['first_event_s'][0]:.2f}-{r['first_event_s'][1]:.2f} s")
    print(f"1. job ended: {r['same']}: {'OK' if r['same_ok'] else 'FAILED'}; all ended "
          f"{r['all_ended_s']:.1f} s after the finish; NUMSUB back to {r['numsub_after']} "
          f"({'OK' if r['numsub_zero'] else 'FAILED'}, {r['numsub_zero_s']:.1f} s)")
    print(f"2. clients hung up after {args.leave_after_s:g} s (NUMSUB peak {r['leave_numsub_peak']}): {r['leave']}: "
          f"{'OK' if r['leave_ok'] else 'FAILED'}; NUMSUB back to {r['leave_numsub_after']} "
          f"({'OK' if r['leave_numsub_zero'] else 'FAILED'}, {r['leave_numsub_zero_s']:.1f} s after they left)")
    print()
    shared.print_machine(info)
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "result": r, "args": vars(args)}, indent=2))
    if not (r["same_ok"] and r["numsub_zero"] and r["leave_ok"] and r["leave_numsub_zero"]):
        sys.exit(1)


if __name__ == "__main__":
    main()
