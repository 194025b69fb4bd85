"""Random numbers: Generator objects and the global default generator.

A Generator wraps a numpy ``np.random.Generator`` (PCG64). Samples are drawn on
the host and moved to the requested device, so one seed gives the same numbers
on CPU and GPU (a deliberate difference from torch, whose CUDA streams differ).

RNG state (``get_rng_state`` / ``Generator.get_state``) is a JSON-serializable dict
``{"bit_generator": "PCG64", "state": {"state": "<int>", "inc": "<int>"},
"has_uint32": 0|1, "uinteger": "<int>"}`` (big integers as decimal strings), so
checkpoints can store it in their JSON metadata for an exact resume.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import backend
from engine.dtypes import get_default_dtype, int64, to_dtype
from engine.tensor import Tensor

__all__ = [
    "Generator",
    "bernoulli",
    "default_generator",
    "get_rng_state",
    "initial_seed",
    "manual_seed",
    "multinomial",
    "normal",
    "normal_",
    "rand",
    "rand_like",
    "randint",
    "randint_like",
    "randn",
    "randn_like",
    "randperm",
    "seed",
    "set_rng_state",
    "uniform_",
]


class Generator:
    """A random-number generator like ``torch.Generator``: ``manual_seed``, ``get_state``..."""

    def __init__(self, device: Any = "cpu") -> None:
        self.device = backend.Device(device)
        self._seed = 67280421310721  # torch's default seed
        self._np = np.random.Generator(np.random.PCG64(self._seed))

    def manual_seed(self, seed: int) -> Generator:
        self._seed = int(seed)
        self._np = np.random.Generator(np.random.PCG64(self._seed & ((1 << 128) - 1)))
        return self

    def seed(self) -> int:
        s = int(np.random.SeedSequence().entropy) & ((1 << 63) - 1)
        self.manual_seed(s)
        return s

    def initial_seed(self) -> int:
        return self._seed

    def get_state(self) -> dict:
        st = self._np.bit_generator.state
        return {"bit_generator": st["bit_generator"],
                "state": {k: str(v) for k, v in st["state"].items()},
                "has_uint32": int(st["has_uint32"]), "uinteger": str(st["uinteger"]),
                "seed": str(self._seed)}

    def set_state(self, state: dict) -> Generator:
        if state.get("bit_generator") != "PCG64":
            raise ValueError("expected a PCG64 state from engine.get_rng_state()")
        self._np.bit_generator.state = {
            "bit_generator": "PCG64",
            "state": {k: int(v) for k, v in state["state"].items()},
            "has_uint32": int(state["has_uint32"]), "uinteger": int(state["uinteger"])}
        if "seed" in state:
            self._seed = int(state["seed"])
        return self


default_generator = Generator()


def manual_seed(seed: int) -> Generator:
    """Seed the global generator (and so every sampling function that takes no generator)."""
    return default_generator.manual_seed(seed)


def seed() -> int:
    return default_generator.seed()


def initial_seed() -> int:
    return default_generator.initial_seed()


def get_rng_state() -> dict:
    """The global generator's state as a JSON-serializable dict (see the module doc)."""
    return default_generator.get_state()


def set_rng_state(state: dict) -> None:
    default_generator.set_state(state)


def _gen(generator: Generator | None) -> np.random.Generator:
    return (default_generator if generator is None else generator)._np


def _size(size: tuple) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    return tuple(int(s) for s in size)


def _out(a: np.ndarray, device: Any, requires_grad: bool) -> Tensor:
    if device is not None and backend.Device(device).type != "cpu":
        a = backend.move_to(a, backend.Device(device))
    t = Tensor._wrap(a)
    if requires_grad:
        t.requires_grad = True
    return t


def _float_dt(dtype: Any) -> Any:
    dt = get_default_dtype() if dtype is None else to_dtype(dtype)
    if not dt.is_floating_point:
        raise RuntimeError(f"\"normal_kernel_cpu\" not implemented for '{dt.name}'")
    return dt


def rand(*size: Any, generator: Generator | None = None, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """Uniform samples on [0, 1)."""
    dt = _float_dt(dtype)
    g = _gen(generator)
    shape = _size(size)
    a = g.random(shape, dtype=dt.np) if dt.np != np.float16 else g.random(shape).astype(dt.np)
    return _out(a, device, requires_grad)


def randn(*size: Any, generator: Generator | None = None, dtype: Any = None,
          device: Any = None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples."""
    dt = _float_dt(dtype)
    g = _gen(generator)
    shape = _size(size)
    a = (g.standard_normal(shape, dtype=dt.np) if dt.np != np.float16 else
         g.standard_normal(shape).astype(dt.np))
    return _out(a, device, requires_grad)


def randint(low: int, high: Any = None, size: Any = None, *, generator: Generator | None = None,
            dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    """Integers uniform on [low, high); ``randint(high, size)`` starts at 0."""
    if size is None:
        low, high, size = 0, low, high
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    dt = int64 if dtype is None else to_dtype(dtype)
    a = _gen(generator).integers(low, high, size=tuple(size), dtype=np.int64).astype(dt.np)
    return _out(a, device, requires_grad)


def randperm(n: int, *, generator: Generator | None = None, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    dt = int64 if dtype is None else to_dtype(dtype)
    return _out(_gen(generator).permutation(int(n)).astype(dt.np), device, requires_grad)


def normal(mean: Any = 0.0, std: Any = 1.0, size: Any = None, *,
           generator: Generator | None = None, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """Normal samples with tensor or scalar ``mean``/``std`` (broadcast), or of ``size``."""
    g = _gen(generator)
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        m = backend.to_numpy(mean._data) if isinstance(mean, Tensor) else mean
        s = backend.to_numpy(std._data) if isinstance(std, Tensor) else std
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
        ref = mean if isinstance(mean, Tensor) else std
        a = (g.standard_normal(shape) * s + m).astype(ref._data.dtype)
        return _out(a, ref.device if device is None else device, requires_grad)
    dt = _float_dt(dtype)
    a = (g.standard_normal(_size((size,) if isinstance(size, int) else (tuple(size),)))
         * std + mean).astype(dt.np)
    return _out(a, device, requires_grad)


def bernoulli(input: Tensor, p: Any = None, *, generator: Generator | None = None) -> Tensor:
    """1 with probability ``input`` (or ``p``), else 0, in input's dtype."""
    probs = backend.to_numpy(input._data) if p is None else np.broadcast_to(p, input.shape)
    u = _gen(generator).random(input.shape)
    a = (u < probs).astype(input._data.dtype)
    return _out(a, input.device, False)


def multinomial(input: Tensor, num_samples: int, replacement: bool = False, *,
                generator: Generator | None = None) -> Tensor:
    g = _gen(generator)
    p = backend.to_numpy(input._data).astype(np.float64)
    rows = p.reshape(-1, p.shape[-1])
    out = np.stack([g.choice(rows.shape[1], num_samples, replace=replacement, p=r / r.sum())
                    for r in rows]).astype(np.int64)
    return _out(out.reshape(p.shape[:-1] + (num_samples,)), input.device, False)


def rand_like(input: Tensor, *, dtype: Any = None, device: Any = None,
              requires_grad: bool = False) -> Tensor:
    return rand(input.shape, dtype=dtype or input.dtype, device=device or input.device,
                requires_grad=requires_grad)


def randn_like(input: Tensor, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False) -> Tensor:
    return randn(input.shape, dtype=dtype or input.dtype, device=device or input.device,
                 requires_grad=requires_grad)


def randint_like(input: Tensor, low: int, high: Any = None, *, dtype: Any = None,
                 device: Any = None) -> Tensor:
    return randint(low, high, input.shape, dtype=dtype or input.dtype,
                   device=device or input.device)


def uniform_(t: Tensor, a: float = 0.0, b: float = 1.0, *,
             generator: Generator | None = None) -> Tensor:
    """Fill ``t`` in place with uniform samples on [a, b) (used by nn.init)."""
    u = _gen(generator).random(t.shape) * (b - a) + a
    t._data[...] = backend.move_to(u.astype(t._data.dtype), t.device) if t.is_cuda else u
    t._vc[0] += 1
    return t


def normal_(t: Tensor, mean: float = 0.0, std: float = 1.0, *,
            generator: Generator | None = None) -> Tensor:
    """Fill ``t`` in place with normal samples (used by nn.init)."""
    u = _gen(generator).standard_normal(t.shape) * std + mean
    t._data[...] = backend.move_to(u.astype(t._data.dtype), t.device) if t.is_cuda else u
    t._vc[0] += 1
    return t
