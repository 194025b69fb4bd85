"""scatter_reduce (sum, prod, mean, amax, amin) and scatter's ``reduce='multiply'``.

``out = input`` (or, with ``include_self=False``, only the scattered-to positions start
empty), then every ``src`` element is reduced into ``out`` at its ``index`` along ``dim``.
Gradients follow torch's formulas: sum passes ``g``; mean divides by the count; amax/amin
split ``g`` evenly among every element equal to the result (torch counts ``input``'s tie
even with ``include_self=False``, and so does this); prod gives each
contributor the product of the others (exact with zeros: no division by a zero).
The prod/amax/amin/mean gradient coefficients are constants of the forward, so
create_graph differentiates through ``g`` but not through the coefficients.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import backend
from engine.autograd.grad_mode import STATE
from engine.ops._util import attach, norm_dim, wrap, xp_of
from engine.ops.indexing import _gather_index, gather
from engine.tensor import Tensor

__all__ = ["scatter_reduce"]

_REDUCES = ("sum", "prod", "mean", "amax", "amin")
_UFUNC = {"sum": "add", "mean": "add", "prod": "multiply", "amax": "maximum", "amin": "minimum"}


def _ufunc_at(xp: Any, name: str, out: Any, k: tuple, v: Any) -> None:
    """``ufunc.at`` (unbuffered, repeats reduce) on numpy or cupy."""
    try:
        getattr(xp, name).at(out, k, v)
        return
    except (AttributeError, NotImplementedError, TypeError):
        if xp is np:
            raise
    # cupy without this ufunc's .at: reduce on the host and move back
    host = backend.to_numpy(out)
    getattr(np, name).at(host, tuple(backend.to_numpy(i) for i in k), backend.to_numpy(v))
    out[...] = xp.asarray(host)


def _identity(reduce: str, dtype: Any) -> Any:
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    big = np.finfo(dtype).max if np.dtype(dtype).kind == "f" else np.iinfo(dtype).max
    if np.dtype(dtype).kind == "f":
        big = np.inf
    return -big if reduce == "amax" else big


def scatter_reduce(input: Tensor, dim: int, index: Tensor, src: Tensor, reduce: str, *,
                   include_self: bool = True) -> Tensor:
    """torch.scatter_reduce: reduce ``src`` into a copy of ``input`` at ``index`` along ``dim``."""
    if reduce not in _REDUCES:
        raise RuntimeError(f"reduce argument must be either sum, prod, mean, amax or amin, got "
                           f"{reduce}")
    d = input._data
    dim = norm_dim(dim, d.ndim)
    idx = index._data
    xp = xp_of(input)
    full = _gather_index(d, dim, idx)
    s = src._data[tuple(slice(0, n) for n in idx.shape)].astype(d.dtype, copy=False)
    out = d.copy()
    hit = xp.zeros(d.shape, dtype=bool)
    hit[full] = True  # positions that receive at least one src element
    if not include_self:
        out[hit] = _identity(reduce, d.dtype)
    _ufunc_at(xp, _UFUNC[reduce], out, full, s)
    count = None
    if reduce == "mean":
        count = xp.zeros(d.shape, dtype=d.dtype)
        _ufunc_at(xp, "add", count, full, xp.ones(idx.shape, dtype=d.dtype))
        if include_self:
            count += 1
        count = xp.maximum(count, 1)  # positions nothing reduced into keep input (count 1)
        if d.dtype.kind == "f":
            out /= count
        else:
            out //= count.astype(out.dtype)
    r = wrap(out)
    if STATE.enabled and (input._rg or src._rg):
        ci, cs = _coefficients(xp, reduce, d, s, out, full, hit, count, include_self)
        src_shape = src._data.shape

        def bw(g: Tensor, _: Any) -> tuple:
            gi = gs = None
            if input._rg:
                gi = g * wrap(ci)
            if src._rg:
                gs = gather(g, dim, index) * wrap(cs)
                widths = [(0, a - b) for a, b in zip(src_shape, idx.shape)]
                if any(w for _, w in widths):
                    from engine.ops.shape import pad_widths

                    gs = pad_widths(gs, widths)
            return gi, gs
        attach(r, (input, src), bw, "ScatterReduceBackward0")
    return r


def _coefficients(xp: Any, reduce: str, d: Any, s: Any, out: Any, full: tuple, hit: Any,
                  count: Any, include_self: bool) -> tuple:
    """d(out)/d(input) elementwise and d(out[index])/d(src): the backward's constant factors."""
    keep = xp.ones(d.shape, dtype=d.dtype) if include_self else (~hit).astype(d.dtype)
    if reduce == "sum":
        return keep, xp.ones(s.shape, dtype=d.dtype)
    if reduce == "mean":
        return keep / count, 1 / count[full]
    if reduce in ("amax", "amin"):
        # torch counts a tie with self even when include_self=False (then masks self's share)
        self_eq = d == out
        src_eq = s == out[full]
        n = self_eq.astype(d.dtype)
        _ufunc_at(xp, "add", n, full, src_eq.astype(d.dtype))
        n = xp.maximum(n, 1)
        return self_eq / n * keep, src_eq / n[full]
    # prod: each contributor's factor is the product of the others, without dividing by zero
    zeros = ((d == 0) & (keep > 0)).astype(np.int64)
    _ufunc_at(xp, "add", zeros, full, (s == 0).astype(np.int64))
    nz = xp.where((d == 0) | (keep == 0), 1, d).astype(d.dtype)  # product of nonzeros
    _ufunc_at(xp, "multiply", nz, full, xp.where(s == 0, 1, s).astype(d.dtype))

    def others(v: Any, z: Any, p: Any, mine_zero: Any) -> Any:
        with np.errstate(divide="ignore", invalid="ignore"):
            safe = xp.where(v == 0, 1, v)
            return xp.where(mine_zero, xp.where(z == 1, p, 0), xp.where(z == 0, p / safe, 0))
    ci = others(d, zeros, nz, d == 0) * keep
    cs = others(s, zeros[full], nz[full], s == 0)
    return ci.astype(d.dtype, copy=False), cs.astype(d.dtype, copy=False)
