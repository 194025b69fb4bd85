"""Benchmark: engine.optim.Adam step and DataLoader throughput vs torch, same process (CPU).

Workloads (issue 5 targets in brackets):
  adam_step   Adam.step() over a 10M-parameter model (8 tensors), float32 grads set     [<= 1.5x torch]
  loader      one shuffled epoch of 64x1x28x28 batches from an in-memory TensorDataset
              of 60000 samples, num_workers=0                                             [<= 1.0x torch]

Run: python bench/engine_optim_data.py [--repeat 5] [--json out.json] [--torch-threads 1]
Results are recorded in bench/README.md ("optim and data").
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `import engine`

SHAPES = [(2048, 1024)] * 4 + [(1024, 1024)] * 2 + [(1000, 1000)] * 2  # 10.48M parameters


def _median_ms(fn, repeat: int, inner: int = 3) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        times.append((time.perf_counter() - t0) / inner * 1e3)
    return statistics.median(times)


def adam_step(lib, rng, **kw):
    import engine

    params = []
    for s in SHAPES:
        w = rng.standard_normal(s).astype(np.float32)
        g = rng.standard_normal(s).astype(np.float32)
        if lib is engine:
            p = engine.nn.Parameter(engine.tensor(w))
            p.grad = engine.tensor(g)
        else:
            p = lib.nn.Parameter(lib.tensor(w))
            p.grad = lib.tensor(g)
        params.append(p)
    opt = lib.optim.Adam(params, lr=1e-3, **kw)
    return opt.step


def loader_epoch(lib, rng):
    x = rng.standard_normal((60000, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 60000)
    ds = lib.utils.data.TensorDataset(lib.tensor(x), lib.tensor(y))
    loader = lib.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=0)

    def epoch():
        n = 0
        for xb, _ in loader:
            n += xb.shape[0]
        assert n == 60000

    return epoch


def machine() -> dict:
    info = {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
            "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE")}
    try:
        info["load_avg"] = os.getloadavg()
    except OSError:
        pass
    return info


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--json")
    ap.add_argument("--torch-threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    args = ap.parse_args()
    import torch

    import engine

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    results = {"machine": machine() | {"torch": torch.__version__, "torch_threads": torch.get_num_threads()}}
    rows = [
        ("adam_step", "engine", lambda: adam_step(engine, np.random.default_rng(0)), 1),
        ("adam_step", "torch", lambda: adam_step(torch, np.random.default_rng(0)), 1),
        ("adam_step", "torch foreach", lambda: adam_step(torch, np.random.default_rng(0), foreach=True), 1),
        ("loader", "engine", lambda: loader_epoch(engine, np.random.default_rng(0)), 1),
        ("loader", "torch", lambda: loader_epoch(torch, np.random.default_rng(0)), 1),
    ]
    for name, side, build, inner in rows:
        fn = build()
        ms = _median_ms(fn, args.repeat, inner)
        results.setdefault(name, {})[side] = ms
        print(f"{name:10s} {side:14s} {ms:9.2f} ms", flush=True)
        del fn
    for name in ("adam_step", "loader"):
        r = results[name]
        print(f"{name}: engine / torch = {r['engine'] / r['torch']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
