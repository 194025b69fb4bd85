"""DataLoader worker processes: the worker loop and the main-process iterator.

Like torch: the main process runs the sampler and sends index batches to the
workers' index queues (at most ``prefetch_factor`` per worker in flight, assigned
round-robin); each worker fetches and collates, then puts ``(send_idx, batch)`` on
one shared result queue; the iterator yields batches in sampler order. Worker ``i``
is seeded with ``base_seed + i`` (Python ``random``, engine's default generator,
numpy's legacy global), where ``base_seed`` is drawn from the loader's generator
once per epoch. Batches cross the process boundary as numpy arrays (tensors are
unwrapped before and rewrapped after); nothing else of ours is pickled.
"""
from __future__ import annotations

import collections.abc
import itertools
import os
import queue
import random
import traceback
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.tensor import Tensor

__all__ = ["WorkerInfo", "get_worker_info"]

_POLL_S = 1.0


@dataclass(frozen=True)
class WorkerInfo:
    """What a worker knows about itself (torch.utils.data.get_worker_info())."""

    id: int
    num_workers: int
    seed: int
    dataset: Any


_worker_info: WorkerInfo | None = None


def get_worker_info() -> WorkerInfo | None:
    """The current worker's WorkerInfo; None in the main process."""
    return _worker_info


# ------------------------------------------------------------------ batch transport
class _Arr:
    """A tensor's array in transit (so the receiver rebuilds a Tensor, not an ndarray)."""

    __slots__ = ("a",)

    def __init__(self, a: np.ndarray) -> None:
        self.a = a


def _same_mapping(like: dict, items: dict) -> dict:
    if type(like) is dict:
        return items
    try:
        return type(like)(items)
    except TypeError:
        return items


def _pack(obj: Any) -> Any:
    if isinstance(obj, Tensor):
        from engine.backend import to_numpy

        return _Arr(to_numpy(obj._data))
    if isinstance(obj, dict):
        return _same_mapping(obj, {k: _pack(v) for k, v in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_pack(v) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_pack(v) for v in obj)
    return obj


def _unpack(obj: Any, pin: bool = False) -> Any:
    if isinstance(obj, _Arr):
        return Tensor._wrap(_pinned(obj.a) if pin else obj.a)
    if isinstance(obj, dict):
        return _same_mapping(obj, {k: _unpack(v, pin) for k, v in obj.items()})
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_unpack(v, pin) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_unpack(v, pin) for v in obj)
    return obj


def _pinned(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` in page-locked host memory (cupy), for fast asynchronous uploads."""
    from engine.backend import _get_cupy

    cp = _get_cupy()
    if cp is None:
        return a
    import cupyx

    out = cupyx.empty_pinned(a.shape, a.dtype)
    out[...] = a
    return out


def pin_batch(batch: Any) -> Any:
    """Moves the host arrays of a batch's CPU tensors into pinned memory (no-op without cupy)."""
    return _unpack(_pack(batch), pin=True)


class _WorkerError:
    """An exception raised in a worker, re-raised in the main process with its traceback."""

    def __init__(self, worker_id: int, exc: BaseException) -> None:
        self.exc_type = type(exc)
        self.msg = (f"Caught {type(exc).__name__} in DataLoader worker process {worker_id}.\nOriginal "
                    + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))

    def reraise(self) -> None:
        try:
            err = self.exc_type(self.msg)
        except Exception:  # noqa: BLE001 - a type whose constructor wants other arguments
            err = RuntimeError(self.msg)
        raise err


class _IterEnd:
    """A worker's IterableDataset replica is exhausted."""


# ------------------------------------------------------------------ worker side
def _seed_worker(seed: int) -> None:
    from engine.random import manual_seed

    random.seed(seed)
    manual_seed(seed)
    np.random.seed(np.random.SeedSequence(seed).generate_state(4))


def _worker_loop(fetch: Any, dataset: Any, index_queue: Any, result_queue: Any, worker_id: int,
                 num_workers: int, base_seed: int, init_fn: Any) -> None:
    """Runs in a worker process until it receives None (or its parent disappears)."""
    global _worker_info
    seed = base_seed + worker_id
    _seed_worker(seed)
    _worker_info = WorkerInfo(worker_id, num_workers, seed, dataset)
    parent = os.getppid()
    init_error = None
    try:
        if init_fn is not None:
            init_fn(worker_id)
    except Exception as ex:  # noqa: BLE001 - reported to the main process with the first task
        init_error = _WorkerError(worker_id, ex)
    stream = None
    tag = None
    while True:
        try:
            task = index_queue.get(timeout=_POLL_S)
        except queue.Empty:
            if os.getppid() != parent:
                return
            continue
        if task is None:
            return
        epoch, send_idx, index = task
        if init_error is not None:
            result_queue.put((epoch, send_idx, init_error))
            continue
        try:
            if fetch.iterable:
                if stream is None or tag != epoch:
                    stream, tag = iter(dataset), epoch
                data = fetch.next_batch(stream)
            else:
                data = _pack(fetch(index))
        except Exception as ex:  # noqa: BLE001 - any dataset error goes to the main process
            data = _WorkerError(worker_id, ex)
        result_queue.put((epoch, send_idx, data))
        del data


class _Fetcher:
    """Turns an index batch (or a request, for an IterableDataset) into a collated batch."""

    def __init__(self, dataset: Any, collate_fn: Any, auto_collation: bool, fast: bool,
                 iterable: bool, batch_size: int | None, drop_last: bool) -> None:
        self.dataset, self.collate_fn, self.auto = dataset, collate_fn, auto_collation
        self.fast, self.iterable, self.batch_size, self.drop_last = fast, iterable, batch_size, drop_last

    def __call__(self, index: Any) -> Any:
        if self.fast:
            return [Tensor._wrap(t._data[index]) for t in self.dataset.tensors]
        if self.auto:
            return self.collate_fn([self.dataset[i] for i in index])
        return self.collate_fn(self.dataset[index])

    def next_batch(self, stream: Any) -> Any:
        if self.batch_size is None:
            try:
                return _pack(self.collate_fn(next(stream)))
            except StopIteration:
                return _IterEnd()
        items = list(itertools.islice(stream, self.batch_size))
        if not items or (self.drop_last and len(items) < self.batch_size):
            return _IterEnd()
        return _pack(self.collate_fn(items))


# ------------------------------------------------------------------ main side
class _MultiProcessIter(collections.abc.Iterator):
    """One epoch over the workers (reused across epochs with persistent_workers)."""

    def __init__(self, loader: Any) -> None:
        import multiprocessing

        self.loader = loader
        ctx = loader.multiprocessing_context
        if ctx is None:
            ctx = multiprocessing.get_context()
        elif isinstance(ctx, str):
            ctx = multiprocessing.get_context(ctx)
        n = loader.num_workers
        self.fetch = _Fetcher(loader.dataset, loader.collate_fn, loader._auto_collation, loader._fast_path(),
                              loader._iterable, loader.batch_size, loader.drop_last)
        self.result_queue = ctx.Queue()
        self.index_queues = []
        self.workers = []
        self.epoch = 0
        self._shutdown = False
        self._prepare_epoch()  # the sampler draws first, so the order equals num_workers=0's
        base_seed = loader._draw_base_seed()
        for i in range(n):
            q = ctx.Queue()
            w = ctx.Process(target=_worker_loop, daemon=True,
                            args=(self.fetch, loader.dataset, q, self.result_queue, i, n, base_seed,
                                  loader.worker_init_fn))
            w.start()
            self.index_queues.append(q)
            self.workers.append(w)
        self._prime()

    def _prepare_epoch(self) -> None:
        """Persistent workers keep their seeds and RNG streams across epochs, as in torch."""
        self.epoch += 1
        loader = self.loader
        if loader._iterable:
            tasks = itertools.repeat(None)
        elif self.fetch.fast:
            tasks = loader.batch_sampler._index_batches()
        elif loader._auto_collation:
            tasks = iter(loader.batch_sampler)
        else:
            tasks = iter(loader.sampler)
        first = next(tasks, _IterEnd)
        self.tasks = iter(()) if first is _IterEnd else itertools.chain([first], tasks)
        self.active = [True] * loader.num_workers
        self.worker_cycle = itertools.cycle(range(len(self.active)))
        self.send_idx = 0
        self.rcvd_idx = 0
        self.task_worker: dict[int, int] = {}
        self.buffer: dict[int, Any] = {}
        self.exhausted = False

    def _prime(self) -> None:
        for _ in range(self.loader.prefetch_factor * len(self.workers)):
            self._dispatch()

    def __len__(self) -> int:
        return len(self.loader)

    def reset(self) -> _MultiProcessIter:
        self._prepare_epoch()
        self._prime()
        return self

    def _dispatch(self) -> None:
        if self.exhausted or not any(self.active):
            return
        try:
            index = next(self.tasks)
        except StopIteration:
            self.exhausted = True
            return
        for _ in range(len(self.workers)):
            wid = next(self.worker_cycle)
            if self.active[wid]:
                break
        self.index_queues[wid].put((self.epoch, self.send_idx, index))
        self.task_worker[self.send_idx] = wid
        self.send_idx += 1

    def _get(self) -> tuple:
        timeout = self.loader.timeout
        while True:
            try:
                return self.result_queue.get(timeout=timeout if timeout > 0 else _POLL_S)
            except queue.Empty:
                if timeout > 0:
                    self._close()
                    raise RuntimeError(f"DataLoader timed out after {timeout} seconds") from None
                dead = [w.pid for w in self.workers if not w.is_alive()]
                if dead:
                    self._close()
                    raise RuntimeError(f"DataLoader worker (pid(s) {', '.join(map(str, dead))}) exited "
                                       "unexpectedly") from None

    def __next__(self) -> Any:
        while True:
            while self.rcvd_idx < self.send_idx and self.task_worker.get(self.rcvd_idx) is None:
                self.rcvd_idx += 1  # a slot of a worker whose stream ended
            if self.rcvd_idx >= self.send_idx:
                if not self.loader.persistent_workers:
                    self._close()
                raise StopIteration
            if self.rcvd_idx in self.buffer:
                data = self.buffer.pop(self.rcvd_idx)
                if self.task_worker.pop(self.rcvd_idx) != -1:
                    self._dispatch()
                self.rcvd_idx += 1
                if isinstance(data, _IterEnd):
                    continue
                if isinstance(data, _WorkerError):
                    self._close()
                    data.reraise()
                return _unpack(data, pin=self.loader._pin)
            epoch, idx, data = self._get()
            if epoch != self.epoch:
                continue  # left over from an abandoned epoch of persistent workers
            if isinstance(data, _IterEnd):
                self.active[self.task_worker[idx]] = False
            if not self.loader.in_order and not isinstance(data, _IterEnd) and not isinstance(data, _WorkerError):
                self.task_worker[idx] = -1
                self.buffer[idx] = _IterEnd()  # consumed out of order; keeps the slot accounting
                self._dispatch()
                return _unpack(data, pin=self.loader._pin)
            self.buffer[idx] = data

    def _close(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True
        for q in self.index_queues:
            try:
                q.put(None)
            except (OSError, ValueError):
                pass
        for w in self.workers:
            w.join(timeout=1)
            if w.is_alive():
                w.terminate()
        for q in self.index_queues + [self.result_queue]:
            q.cancel_join_thread()
            q.close()
        if self.loader._mp_iter is self:
            self.loader._mp_iter = None

    def __del__(self) -> None:
        import contextlib

        with contextlib.suppress(Exception):  # interpreter shutdown: queues may be gone
            self._close()
