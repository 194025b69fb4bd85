"""Indexing: __getitem__ (ints, slices, None, Ellipsis, bool masks, integer tensors),
index_put for __setitem__, gather, scatter, scatter_add, index_select, masked_fill,
masked_select, nonzero.

Gradients of advanced indexing scatter-add (``xp.add.at``) so repeated indices
accumulate, as torch's do.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import backend
from engine.autograd.grad_mode import STATE
from engine.ops._util import as_t, attach, mark_view, norm_dim, wrap, xp_of
from engine.tensor import Tensor

__all__ = [
    "convert_key",
    "gather",
    "getitem",
    "index_add",
    "index_put_outofplace",
    "index_select",
    "masked_fill",
    "masked_select",
    "nonzero",
    "scatter",
    "scatter_add",
    "take_along_dim",
]

_BASIC = (int, slice, type(None), type(Ellipsis))


def convert_key(key: Any, t: Tensor) -> Any:
    """An index usable on ``t._data``: Tensors and lists become arrays on t's device."""
    if isinstance(key, tuple):
        return tuple(_conv(k, t) for k in key)
    return _conv(key, t)


def _conv(k: Any, t: Tensor) -> Any:
    if isinstance(k, (*_BASIC, bool, np.integer)):
        return k
    if isinstance(k, Tensor):
        a = k._data
    elif isinstance(k, (list, tuple)):
        a = np.asarray([_conv(v, t) if isinstance(v, Tensor) else v for v in k])
        if a.dtype.kind == "f":
            raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    else:
        a = k
    if a.dtype.kind == "f":
        raise IndexError("tensors used as indices must be long, int, byte or bool tensors")
    if type(a) is not type(t._data):
        a = backend.move_to(a, t.device)
    return a


def _is_basic(key: Any) -> bool:
    if isinstance(key, tuple):
        for k in key:
            if not isinstance(k, _BASIC) or isinstance(k, bool):
                return False
        return True
    return isinstance(key, _BASIC) and not isinstance(key, bool)


def _basic_name(key: Any) -> str:
    """torch's node for basic indexing: that of the last dim it narrows (an int selects)."""
    parts = [p for p in (key if isinstance(key, tuple) else (key,))
             if p is not None and p is not Ellipsis and p != slice(None)]
    if not parts:
        return "AliasBackward0" if key is Ellipsis else "SliceBackward0"
    return "SliceBackward0" if isinstance(parts[-1], slice) else "SelectBackward0"


def getitem(self: Tensor, key: Any) -> Tensor:
    d = self._data
    basic = _is_basic(key)
    k = key if basic else convert_key(key, self)
    try:
        arr = d[k]
    except IndexError as e:
        raise IndexError(str(e).replace("axis", "dimension")) from None
    if basic:
        if not hasattr(arr, "ndim") or type(arr) is not type(d):
            arr = d[k + (Ellipsis,)] if isinstance(k, tuple) else d[k, ...]
        r = wrap(arr)
        r._vc = self._vc
        mark_view(r, self, lambda b: getitem(b, k))
    else:
        r = wrap(arr)
    if STATE.enabled and self._rg:
        shape, dt = d.shape, d.dtype
        attach(r, (self,), lambda g, _: (_index_backward(g, shape, dt, k, basic),),
               _basic_name(key) if basic else "IndexBackward0")
    return r


def _index_backward(g: Tensor, shape: tuple, dt: Any, k: Any, basic: bool) -> Tensor:
    """zeros(shape) with ``g`` added at ``k`` (accumulating repeats); differentiable in g."""
    xp = xp_of(g)
    out = xp.zeros(shape, dtype=dt)
    if basic:
        out[k] = g._data
    else:
        _add_at(xp, out, k, g._data)
    r = wrap(out)
    if STATE.enabled and g._rg:
        attach(r, (g,), lambda gg, _: (getitem(gg, k),), "IndexPutBackward0")
    return r


def _add_at(xp: Any, out: Any, k: Any, v: Any) -> None:
    try:
        xp.add.at(out, k, v)
    except (AttributeError, NotImplementedError):  # older cupy
        import cupyx

        cupyx.scatter_add(out, k, v)


def index_put_outofplace(self: Tensor, k: Any, value: Tensor) -> Tensor:
    """A copy of ``self`` with ``value`` written at ``k`` (the graph form of __setitem__)."""
    out = self._data.copy()
    v = value._data
    out[k] = v.astype(out.dtype, copy=False)
    r = wrap(out)
    if STATE.enabled and (self._rg or value._rg):
        vshape = v.shape

        def bw(g, _):
            gs = None
            if self._rg:
                gd = g._data.copy()
                gd[k] = 0
                gs = wrap(gd)
            gv = None
            if value._rg:
                from engine.ops._util import unbroadcast

                sel = getitem(g, k)
                gv = unbroadcast(sel, vshape) if sel.shape != vshape else sel
            return gs, gv
        attach(r, (self, value), bw, "IndexPutBackward0")
    return r


def _gather_index(d: Any, dim: int, idx: Any) -> tuple:
    """The full advanced index selecting d[..., idx, ...] elementwise along ``dim``."""
    xp = backend.get_array_module(idx)
    nd = idx.ndim
    grids = []
    for ax in range(nd):
        if ax == dim:
            grids.append(idx)
        else:
            shp = [1] * nd
            shp[ax] = idx.shape[ax]
            grids.append(xp.arange(idx.shape[ax]).reshape(shp))
    return tuple(grids)


def _check_index(input: Tensor, dim: int, index: Tensor, name: str) -> None:
    if index._data.dtype != np.int64 and index._data.dtype != np.int32:
        raise RuntimeError(f"{name}(): Expected dtype int64 for index")
    if index._data.ndim != input._data.ndim and not (input._data.ndim == 0 and
                                                       index._data.ndim <= 1):
        raise RuntimeError("Index tensor must have the same number of dimensions as input tensor")


def gather(input: Tensor, dim: int, index: Tensor, *, sparse_grad: bool = False) -> Tensor:
    """out[i][j] = input[index[i][j]][j] (dim=0), like torch.gather."""
    _check_index(input, dim, index, "gather")
    d = input._data
    if d.ndim == 0:
        return input.reshape(index.shape)
    dim = norm_dim(dim, d.ndim)
    idx = index._data
    n = d.shape[dim]
    if idx.size and (int(idx.max()) >= n or int(idx.min()) < -n):
        raise RuntimeError(f"index {int(idx.max())} is out of bounds for dimension {dim} with "
                           f"size {n}")
    full = _gather_index(d, dim, idx)
    r = wrap(d[full])
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, _):
            return (_scatter_add_new(g, shape, full, index, dim),)
        attach(r, (input,), bw, "GatherBackward0")
    return r


def _scatter_add_new(g: Tensor, shape: tuple, full: tuple, index: Tensor, dim: int) -> Tensor:
    xp = xp_of(g)
    out = xp.zeros(shape, dtype=g._data.dtype)
    _add_at(xp, out, full, g._data)
    r = wrap(out)
    if STATE.enabled and g._rg:
        attach(r, (g,), lambda gg, _: (gather(gg, dim, index),), "ScatterAddBackward0")
    return r


def take_along_dim(input: Tensor, indices: Tensor, dim: int) -> Tensor:
    return gather(input, dim, indices)


def scatter(input: Tensor, dim: int, index: Tensor, src: Any = None, value: Any = None,
            *, reduce: str | None = None) -> Tensor:
    """A copy of ``input`` with ``src`` (or a scalar) written at ``index`` along ``dim``."""
    if src is None:
        src = value
    if reduce is not None:
        if reduce == "add":
            return scatter_add(input, dim, index, _src_tensor(src, index, input))
        if reduce == "multiply":
            from engine.ops.scatter_reduction import scatter_reduce

            return scatter_reduce(input, dim, index, _src_tensor(src, index, input), "prod")
        raise RuntimeError(f"reduce argument must be either add or multiply, got {reduce}")
    dim = norm_dim(dim, input._data.ndim)
    s = _src_tensor(src, index, input)
    full = _gather_index(input._data, dim, index._data)
    out = input._data.copy()
    out[full] = s._data[tuple(slice(0, n) for n in index._data.shape)].astype(out.dtype,
                                                                           copy=False)
    r = wrap(out)
    if STATE.enabled and (input._rg or s._rg):
        def bw(g, _):
            gi = gs = None
            if input._rg:
                gd = g._data.copy()
                gd[full] = 0
                gi = wrap(gd)
            if s._rg:
                sel = gather(g, dim, index)
                from engine.ops.shape import pad_widths

                widths = [(0, a - b) for a, b in zip(s._data.shape, index._data.shape)]
                gs = pad_widths(sel, widths) if any(w for _, w in widths) else sel
            return gi, gs
        attach(r, (input, s), bw, "ScatterBackward0")
    return r


def _src_tensor(src: Any, index: Tensor, like: Tensor) -> Tensor:
    if isinstance(src, Tensor):
        return src
    xp = xp_of(like)
    return wrap(xp.full(index._data.shape, src, dtype=like._data.dtype))


def scatter_add(input: Tensor, dim: int, index: Tensor, src: Tensor) -> Tensor:
    """input with src added at index along dim (repeats accumulate)."""
    dim = norm_dim(dim, input._data.ndim)
    idx = index._data
    full = _gather_index(input._data, dim, idx)
    out = input._data.copy()
    xp = xp_of(input)
    _add_at(xp, out, full, src._data[tuple(slice(0, n) for n in idx.shape)].astype(out.dtype,
                                                                                copy=False))
    r = wrap(out)
    if STATE.enabled and (input._rg or src._rg):
        def bw(g, _):
            gs = None
            if src._rg:
                gs = gather(g, dim, index)
                widths = [(0, a - b) for a, b in zip(src._data.shape, idx.shape)]
                if any(w for _, w in widths):
                    from engine.ops.shape import pad_widths

                    gs = pad_widths(gs, widths)
            return (g if input._rg else None), gs
        attach(r, (input, src), bw, "ScatterAddBackward0")
    return r


def index_select(input: Tensor, dim: int, index: Tensor) -> Tensor:
    """Entries of ``input`` along ``dim`` at the 1-D ``index`` (embedding lookups use this)."""
    d = input._data
    idx = index._data
    if idx.ndim > 1:
        raise IndexError("index_select(): Index is supposed to be a vector")
    if d.ndim == 0:
        return input.reshape(()).expand(()) if idx.size <= 1 else input.expand(idx.shape)
    dim = norm_dim(dim, d.ndim)
    xp = xp_of(input)
    r = wrap(xp.take(d, idx.reshape(-1), axis=dim))
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, _):
            z = wrap(xp_of(g).zeros(shape, dtype=g._data.dtype))
            return (index_add(z, dim, index, g),)
        attach(r, (input,), bw, "IndexSelectBackward0")
    return r


def index_add(input: Tensor, dim: int, index: Tensor, source: Tensor, *, alpha: Any = 1) -> Tensor:
    """A copy of ``input`` with ``source`` slices added at ``index`` along ``dim``."""
    dim = norm_dim(dim, input._data.ndim)
    out = input._data.copy()
    src = source._data if alpha == 1 else source._data * alpha
    key = (slice(None),) * dim + (index._data.reshape(-1),)
    _add_at(xp_of(input), out, key, src.astype(out.dtype, copy=False))
    r = wrap(out)
    if STATE.enabled and (input._rg or source._rg):
        def bw(g, _):
            gs = index_select(g, dim, index) if source._rg else None
            if gs is not None and alpha != 1:
                gs = gs * alpha
            return (g if input._rg else None), gs
        attach(r, (input, source), bw, "IndexAddBackward0")
    return r


def masked_fill(input: Tensor, mask: Tensor, value: Any) -> Tensor:
    """``value`` where ``mask`` (broadcast) is True; keeps input's dtype, as torch."""
    m = mask._data
    if m.dtype != np.bool_:
        raise RuntimeError(f"masked_fill_ only supports boolean masks, but got mask with dtype "
                           f"{mask.dtype.name}")
    xp = xp_of(input)
    d = input._data
    vt = isinstance(value, Tensor)
    if vt and value._data.ndim:
        raise RuntimeError("masked_fill_ only supports a 0-dimensional value tensor, but got "
                           f"tensor with {value._data.ndim} dimension(s).")
    v = value._data if vt else value
    shape = np.broadcast_shapes(d.shape, m.shape)
    if shape != d.shape:
        raise RuntimeError(f"masked_fill: mask of shape {list(m.shape)} can't be broadcast to "
                           f"input of shape {list(d.shape)}")
    r = wrap(xp.where(m, xp.asarray(v, dtype=d.dtype), d))
    if STATE.enabled and (input._rg or (vt and value._rg)):
        def bw(g, _):
            from engine.ops.elementwise import where

            gi = where(mask, 0.0, g) if input._rg else None
            gv = where(mask, g, 0.0).sum() if vt and value._rg else None
            return gi, gv
        attach(r, (input, value if vt else None), bw, "MaskedFillBackward0")
    return r


def masked_select(input: Tensor, mask: Tensor) -> Tensor:
    from engine.ops.shape import broadcast_tensors

    a, m = broadcast_tensors(input, mask)
    return getitem(a, m)


def nonzero(input: Tensor, *, as_tuple: bool = False) -> Any:
    xp = xp_of(input)
    d = input._data
    if d.ndim == 0:
        d = d.reshape(1)
        if as_tuple:
            return (wrap(xp.nonzero(d)[0].astype(np.int64)),)
    idx = xp.nonzero(d)
    if as_tuple:
        return tuple(wrap(i.astype(np.int64)) for i in idx)
    return wrap(xp.stack(idx, axis=1).astype(np.int64) if idx else
                xp.zeros((int((d != 0).sum()), 0), dtype=np.int64))


_ = as_t
