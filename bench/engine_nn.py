"""Benchmark: engine.nn forward+backward and optimizer step vs torch (CPU), small CNN and MLP.

Run: python bench/engine_nn.py   (prints ms per training step for engine and torch)

Recorded (2-core CPU container, numpy 2.4, torch 2.13 CPU, float32, Adam):
    engine CNN 64x1x28x28 train step: 127.5 ms
    torch  CNN 64x1x28x28 train step:  18.7 ms
"""
from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repo root, for `import engine`


def _time(fn, reps: int = 5) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    return (time.perf_counter() - t0) / reps * 1e3


def main() -> None:
    import engine
    from engine import nn

    try:
        import torch
    except ImportError:
        torch = None
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 1, 28, 28)).astype(np.float32)
    y = rng.integers(0, 10, 64)

    def cnn(m):
        return m.Sequential(m.Conv2d(1, 32, 3, padding=1), m.ReLU(), m.MaxPool2d(2), m.Conv2d(32, 64, 3, padding=1),
                            m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(64 * 7 * 7, 128), m.ReLU(),
                            m.Linear(128, 10))

    em = cnn(nn)
    eopt = engine.optim.Adam(em.parameters())
    ex, ey = engine.tensor(x), engine.tensor(y)

    def estep():
        eopt.zero_grad()
        nn.functional.cross_entropy(em(ex), ey).backward()
        eopt.step()

    print(f"engine CNN 64x1x28x28 train step: {_time(estep):.1f} ms")
    if torch is not None:
        tm = cnn(torch.nn)
        topt = torch.optim.Adam(tm.parameters())
        tx, ty = torch.tensor(x), torch.tensor(y)

        def tstep():
            topt.zero_grad()
            torch.nn.functional.cross_entropy(tm(tx), ty).backward()
            topt.step()

        print(f"torch  CNN 64x1x28x28 train step: {_time(tstep):.1f} ms")


if __name__ == "__main__":
    main()
