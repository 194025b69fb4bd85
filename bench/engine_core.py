"""engine core vs torch, side by side in one process: three forward+backward workloads.

Kept for the GPU check (``--device cuda`` in scripts/gpu_check.sh). On the CPU, timing both
libraries in one process lets the engine's BLAS threads slow torch (issue 17): CPU figures
come from bench/harness.py, where these workloads are ``--extra`` ones.

    python bench/engine_core.py [--device cpu|cuda] [--repeat 5] [--json out.json]
                                [--only small,matmul,chain] [--torch-threads N]

1. small:  (a * b).sum().backward() on 100-element float32 tensors (per-op overhead)
2. matmul: (A @ B).backward(G) for 1024x1024 float32 (BLAS-bound)
3. chain:  a 50-op elementwise chain on 1M float32 elements, then sum().backward()

Each figure is the median (and the min) over ``--repeat`` timed loops, engine and torch
loops interleaved so that load on a shared machine falls on both (seconds per iteration),
plus the process CPU time per iteration (robust to load for single-threaded work; for
torch's OpenMP threads it includes their spinning). torch runs with its default thread count, engine with numpy's
(OpenBLAS threads for the matmul); the machine's details are printed first.
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

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

import engine


def _sync(lib, device):
    if device == "cuda":
        lib.cuda.synchronize()


def _calibrate(fn, lib, device, min_time=0.2):
    """A loop length that runs at least ``min_time`` seconds."""
    fn()
    _sync(lib, device)
    n = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        _sync(lib, device)
        if time.perf_counter() - t0 >= min_time or n >= 1 << 20:
            return n
        n *= 2


def _loop(fn, lib, device, n, cpu=None):
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        fn()
    _sync(lib, device)
    if cpu is not None:
        cpu.append((time.process_time() - c0) / n)
    return (time.perf_counter() - t0) / n


def _time_pair(fe, ft, te_lib, tt_lib, device, torch_dev, repeat):
    """Interleaved timing (engine loop, torch loop, engine loop, ...) so that load from other
    processes on a shared machine hits both sides alike; median and min per side."""
    ne = _calibrate(fe, te_lib, device)
    nt = _calibrate(ft, tt_lib, torch_dev)
    re, rt, ce, ct = [], [], [], []
    for _ in range(repeat):
        re.append(_loop(fe, te_lib, device, ne, ce))
        rt.append(_loop(ft, tt_lib, torch_dev, nt, ct))
    return ((statistics.median(re), min(re), statistics.median(ce)),
            (statistics.median(rt), min(rt), statistics.median(ct)))


def small(lib, device):
    rng = np.random.default_rng(0)
    a = lib.tensor(rng.standard_normal(100, dtype=np.float32), device=device, requires_grad=True)
    b = lib.tensor(rng.standard_normal(100, dtype=np.float32), device=device, requires_grad=True)

    def step():
        a.grad = None
        b.grad = None
        (a * b).sum().backward()
    return step


def matmul(lib, device, n=1024):
    rng = np.random.default_rng(0)
    A = lib.tensor(rng.standard_normal((n, n), dtype=np.float32), device=device, requires_grad=True)
    B = lib.tensor(rng.standard_normal((n, n), dtype=np.float32), device=device, requires_grad=True)
    G = lib.tensor(rng.standard_normal((n, n), dtype=np.float32), device=device)

    def step():
        A.grad = None
        B.grad = None
        (A @ B).backward(G)
    return step


CHAIN = [lambda y, x: y * 1.01, lambda y, x: y + 0.1, lambda y, x: y.tanh(),
         lambda y, x: y * x, lambda y, x: y.sigmoid(), lambda y, x: y - x,
         lambda y, x: y.relu(), lambda y, x: y.exp(), lambda y, x: y / 1.5,
         lambda y, x: y.sin()]


def chain(lib, device, n=1_000_000, length=50):
    rng = np.random.default_rng(0)
    x = lib.tensor(rng.uniform(-1, 1, n).astype(np.float32), device=device, requires_grad=True)

    def step():
        x.grad = None
        y = x
        for i in range(length):
            y = CHAIN[i % len(CHAIN)](y, x)
        y.sum().backward()
    return step


def machine() -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__,
            "engine_malloc_tuned": getattr(engine.backend, "MALLOC_TUNED", None),
            "loadavg_before": os.getloadavg(),
            "platform": platform.platform(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        from threadpoolctl import threadpool_info

        info["numpy_blas"] = [{k: d.get(k) for k in ("internal_api", "version", "num_threads",
                                                     "architecture", "threading_layer")}
                              for d in threadpool_info() if d.get("user_api") == "blas"]
    except ImportError:
        pass
    try:
        info["lscpu"] = subprocess.run(["lscpu"], capture_output=True, text=True,
                                       check=False).stdout.splitlines()[:10]
    except OSError:
        info["lscpu"] = []
    return info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--only", default=None, help="comma list of small,matmul,chain")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="torch.set_num_threads (default: torch's own, 2 on the dev box)")
    args = ap.parse_args()
    import torch

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)

    info = machine()
    info["torch"] = torch.__version__
    info["torch_threads"] = torch.get_num_threads()
    for k, v in info.items():
        if k == "lscpu":
            for line in v:
                print("  " + line)
        else:
            print(f"{k}: {v}")
    torch_dev = args.device if (args.device == "cpu" or torch.cuda.is_available()) else "cpu"
    results = {}
    names = (args.only or "small,matmul,chain").split(",")
    for name in names:
        make = {"small": small, "matmul": matmul, "chain": chain}[name]
        (te, te_min, ce), (tt, tt_min, ct) = _time_pair(
            make(engine, args.device), make(torch, torch_dev), engine, torch, args.device,
            torch_dev, args.repeat)
        results[name] = {"engine_s": te, "torch_s": tt, "ratio": te / tt,
                         "engine_min_s": te_min, "torch_min_s": tt_min,
                         "ratio_min": te_min / tt_min, "engine_cpu_s": ce, "torch_cpu_s": ct,
                         "torch_device": torch_dev}
        print(f"{name:7s} engine {te * 1e3:10.4f} ms   torch({torch_dev}) {tt * 1e3:10.4f} ms   "
              f"engine/torch {te / tt:6.2f}x   (min {te_min * 1e3:.4f} vs {tt_min * 1e3:.4f} ms "
              f"= {te_min / tt_min:.2f}x; CPU {ce * 1e3:.4f} vs {ct * 1e3:.4f} ms)", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "device": args.device, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
