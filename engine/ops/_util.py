"""Shared helpers for ops: wrapping results, recording nodes, promotion, broadcasting.

Every op follows one pattern: compute the result array from the inputs' arrays
with ``xp`` taken from those arrays, wrap it, and, when grad mode is on and an
input requires grad, attach a Node whose backward (written with Tensor ops, so
that create_graph works) sits beside the forward.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine import backend
from engine.autograd.grad_mode import STATE
from engine.autograd.graph import Node
from engine.dtypes import FROM_NP, float32, get_default_dtype, int64, result_type
from engine.tensor import Tensor, _init_tensor

_PY_SCALARS = (int, float, bool)

# wrap(array): an op's result array as a new Tensor (the hot path of every op); the same
# function as Tensor._wrap, which sets a Tensor's fields in one place (engine.tensor).
wrap = _init_tensor


def attach(out: Tensor, inputs: Sequence[Any], fn: Any, name: str,
           saved: tuple = (), save_out: bool = False) -> Tensor:
    """Record ``out`` as the result of an op with backward ``fn(grad, out)``."""
    ins = tuple([t if (t is not None and t._rg) else None for t in inputs])
    out.grad_fn = Node(fn, ins, name, saved, out._vc[0] if save_out else -1)
    out._rg = True
    return out


def mark_view(r: Tensor, base: Tensor, fn: Any) -> Tensor:
    """Record that ``r`` is ``fn(base)`` sharing its memory, so that an in-place op on ``r``
    can rewrite the history of the root base (see ops.inplace). Views of views compose."""
    parent = getattr(base, "_view", None)
    if parent is None:
        r._view = (base, fn)
    else:
        root, pfn = parent
        r._view = (root, lambda b: fn(pfn(b)))
    return r


def named(r: Any, name: str) -> Any:
    """Give a composite op's result torch's grad_fn name (its last node is renamed)."""
    if isinstance(r, Tensor) and r.grad_fn is not None:
        r.grad_fn._name = name
    return r


def needs_grad(*ts: Any) -> bool:
    if not STATE.enabled:
        return False
    for t in ts:
        if t is not None and t._rg:
            return True
    return False


def as_t(x: Any, like: Tensor | None = None) -> Tensor:
    """A Tensor from a Tensor, ndarray or Python value (on ``like``'s device when given)."""
    if isinstance(x, Tensor):
        return x
    if isinstance(x, np.generic):
        x = x.item()
    if like is not None and isinstance(x, _PY_SCALARS):
        d = scalar_np_dtype(x)
        xp = backend.xp_of(like._data)
        return wrap(xp.asarray(x, dtype=d))
    from engine.tensor import tensor

    t = tensor(x)
    if like is not None and type(like._data) is not np.ndarray:
        t = wrap(backend.move_to(t._data, like.device))
    return t


def scalar_np_dtype(x: Any) -> Any:
    if isinstance(x, bool):
        return np.bool_
    if isinstance(x, int):
        return np.int64
    return get_default_dtype().np


def xp_of(t: Tensor) -> Any:
    d = t._data
    return np if type(d) is np.ndarray else backend.get_array_module(d)


def prep2(a: Any, b: Any) -> tuple:
    """(Tensor a or None, Tensor b or None, array a, array b) cast to torch's result dtype.

    A Python scalar stays a Python scalar when it cannot change the dtype (numpy
    treats it as weak, like torch), else the tensor is cast first.
    """
    at = isinstance(a, Tensor)
    bt = isinstance(b, Tensor)
    if at and bt:
        da, db = a._data, b._data
        if da.dtype == db.dtype:
            return a, b, da, db
        rt = result_type(a, b).np
        if type(da) is not type(db):
            _check_devices(a, b)
        return a, b, da.astype(rt, copy=False), db.astype(rt, copy=False)
    if at:
        return (a, None) + _with_scalar(a._data, b)
    if bt:
        db, da = _with_scalar(b._data, a)
        return None, b, da, db
    a, b = as_t(a), as_t(b)
    return prep2(a, b)


def _with_scalar(d: Any, s: Any) -> tuple:
    if isinstance(s, np.generic):
        s = s.item()
    if isinstance(s, Tensor):
        raise AssertionError
    if not isinstance(s, _PY_SCALARS):
        raise TypeError(f"unsupported operand type {type(s).__name__}")
    k = d.dtype.kind
    if isinstance(s, bool):
        return d, s
    if isinstance(s, int):
        if k == "b":
            d = d.astype(np.int64)
        return d, s
    if k != "f":
        d = d.astype(get_default_dtype().np)
    return d, s


def _check_devices(a: Tensor, b: Tensor) -> None:
    if a._data.ndim and b._data.ndim and a.device != b.device:
        raise RuntimeError("Expected all tensors to be on the same device, but found at least "
                           f"two devices, {a.device} and {b.device}!")


def float_array(d: Any) -> Any:
    """The array itself when floating, else cast to the default float dtype (torch's rule for
    unary float ops such as exp on an int tensor)."""
    if d.dtype.kind == "f":
        return d
    return d.astype(get_default_dtype().np)


def unbroadcast(g: Tensor, shape: tuple) -> Tensor:
    """Sum ``g`` back to ``shape`` (the gradient of broadcasting ``shape`` to g's shape)."""
    gs = g._data.shape
    if gs == shape:
        return g
    nd = len(gs) - len(shape)
    axes = tuple(range(nd)) + tuple(i + nd for i, s in enumerate(shape) if s == 1 and gs[i + nd] != 1)
    from engine.ops.reduction import sum as _sum

    r = _sum(g, axes, keepdim=True) if axes else g
    return r.reshape(shape) if r._data.shape != shape else r


def raw_grad_to(gd: Any, t: Tensor) -> Any:
    """The array version of ``grad_to`` for fast-path backwards: ``gd`` summed to ``t``'s
    shape and cast to its dtype. A fresh ``gd`` stays fresh (sum and astype allocate)."""
    d = t._data
    if gd.shape != d.shape:
        gd = raw_sum_to(gd, d.shape)
    if gd.dtype != d.dtype and d.dtype.kind == "f":
        gd = gd.astype(d.dtype)
    return gd


def raw_sum_to(gd: Any, shape: tuple) -> Any:
    """``unbroadcast`` on arrays: ``gd`` summed over the dims broadcasting added to ``shape``."""
    gs = gd.shape
    if gs == shape:
        return gd
    nd = len(gs) - len(shape)
    axes = tuple(range(nd)) + tuple(i + nd for i, s in enumerate(shape)
                                    if s == 1 and gs[i + nd] != 1)
    if axes:
        gd = gd.sum(axis=axes, keepdims=True)
    return gd.reshape(shape) if gd.shape != shape else gd


def fast_backward() -> bool:
    """True inside a backward that records nothing (``create_graph`` off): backwards may then
    work on raw arrays and return fresh ones (see engine.autograd.graph)."""
    return not STATE.enabled


_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def masked_grad(xp: Any, mask: Any, gd: Any) -> Any:
    """``where(mask, g, 0)`` as a fresh array, bit-exact, at the cost of two cheap integer
    passes (numpy's where is ~6x slower than a multiply; a multiply turns inf*0 into NaN)."""
    u = _UINT[gd.dtype.itemsize]
    if mask.shape != gd.shape:
        mask = xp.broadcast_to(mask, gd.shape)
    mb = xp.negative(mask.view(np.uint8), dtype=u)
    xp.bitwise_and(gd.view(u), mb, out=mb)
    return mb.view(gd.dtype)


def norm_dim(dim: int, ndim: int) -> int:
    """A dim in [-ndim, ndim) made non-negative, with torch's IndexError otherwise (0-d allows -1, 0)."""
    n = max(ndim, 1)
    if not -n <= dim < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], "
                         f"but got {dim})")
    return dim % n


def norm_dims(dim: Any, ndim: int) -> tuple:
    if dim is None:
        return tuple(range(ndim))
    if isinstance(dim, (int, np.integer)):
        dim = (int(dim),)
    elif len(dim) == 0:  # torch: an empty dim list reduces over every dim
        return tuple(range(ndim))
    out = tuple(norm_dim(int(d), ndim) for d in dim)
    if ndim == 0:
        return ()
    if len(set(out)) != len(out):
        raise RuntimeError("dim appears multiple times in the list of dims")
    return out


__all__ = [
    "FROM_NP",
    "STATE",
    "as_t",
    "attach",
    "fast_backward",
    "float32",
    "float_array",
    "int64",
    "mark_view",
    "masked_grad",
    "named",
    "needs_grad",
    "norm_dim",
    "norm_dims",
    "prep2",
    "raw_grad_to",
    "raw_sum_to",
    "unbroadcast",
    "wrap",
    "xp_of",
]
