"""The order in which a job sees its training samples, resumable mid-epoch."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from engine.utils.data import Sampler


class EpochSampler(Sampler):
    """A fresh permutation of ``range(n)`` per epoch, drawn from ``(seed, epoch)`` alone,
    so the position (epoch, samples consumed) is all that exact resume has to remember
    (the idea of torch's DistributedSampler.set_epoch). ``shard`` picks a data-parallel
    rank's part of each epoch's order."""

    def __init__(self, n: int, seed: int, shard=lambda order: order):
        self.n, self.seed, self.shard = n, seed, shard
        self.epoch, self.start = 1, 0
        self.length = len(shard(np.arange(n)))

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        perm = self.shard(np.random.default_rng([self.seed, self.epoch]).permutation(self.n))
        return iter(perm[self.start:].tolist())

    def __len__(self) -> int:
        return self.length - self.start
