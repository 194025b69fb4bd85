"""DataLoader: batches from a dataset through a sampler and a collate function.

``num_workers > 0`` loads in worker processes (engine.utils.data._workers), with
torch's ``prefetch_factor``, ``persistent_workers``, ``worker_init_fn``, ``timeout``
and per-worker seeding. ``pin_memory`` puts batches in page-locked host memory when
cupy and a GPU are present (a warning and a no-op otherwise, as torch without an
accelerator). A TensorDataset with the default collate and a built-in sampler takes a
fast path: one fancy-index gather per tensor per batch instead of stacking samples.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from engine.backend import get_array_module
from engine.tensor import Tensor
from engine.utils.data._collate import default_collate, default_convert
from engine.utils.data.dataset import Dataset, IterableDataset, TensorDataset
from engine.utils.data.sampler import BatchSampler, RandomSampler, Sampler, SequentialSampler

__all__ = ["DataLoader"]


def _accelerator() -> bool:
    from engine.backend import cuda_is_available

    return cuda_is_available()


class DataLoader:
    """Iterates over ``dataset`` in batches (torch.utils.data.DataLoader's arguments)."""

    def __init__(self, dataset: Dataset, batch_size: int | None = 1, shuffle: bool | None = None,
                 sampler: Sampler | Iterable | None = None,
                 batch_sampler: Sampler | Iterable | None = None, num_workers: int = 0,
                 collate_fn: Callable[[list], Any] | None = None, pin_memory: bool = False,
                 drop_last: bool = False, timeout: float = 0, worker_init_fn: Callable | None = None,
                 multiprocessing_context: Any = None, generator: Any = None, *,
                 prefetch_factor: int | None = None, persistent_workers: bool = False,
                 pin_memory_device: str = "", in_order: bool = True) -> None:
        if num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if num_workers == 0 and prefetch_factor is not None:
            raise ValueError("prefetch_factor option could only be specified in multiprocessing.let num_workers > 0 "
                             "to enable multiprocessing, otherwise set prefetch_factor to None.")
        if num_workers > 0 and prefetch_factor is None:
            prefetch_factor = 2
        elif prefetch_factor is not None and prefetch_factor < 0:
            raise ValueError("prefetch_factor option should be non-negative")
        if persistent_workers and num_workers == 0:
            raise ValueError("persistent_workers option needs num_workers > 0")
        self.prefetch_factor = prefetch_factor
        self.persistent_workers = persistent_workers
        self.multiprocessing_context = multiprocessing_context
        self.in_order = in_order
        self._mp_iter = None
        self._pin = pin_memory and _accelerator()
        if pin_memory and not self._pin:
            import warnings

            warnings.warn("'pin_memory' argument is set as true but no accelerator is found, then device pinned "
                          "memory won't be used.", stacklevel=2)
        self.dataset = dataset
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)
        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError("DataLoader with IterableDataset: expected unspecified shuffle option, but got "
                                 f"shuffle={shuffle}")
            if sampler is not None or batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified sampler/batch_sampler option")
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, shuffle, sampler, "
                                 "and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually exclusive with drop_last")
        self._custom_sampler = sampler is not None or batch_sampler is not None
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        self._default_collate = collate_fn is None
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation or self._iterable and batch_size else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self) -> bool:
        return self.batch_sampler is not None

    def _fast_path(self) -> bool:
        return (type(self.dataset) is TensorDataset and self._default_collate and not self._custom_sampler
                and self._auto_collation)

    def _draw_base_seed(self) -> int:
        """The workers' base seed for an epoch, from the loader's generator (or the default)."""
        from engine.utils.data.sampler import _np_generator

        return int(_np_generator(self.generator).integers(0, 2**63 - 1))

    def __iter__(self) -> Iterator[Any]:
        if self.num_workers == 0:
            return self._iter_in_process()
        from engine.utils.data._workers import _MultiProcessIter

        if self.persistent_workers and self._mp_iter is not None:
            return self._mp_iter.reset()
        it = _MultiProcessIter(self)
        if self.persistent_workers:
            self._mp_iter = it
        return it

    def _iter_in_process(self) -> Iterator[Any]:
        it = self._iter_batches()
        if not self._pin:
            return it
        from engine.utils.data._workers import pin_batch

        return (pin_batch(b) for b in it)

    def _iter_batches(self) -> Iterator[Any]:
        if self._iterable:
            yield from self._iter_iterable()
        elif self._fast_path():
            tensors = self.dataset.tensors
            for idx in self.batch_sampler._index_batches():
                out = []
                for t in tensors:
                    xp = get_array_module(t._data)
                    out.append(Tensor._wrap(t._data[idx if xp is np else xp.asarray(idx)]))
                yield out
        elif self._auto_collation:
            for indices in self.batch_sampler:
                yield self.collate_fn([self.dataset[i] for i in indices])
        else:
            for i in self.sampler:
                yield self.collate_fn(self.dataset[i])

    def _iter_iterable(self) -> Iterator[Any]:
        if self.batch_size is None:
            for sample in self.dataset:
                yield self.collate_fn(sample)
            return
        batch: list = []
        for sample in self.dataset:
            batch.append(sample)
            if len(batch) == self.batch_size:
                yield self.collate_fn(batch)
                batch = []
        if batch and not self.drop_last:
            yield self.collate_fn(batch)

    def __len__(self) -> int:
        if self._iterable:
            n = len(self.dataset)  # TypeError when the stream has no length, as torch
            if self.batch_size is None:
                return n
            return n // self.batch_size if self.drop_last else -(-n // self.batch_size)
        if self._auto_collation:
            return len(self.batch_sampler)
        return len(self.sampler)
