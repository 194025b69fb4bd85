"""Engine vs torch on whole training steps, each side timed in its own subprocess.

Why a harness: timing engine and torch alternately in one process (the old bench/engine_nn.py)
put the engine's spinning OpenBLAS threads and garbage on torch's clock (torch's SimpleCNN step
read 40 ms there, 14 ms alone). Here every measurement is a fresh Python process that imports
only its own library, with the same thread count on both sides (OMP/OpenBLAS/MKL/ENGINE thread
variables and ``torch.set_num_threads``), warmed up, then timed in long blocks; the figure is
the median over blocks with the spread (min-max) beside it, and the process CPU time per step.
Sides alternate order from round to round so drifting load hits both. Each record carries the
machine (CPU model, load average before and after), numpy/torch versions and threadpoolctl's
view of the BLAS/OpenMP pools (kernel, threads).

    python bench/harness.py                       # every workload at 1 and 2 threads
    python bench/harness.py --only cnn,lstm --threads 2 --blocks 7 --block-s 1.5
    python bench/harness.py --memory              # peak memory of a training step, both sides
    python bench/harness.py --neighbour cnn       # torch beside an engine process / after engine use
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python bench/harness.py ...   # benchmark only

Workloads live in bench/engine_models.py; results are recorded in bench/README.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "ENGINE_NUM_THREADS")


# ----------------------------------------------------------------------------- machine facts

def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def load_avg() -> list:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def _rss_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _pools() -> list:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "prefix", "version", "num_threads", "architecture", "threading_layer")
    return [{k: p.get(k) for k in keep if p.get(k) is not None} for p in threadpool_info()]


# ----------------------------------------------------------------------------- child side

def _import_side(side: str) -> Any:
    sys.path.insert(0, str(ROOT))
    if side == "engine":
        import engine

        return engine
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    return torch


def _build(lib: Any, workload: str, seed: int = 0) -> Any:
    import numpy as np

    from bench.engine_models import WORKLOADS

    lib.manual_seed(seed)
    return WORKLOADS[workload](lib, np.random.default_rng(seed))


def _time_blocks(step: Any, blocks: int, block_s: float, warm_s: float) -> dict:
    """Warm up for ``warm_s`` (at least 3 steps), then ``blocks`` blocks of about ``block_s`` each."""
    import resource

    t0 = time.perf_counter()
    n = 0
    while n < 3 or time.perf_counter() - t0 < warm_s:
        step()
        n += 1
    per = (time.perf_counter() - t0) / n
    inner = max(2, round(block_s / per))
    wall, cpu, faults = [], [], []
    for _ in range(blocks):
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(inner):
            step()
        w1, c1 = time.perf_counter(), time.process_time()
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        wall.append((w1 - w0) / inner * 1e3)
        cpu.append((c1 - c0) / inner * 1e3)
        faults.append((r1.ru_minflt - r0.ru_minflt) / inner)
    return {"steps_per_block": inner, "block_ms": [round(v, 3) for v in wall],
            "median_ms": round(statistics.median(wall), 3), "min_ms": round(min(wall), 3),
            "max_ms": round(max(wall), 3), "cpu_ms": round(statistics.median(cpu), 3),
            "faults_per_step": round(statistics.median(faults), 1)}


def _memory(step: Any, steps: int = 3, trace: bool = False) -> dict:
    """Peak memory of ``steps`` training steps over the process as it was after setup.

    RSS: VmHWM reset through /proc/self/clear_refs, minus VmRSS after setup (optimizer state,
    gradients and activations all count). tracemalloc (a separate run: its own tables would
    count in RSS) sees numpy's buffers but not torch's C++ allocator."""
    import gc
    import tracemalloc

    gc.collect()
    base = _rss_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    if trace:
        tracemalloc.start()
    for _ in range(steps):
        step()
    out: dict = {"rss_base_mb": round(base / 1024, 1), "rss_peak_mb": round((_rss_kb("VmHWM") - base) / 1024, 1)}
    if trace:
        out["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / 2**20, 1)
        tracemalloc.stop()
    return out


def _spin_neighbour(lib: Any, workload: str, seconds: float, duty: float) -> dict:
    """Run the workload for ``seconds``, sleeping after each step so it works ``duty`` of the time
    (a data loader or an API process beside a trainer); report its CPU per wall second."""
    step = _build(lib, workload)
    step()
    t0, c0 = time.perf_counter(), time.process_time()
    steps = 0
    while time.perf_counter() - t0 < seconds:
        s0 = time.perf_counter()
        step()
        steps += 1
        if duty < 1.0:
            time.sleep((time.perf_counter() - s0) * (1 - duty) / duty)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"steps": steps, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "cores_busy": round(cpu / wall, 2)}


def child(args: argparse.Namespace) -> None:
    lib = _import_side(args.side)
    import numpy as np

    rec: dict = {"side": args.side, "workload": args.workload, "threads": args.threads,
                 "load_before": load_avg(), "numpy": np.__version__}
    if args.side == "torch":
        rec["torch"] = lib.__version__
        rec["torch_threads"] = lib.get_num_threads()
    if args.mode == "time":
        rec.update(_time_blocks(_build(lib, args.workload), args.blocks, args.block_s, args.warm_s))
    elif args.mode in ("rss", "trace"):
        rec.update(_memory(_build(lib, args.workload), trace=args.mode == "trace"))
    elif args.mode == "spin":
        rec.update(_spin_neighbour(lib, args.workload, args.seconds, args.duty))
    elif args.mode == "after_engine":  # torch timed in a process that ran the engine first
        import engine

        eng = _build(engine, args.workload)
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            eng()
        rec.update(_time_blocks(_build(lib, args.workload), args.blocks, args.block_s, args.warm_s))
    elif args.mode == "alternate":  # the old method: 3 engine steps, 3 torch steps, torch timed
        import engine

        eng, tor = _build(engine, args.workload), _build(lib, args.workload)
        eng(), tor()
        times = []
        t_end = time.perf_counter() + args.seconds
        while time.perf_counter() < t_end:
            for _ in range(3):
                eng()
            t0 = time.perf_counter()
            for _ in range(3):
                tor()
            times.append((time.perf_counter() - t0) / 3 * 1e3)
        rec.update({"median_ms": round(statistics.median(times), 3), "min_ms": round(min(times), 3),
                    "max_ms": round(max(times), 3), "rounds": len(times)})
    rec["pools"] = _pools()
    rec["load_after"] = load_avg()
    print("RESULT " + json.dumps(rec), flush=True)


# ----------------------------------------------------------------------------- parent side

def child_env(threads: int, extra: dict | None = None) -> dict:
    env = dict(os.environ)
    for k in THREAD_VARS:
        env[k] = str(threads)
    env.update(extra or {})
    for k, v in list(env.items()):
        if v == "":  # KEY= removes a variable for this child
            del env[k]
    return env


def run_child(side: str, workload: str, threads: int, mode: str, args: argparse.Namespace,
              extra_env: dict | None = None, wait: bool = True) -> Any:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--side", side, "--workload", workload,
           "--threads", str(threads), "--mode", mode, "--blocks", str(args.blocks), "--block-s", str(args.block_s),
           "--warm-s", str(args.warm_s), "--seconds", str(args.seconds), "--duty", str(args.duty)]
    proc = subprocess.Popen(cmd, env=child_env(threads, extra_env), stdout=subprocess.PIPE, text=True, cwd=ROOT)
    if not wait:
        return proc
    return _result(proc)


def _result(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate()
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"child failed (rc {proc.returncode}): {out[-2000:]}")


def machine() -> dict:
    import numpy as np

    info = {"cpu": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "platform": platform.platform(), "load_avg": load_avg(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
            "OPENBLAS_THREAD_TIMEOUT": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        pass
    return info


def _blas(rec: dict) -> str:
    for p in rec.get("pools", []):
        if p.get("internal_api") == "openblas":
            return f"{p.get('architecture')}x{p.get('num_threads')}"
    return "?"


def bench_speed(args: argparse.Namespace, names: list, threads: list) -> list:
    rows = []
    for t in threads:
        for name in names:
            recs: dict = {"engine": [], "torch": []}
            try:
                for r in range(args.rounds):
                    order = ("engine", "torch") if r % 2 == 0 else ("torch", "engine")
                    for side in order:
                        recs[side].append(run_child(side, name, t, "time", args,
                                                    _env(args.engine_env) if side == "engine" else None))
            except RuntimeError as e:  # one failing workload does not end the run
                print(f"{name:11s} {t}T  FAILED: {str(e)[-300:]}", flush=True)
                rows.append({"workload": name, "threads": t, "error": str(e)[-2000:]})
                continue
            e = statistics.median([x["median_ms"] for x in recs["engine"]])
            tt = statistics.median([x["median_ms"] for x in recs["torch"]])
            spread = {s: [min(x["min_ms"] for x in recs[s]), max(x["max_ms"] for x in recs[s])] for s in recs}
            row = {"workload": name, "threads": t, "engine_ms": e, "torch_ms": tt, "ratio": round(e / tt, 3),
                   "engine_spread": spread["engine"], "torch_spread": spread["torch"],
                   "engine_cpu_ms": recs["engine"][0]["cpu_ms"], "torch_cpu_ms": recs["torch"][0]["cpu_ms"],
                   "engine_blas": _blas(recs["engine"][0]), "records": recs}
            rows.append(row)
            print(f"{name:11s} {t}T  engine {e:8.2f} ms [{row['engine_spread'][0]:.1f}-{row['engine_spread'][1]:.1f}]"
                  f"  torch {tt:8.2f} ms [{row['torch_spread'][0]:.1f}-{row['torch_spread'][1]:.1f}]"
                  f"  ratio {e / tt:5.2f}x  cpu/step {row['engine_cpu_ms']:.1f} vs {row['torch_cpu_ms']:.1f} ms"
                  f"  blas {row['engine_blas']}  load {recs['engine'][-1]['load_after']}", flush=True)
    return rows


def _env(spec: str) -> dict:
    """KEY=VAL,... as a dict (KEY= unsets KEY in the child)."""
    return dict(kv.split("=", 1) for kv in spec.split(",") if kv)


def bench_memory(args: argparse.Namespace, names: list) -> list:
    from bench.engine_models import MEMORY_WORKLOADS

    rows = []
    for name in names:
        if name not in MEMORY_WORKLOADS and not args.only:
            continue
        rec = {}
        for side in ("engine", "torch"):
            rss = run_child(side, name, 1, "rss", args)
            tr = run_child(side, name, 1, "trace", args)
            rec[side] = {"rss_peak_mb": rss["rss_peak_mb"], "rss_base_mb": rss["rss_base_mb"],
                         "tracemalloc_peak_mb": tr["tracemalloc_peak_mb"]}
        ratio = rec["engine"]["rss_peak_mb"] / max(rec["torch"]["rss_peak_mb"], 0.1)
        rows.append({"workload": name, **rec, "rss_ratio": round(ratio, 2)})
        print(f"{name:11s} peak RSS of 3 steps: engine {rec['engine']['rss_peak_mb']:7.1f} MB  "
              f"torch {rec['torch']['rss_peak_mb']:7.1f} MB  ratio {ratio:4.2f}x   tracemalloc peak: engine "
              f"{rec['engine']['tracemalloc_peak_mb']:.1f} MB, torch {rec['torch']['tracemalloc_peak_mb']:.1f} MB "
              "(torch's allocator is not traced)", flush=True)
    return rows


def bench_neighbour(args: argparse.Namespace, name: str, threads: list, extra_env: dict) -> list:
    """torch alone vs torch beside an engine process, torch after engine use in one process, and
    torch in the old 3/3 alternation; plus an engine process at 50% duty: cores it keeps busy."""
    rows = []
    for t in threads:
        alone = run_child("torch", name, t, "time", args)
        neigh = run_child("engine", name, t, "spin", args, extra_env, wait=False)
        time.sleep(2.0)  # let it import and warm up
        beside = run_child("torch", name, t, "time", args)
        neigh_rec = _result(neigh)
        after = run_child("torch", name, t, "after_engine", args, extra_env)
        alt = run_child("torch", name, t, "alternate", args, extra_env)
        duty = run_child("engine", name, t, "spin", argparse.Namespace(**{**vars(args), "duty": 0.5}), extra_env)
        row = {"workload": name, "threads": t, "env": extra_env, "torch_alone_ms": alone["median_ms"],
               "torch_beside_engine_ms": beside["median_ms"], "torch_after_engine_ms": after["median_ms"],
               "torch_alternating_ms": alt["median_ms"], "engine_neighbour": neigh_rec,
               "engine_half_duty_cores": duty["cores_busy"], "load": [alone["load_before"], duty["load_after"]]}
        rows.append(row)
        print(f"{name} {t}T env {extra_env or '{}'}: torch alone {alone['median_ms']:.2f} ms, beside an engine "
              f"process {beside['median_ms']:.2f} (engine used {neigh_rec['cores_busy']} cores), after engine use "
              f"{after['median_ms']:.2f}, alternating 3/3 {alt['median_ms']:.2f}; engine at 50% duty keeps "
              f"{duty['cores_busy']} cores busy; load {row['load']}", flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated workloads (bench/engine_models.py)")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=2, help="subprocesses per side and workload")
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--block-s", type=float, default=1.0)
    ap.add_argument("--warm-s", type=float, default=0.5)
    ap.add_argument("--extra", action="store_true",
                    help="also the per-op, matmul, chain, conv and loader workloads (engine_models.EXTRA)")
    ap.add_argument("--memory", action="store_true", help="peak memory instead of speed")
    ap.add_argument("--neighbour", default="", help="workload for the neighbour-effect measurement")
    ap.add_argument("--neighbour-env", default="", help="KEY=VAL,... for the engine processes (KEY= unsets)")
    ap.add_argument("--engine-env", default="", help="KEY=VAL,... for the engine side's processes (speed runs)")
    ap.add_argument("--json", default="")
    # child-only arguments
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--side", default="engine", help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="", help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=8.0, help=argparse.SUPPRESS)
    ap.add_argument("--duty", type=float, default=1.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        args.threads = int(args.threads)
        child(args)
        return
    sys.path.insert(0, str(ROOT))
    from bench.engine_models import EXTRA, TARGETS

    every = list(TARGETS) + list(EXTRA)
    names = [n for n in (every if args.extra else TARGETS) if not args.only or n in args.only.split(",")]
    threads = [int(t) for t in args.threads.split(",")]
    meta = machine()
    print(f"machine: {meta['cpu']}, {meta['cpus']} cpus; numpy {meta['numpy']}, torch {meta.get('torch')}; "
          f"{meta['uptime']}; OPENBLAS_CORETYPE={meta['OPENBLAS_CORETYPE']} "
          f"OPENBLAS_L2_SIZE={meta['OPENBLAS_L2_SIZE']}", flush=True)
    out: dict = {"meta": meta}
    if args.neighbour:
        out["neighbour"] = bench_neighbour(args, args.neighbour, threads, _env(args.neighbour_env))
    elif args.memory:
        out["memory"] = bench_memory(args, names)
    else:
        out["speed"] = bench_speed(args, names, threads)
    out["meta"]["load_avg_end"] = load_avg()
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
