"""How a job's dataset becomes train and validation tensors."""
from __future__ import annotations

import numpy as np


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sample indices: the first ``round(n * validation_split)`` entries
    of a permutation seeded by ``seed`` validate, the rest train. Stable across versions so
    that a checkpoint's reported validation accuracy can be reproduced by users."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = round(n * validation_split)
    if validation_split > 0 and n_val == 0 and n > 1:
        n_val = 1
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def heads_of(targets: dict[str, np.ndarray], head: str, task: str, device: str = "cpu"):
    """One dataset head as an engine tensor: int64 class indices or float32 values."""
    import engine

    y = targets[head]
    if task == "classification":
        return engine.tensor(y.astype(np.int64), dtype=engine.int64, device=device)
    return engine.tensor(y.astype(np.float32), dtype=engine.float32, device=device)


def pick_device(setting: str) -> str:
    """'cuda' when asked for, or on 'auto' when cupy sees a GPU; else 'cpu'. A worker process
    uses one GPU (pin it with CUDA_VISIBLE_DEVICES), so two jobs never share one."""
    import engine

    if setting == "cuda" or (setting == "auto" and engine.cuda.is_available()):
        return "cuda"
    return "cpu"
