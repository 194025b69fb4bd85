"""Benchmark: engine.nn forward+backward vs torch CPU, side by side in one process.

Workloads (float32, issue 4 targets in brackets):
  conv      Conv2d(32->64, 3x3, padding 1) fwd+bwd on 64x32x14x14           [<= 2x torch]
  cnn_step  SimpleCNN training step, batch 64, 1x28x28, Adam                 [<= 2x]
  lstm      LSTM(32 -> 128) fwd+bwd, seq 50, batch 64                        [<= 2x]
  encoder   TransformerEncoderLayer(d_model 128, 4 heads) fwd+bwd, 32x64     [<= 1.5x]

Run: python bench/engine_nn.py [--repeat 5] [--only conv,lstm] [--threads 1] [--json out.json] [--profile NAME]
(--profile runs cProfile over the engine side of one workload and prints the top entries).
Results are recorded in bench/README.md ("engine nn").
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `import engine`


def _interleaved_ms(fns: list, repeat: int, inner: int = 3) -> list:
    """Median ms per call of each function, timed in alternation so load drift hits all alike."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeat):
        for fn, ts in zip(fns, times):
            t0 = time.perf_counter()
            for _ in range(inner):
                fn()
            ts.append((time.perf_counter() - t0) / inner * 1e3)
    return [statistics.median(ts) for ts in times]


def simple_cnn(m):
    """The seed's SimpleCNN with padding=1 convolutions and 2x2 max-pooling (1x28x28 -> 10)."""
    return m.Sequential(m.Conv2d(1, 32, 3, padding=1), m.ReLU(), m.MaxPool2d(2), m.Conv2d(32, 64, 3, padding=1),
                        m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(64 * 7 * 7, 128), m.ReLU(),
                        m.Linear(128, 10))


def workloads(rng):
    """name -> builder(lib) returning a zero-argument step function; lib is engine or torch."""
    x_conv = rng.standard_normal((64, 32, 14, 14)).astype(np.float32)
    x_img = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y_img = rng.integers(0, 10, 64)
    x_seq = rng.standard_normal((50, 64, 32)).astype(np.float32)
    x_tok = rng.standard_normal((64, 32, 128)).astype(np.float32)

    def conv(lib):
        m = lib.nn.Conv2d(32, 64, 3, padding=1)
        x = lib.tensor(x_conv, requires_grad=True)

        def step():
            x.grad = None
            m.zero_grad()
            m(x).sum().backward()
        return step

    def cnn_step(lib):
        m = simple_cnn(lib.nn)
        opt = lib.optim.Adam(m.parameters())
        x, y = lib.tensor(x_img), lib.tensor(y_img)

        def step():
            opt.zero_grad()
            lib.nn.functional.cross_entropy(m(x), y).backward()
            opt.step()
        return step

    def lstm(lib):
        m = lib.nn.LSTM(32, 128)
        x = lib.tensor(x_seq, requires_grad=True)

        def step():
            x.grad = None
            m.zero_grad()
            out, (h, c) = m(x)
            (out.sum() + h.sum() + c.sum()).backward()
        return step

    def encoder(lib):
        m = lib.nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.0)
        x = lib.tensor(x_tok, requires_grad=True)

        def step():
            x.grad = None
            m.zero_grad()
            m(x).sum().backward()
        return step

    return {"conv": conv, "cnn_step": cnn_step, "lstm": lstm, "encoder": encoder}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--json", default="")
    ap.add_argument("--profile", default="")
    ap.add_argument("--threads", type=int, default=0,
                    help="BLAS/OpenMP threads for both sides (0: library defaults); 1 is steadier on a shared box")
    args = ap.parse_args()
    import torch

    import engine

    if args.threads:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    wl = workloads(rng)
    if args.profile:
        import cProfile
        import pstats

        step = wl[args.profile](engine)
        step()
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(5):
            step()
        prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        return
    names = [n for n in wl if not args.only or n in args.only.split(",")]
    results = {}
    for name in names:
        e, t = _interleaved_ms([wl[name](engine), wl[name](torch)], args.repeat)
        results[name] = {"engine_ms": round(e, 2), "torch_ms": round(t, 2), "ratio": round(e / t, 2)}
        print(f"{name:9s} engine {e:8.2f} ms   torch {t:8.2f} ms   ratio {e / t:5.2f}x", flush=True)
    if args.json:
        meta = {"python": platform.python_version(), "numpy": np.__version__, "torch": torch.__version__,
                "machine": platform.machine(), "processor": platform.processor(),
                "torch_threads": torch.get_num_threads(), "threads_arg": args.threads}
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
