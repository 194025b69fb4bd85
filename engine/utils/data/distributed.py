"""DistributedSampler (torch.utils.data.distributed): each rank reads its own shard of a dataset.

With ``shuffle`` the permutation is torch's own ``randperm`` under a CPU generator
seeded with ``seed + epoch`` (mt19937 + Fisher-Yates, reproduced in numpy), so
every rank of engine and of PyTorch gets exactly the same indices.
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import numpy as np

from engine.utils.data.sampler import Sampler

__all__ = ["DistributedSampler", "torch_randperm"]


def torch_randperm(n: int, seed: int) -> np.ndarray:
    """``torch.randperm(n, generator=torch.Generator().manual_seed(seed))`` for n < 2**32 / 20."""
    draws = np.random.RandomState(seed & 0xFFFFFFFF).randint(0, 2**32, size=max(n - 1, 0), dtype=np.uint32)
    z = (draws.astype(np.int64) % np.arange(n, 1, -1, dtype=np.int64)).tolist()
    r = list(range(n))
    for i, k in enumerate(z):  # torch's randperm_cpu: swap r[i] with r[i + random() % (n - i)]
        j = i + k
        r[i], r[j] = r[j], r[i]
    return np.asarray(r, dtype=np.int64)


class DistributedSampler(Sampler):
    """Restricts loading to a 1/num_replicas shard of ``dataset``, the same split as torch.

    Args:
        dataset: anything with ``len``.
        num_replicas: the world size (default: from the process group).
        rank: this rank (default: from the process group).
        shuffle: permute the indices, differently each ``set_epoch``.
        seed: the permutation's seed; must be the same on every rank.
        drop_last: drop the tail that does not divide evenly instead of padding by repetition.
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None, rank: int | None = None,
                 shuffle: bool = True, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas is None or rank is None:
            from engine import distributed as dist

            if not dist.is_initialized():
                raise RuntimeError("Requires distributed package to be available")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if rank >= num_replicas or rank < 0:
            raise ValueError(f"Invalid rank {rank}, rank should be in the interval [0, {num_replicas - 1}]")
        self.dataset = dataset
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self.drop_last = drop_last
        n = len(dataset)
        if drop_last and n % num_replicas != 0:
            self.num_samples = math.ceil((n - num_replicas) / num_replicas)
        else:
            self.num_samples = math.ceil(n / num_replicas)
        self.total_size = self.num_samples * num_replicas
        self.shuffle = shuffle
        self.seed = seed

    def __iter__(self) -> Iterator[int]:
        n = len(self.dataset)
        indices = torch_randperm(n, self.seed + self.epoch).tolist() if self.shuffle else list(range(n))
        if not self.drop_last:
            pad = self.total_size - len(indices)
            if pad <= len(indices):
                indices += indices[:pad]
            else:
                indices += (indices * math.ceil(pad / len(indices)))[:pad]
        else:
            indices = indices[:self.total_size]
        assert len(indices) == self.total_size
        indices = indices[self.rank:self.total_size:self.num_replicas]
        assert len(indices) == self.num_samples
        return iter(indices)

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        """Call before each epoch so the shuffle differs between epochs (and agrees across ranks)."""
        self.epoch = epoch
