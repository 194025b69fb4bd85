"""How a job's samples are divided: a seeded training/validation split, and each
data-parallel rank's share of an epoch. The planner counts with the same rules the worker
draws with, so the plan's step count is the loop's."""
from __future__ import annotations

import numpy as np


def validation_count(n: int, validation_split: float) -> int:
    """``round(n * validation_split)``, at least one sample when splitting at all (n > 1)."""
    n_val = round(n * validation_split)
    if validation_split > 0 and n_val == 0 and n > 1:
        n_val = 1
    return n_val


def split_indices(n: int, validation_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, validation) sample indices: the first ``validation_count`` entries of a
    permutation seeded by ``seed`` validate, the rest train. Stable across versions so that
    a checkpoint's reported validation accuracy can be reproduced by users."""
    perm = np.random.default_rng(seed).permutation(n)
    n_val = validation_count(n, validation_split)
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def shard(indices: np.ndarray, rank: int, world: int) -> np.ndarray:
    """A rank's share of an epoch's order: every ``world``-th sample, so that global batch k
    (batch k of every rank) is the same sample set as batch k of a single device with a
    ``world`` times larger batch. The tail that does not divide evenly is dropped."""
    if world == 1:
        return indices
    usable = len(indices) - len(indices) % world
    return indices[:usable][rank::world]


def rank_samples(n_train: int, world: int) -> int:
    """How many samples ``shard`` gives each rank."""
    return n_train // world
