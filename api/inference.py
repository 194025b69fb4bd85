"""Trained models served by the API process: built from a job's plan, weights from one of its
checkpoints, run in eval mode without gradients, and kept in an LRU cache bounded by the
bytes of their weights (``settings.model_cache_bytes``).

Thread safety: the predict route is a sync route, so it runs in FastAPI's threadpool and
several requests may use the cache and one model at once. The cache's bookkeeping is under
one lock, never held while a model is built; concurrent misses on the same checkpoint build
it once (the others wait for that build). Each model has its own lock around its forward
call: engine's grad mode is thread-local and the eval-mode forwards read (BatchNorm's
running statistics, dropout off) rather than write module state, but engine does not
promise that modules are re-entrant, so calls on one model are serialised while different
models run in parallel (numpy's BLAS still uses every core within one call)."""
from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

import engine
from engine import nn, spec


@dataclass
class LoadedModel:
    """One checkpoint's model, ready for forward calls."""

    checkpoint_id: str
    epoch: int
    step: int
    module: nn.Module
    heads: dict[str, str]  # head name -> task, in the plan's order
    nbytes: int  # bytes of its state_dict (parameters and buffers)
    chunk: int  # samples per forward call
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def predict(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Each head's raw outputs for ``x`` (float32, ``[n, *input_shape]``), as numpy."""
        parts: dict[str, list[np.ndarray]] = {h: [] for h in self.heads}
        with self.lock, engine.no_grad():
            for start in range(0, x.shape[0], self.chunk):
                out = self.module(engine.from_numpy(np.ascontiguousarray(x[start:start + self.chunk])))
                for head in self.heads:
                    o = out[head] if isinstance(out, dict) else out
                    parts[head].append(o.detach().cpu().numpy())
        return {h: p[0] if len(p) == 1 else np.concatenate(p) for h, p in parts.items()}


_counter_lock = threading.Lock()
builds = 0  # models built by load_model in this process (tests and benchmarks read it)


def load_model(plan: dict[str, Any], data: bytes, *, checkpoint_id: str, epoch: int, step: int) -> LoadedModel:
    """Build the plan's model (as the worker does), load the checkpoint's safetensors into it
    (strict: every key, every shape) and put it in eval mode."""
    global builds
    module = spec.build_model(plan["model"], plan["input_shape"], num_classes=plan.get("num_outputs"))
    module.load_state_dict(engine.load(io.BytesIO(data)))
    module.eval()
    with _counter_lock:
        builds += 1
    nbytes = sum(t.numel() * t.element_size() for t in module.state_dict().values())
    heads = {name: h["task"] for name, h in plan["heads"].items()}
    # forward at the job's training batch size (its memory was checked at submit; eval keeps no
    # graph), but at least 32 samples so that batch_size 1 jobs are not called sample by sample
    chunk = max(32, int(plan["training"]["batch_size"]))
    return LoadedModel(checkpoint_id, epoch, step, module, heads, nbytes, chunk)


class _Pending:
    def __init__(self) -> None:
        self.done = threading.Event()


class ModelCache:
    """An LRU of loaded models by checkpoint id, bounded by their total ``nbytes``. A model
    larger than the whole bound is served but not kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, LoadedModel] = OrderedDict()
        self._pending: dict[str, _Pending] = {}
        self._bytes = 0
        self.hits = self.misses = self.evictions = 0

    def get(self, key: str, load: Callable[[], LoadedModel], max_bytes: int) -> LoadedModel:
        """The cached model for ``key``, or ``load()``'s (called once however many threads ask)."""
        while True:
            with self._lock:
                found = self._entries.get(key)
                if found is not None:
                    self._entries.move_to_end(key)
                    self.hits += 1
                    return found
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending()
                    self.misses += 1
                    break
            pending.done.wait()  # another thread builds it; then look again (it may have failed)
        try:
            model = load()
        except BaseException:
            with self._lock:
                del self._pending[key]
            pending.done.set()
            raise
        with self._lock:
            del self._pending[key]
            if model.nbytes <= max_bytes:
                self._entries[key] = model
                self._bytes += model.nbytes
            self._evict(max_bytes)
        pending.done.set()
        return model

    def _evict(self, max_bytes: int) -> None:
        while self._bytes > max_bytes and self._entries:
            _, old = self._entries.popitem(last=False)
            self._bytes -= old.nbytes
            self.evictions += 1

    def keys(self) -> list[str]:
        """Cached checkpoint ids, least recently used first."""
        with self._lock:
            return list(self._entries)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0


cache = ModelCache()  # the API process's one cache


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over dim 1 (the class dimension, as CrossEntropyLoss reads it), in float64."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z
