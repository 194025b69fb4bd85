"""Factory functions: zeros ones full empty (and _like), arange linspace eye zeros/ones of a size."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine import backend
from engine.dtypes import bool_ as _bool
from engine.dtypes import float32, get_default_dtype, int64, scalar_dtype, to_dtype
from engine.tensor import Tensor

__all__ = [
    "arange",
    "empty",
    "empty_like",
    "eye",
    "full",
    "full_like",
    "linspace",
    "logspace",
    "ones",
    "ones_like",
    "scalar_tensor",
    "zeros",
    "zeros_like",
]


def _size(size: tuple) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    out = tuple(int(s) for s in size)
    for s in out:
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(out)}")
    return out


def _xp(device: Any) -> tuple:
    if device is None:
        return np, None
    dev = backend.Device(device)
    if dev.type == "cpu":
        return np, None
    return backend.get_array_module(backend.move_to(np.zeros(0), dev)), dev


def _finish(a: Any, dev: Any, requires_grad: bool) -> Tensor:
    if dev is not None:
        a = backend.move_to(a, dev)
    t = Tensor._wrap(a)
    if requires_grad:
        t.requires_grad = True
    return t


def _make(fill: str, size: tuple, dtype: Any, device: Any, requires_grad: bool,
          value: Any = None) -> Tensor:
    shape = _size(size)
    dt = get_default_dtype() if dtype is None else to_dtype(dtype)
    xp, dev = _xp(device)
    if dev is not None:
        with _on(xp, dev):
            a = _alloc(xp, fill, shape, dt, value)
    else:
        a = _alloc(xp, fill, shape, dt, value)
    t = Tensor._wrap(a)
    if requires_grad:
        t.requires_grad = True
    return t


def _on(xp: Any, dev: Any):
    return xp.cuda.Device(dev.index or 0)


def _alloc(xp: Any, fill: str, shape: tuple, dt: Any, value: Any) -> Any:
    if fill == "zeros":
        return xp.zeros(shape, dtype=dt.np)
    if fill == "ones":
        return xp.ones(shape, dtype=dt.np)
    if fill == "empty":
        return xp.empty(shape, dtype=dt.np)
    return xp.full(shape, value, dtype=dt.np)


def zeros(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          out: Any = None) -> Tensor:
    return _make("zeros", size, dtype, device, requires_grad)


def ones(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False) -> Tensor:
    return _make("ones", size, dtype, device, requires_grad)


def empty(*size: Any, dtype: Any = None, device: Any = None, requires_grad: bool = False,
          memory_format: Any = None, pin_memory: bool = False) -> Tensor:
    return _make("empty", size, dtype, device, requires_grad)


def full(size: Any, fill_value: Any, *, dtype: Any = None, device: Any = None,
         requires_grad: bool = False) -> Tensor:
    """A tensor filled with ``fill_value``; dtype inferred from it when not given (as torch)."""
    if isinstance(fill_value, Tensor):
        fill_value = fill_value.item()
    if dtype is None:
        dtype = scalar_dtype(fill_value)
    return _make("full", (size,) if isinstance(size, int) else (tuple(size),), dtype, device,
                 requires_grad, fill_value)


def _like(input: Tensor, dtype: Any, device: Any) -> tuple:
    return (input.dtype if dtype is None else dtype,
            input.device if device is None else device)


def zeros_like(input: Tensor, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False, memory_format: Any = None) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return _make("zeros", input.shape, dt, dev, requires_grad)


def ones_like(input: Tensor, *, dtype: Any = None, device: Any = None,
              requires_grad: bool = False, memory_format: Any = None) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return _make("ones", input.shape, dt, dev, requires_grad)


def empty_like(input: Tensor, *, dtype: Any = None, device: Any = None,
               requires_grad: bool = False, memory_format: Any = None) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return _make("empty", input.shape, dt, dev, requires_grad)


def full_like(input: Tensor, fill_value: Any, *, dtype: Any = None, device: Any = None,
              requires_grad: bool = False, memory_format: Any = None) -> Tensor:
    dt, dev = _like(input, dtype, device)
    return _make("full", input.shape, dt, dev, requires_grad, fill_value)


def arange(start: Any, end: Any = None, step: Any = 1, *, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """[start, end) by step; int64 when all of them are ints, else the default float dtype."""
    if end is None:
        start, end = 0, start
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    start, end, step = vals
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) * step < 0:
        raise RuntimeError("upper bound and larger bound inconsistent with step sign")
    if dtype is None:
        integral = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals)
        dt = int64 if integral else get_default_dtype()
    else:
        dt = to_dtype(dtype)
    n = max(math.ceil((end - start) / step), 0)
    if dt.is_floating_point:
        a = (start + np.arange(n, dtype=np.float64) * step).astype(dt.np)
    else:
        a = np.arange(start, start + n * step, step, dtype=np.int64)[:n].astype(dt.np)
    return _finish(a, None if device is None else backend.Device(device), requires_grad)


def linspace(start: Any, end: Any, steps: int, *, dtype: Any = None, device: Any = None,
             requires_grad: bool = False) -> Tensor:
    dt = get_default_dtype() if dtype is None else to_dtype(dtype)
    a = np.linspace(float(start), float(end), int(steps), dtype=np.float64)
    if steps > 1:  # torch fills symmetrically from both ends
        step = (float(end) - float(start)) / (steps - 1)
        i = np.arange(steps)
        half = steps // 2
        a = np.where(i < half, float(start) + step * i, float(end) - step * (steps - 1 - i))
    if not dt.is_floating_point:
        a = np.trunc(a)
    return _finish(a.astype(dt.np), None if device is None else backend.Device(device),
                   requires_grad)


def logspace(start: Any, end: Any, steps: int, base: float = 10.0, *, dtype: Any = None,
             device: Any = None, requires_grad: bool = False) -> Tensor:
    lin = linspace(start, end, steps, dtype=float32 if dtype is None else dtype)
    return _finish((base ** lin._data.astype(np.float64)).astype(lin._data.dtype),
                   None if device is None else backend.Device(device), requires_grad)


def eye(n: int, m: int | None = None, *, dtype: Any = None, device: Any = None,
        requires_grad: bool = False) -> Tensor:
    dt = get_default_dtype() if dtype is None else to_dtype(dtype)
    return _finish(np.eye(n, n if m is None else m, dtype=dt.np),
                   None if device is None else backend.Device(device), requires_grad)


def scalar_tensor(s: Any, *, dtype: Any = None, device: Any = None) -> Tensor:
    dt = get_default_dtype() if dtype is None else to_dtype(dtype)
    return _finish(np.asarray(s, dtype=dt.np), None if device is None else backend.Device(device),
                   False)


_ = _bool
