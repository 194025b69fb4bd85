"""How a job's dataset heads become engine tensors on the training device."""
from __future__ import annotations

import numpy as np

import engine


def heads_of(targets: dict[str, np.ndarray], head: str, task: str, device: str = "cpu") -> engine.Tensor:
    """One dataset head as an engine tensor: int64 class indices or float32 values."""
    y = targets[head]
    if task == "classification":
        return engine.tensor(y.astype(np.int64), dtype=engine.int64, device=device)
    return engine.tensor(y.astype(np.float32), dtype=engine.float32, device=device)
