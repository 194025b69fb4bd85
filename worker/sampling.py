"""The order in which a job sees its training samples, resumable mid-epoch."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from engine.utils.data import Sampler


class EpochSampler(Sampler):
    """A fresh permutation of ``range(n)`` per epoch, drawn from ``(seed, epoch)`` alone,
    so the position (epoch, samples consumed) is all that exact resume has to remember
    (the idea of torch's DistributedSampler.set_epoch)."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed
        self.epoch, self.start = 1, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        perm = np.random.default_rng([self.seed, self.epoch]).permutation(self.n)
        return iter(perm[self.start:].tolist())

    def __len__(self) -> int:
        return self.n - self.start
