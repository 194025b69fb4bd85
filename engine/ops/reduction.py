"""Reductions with dim/keepdim: sum mean var std prod max min amax amin argmax argmin
logsumexp softmax log_softmax norm cumsum cumprod any all topk sort argsort.

Ops that select elements (max/min with dim, topk, sort) compute indices and then
``gather`` the values, so their gradient is gather's.
"""
from __future__ import annotations

import builtins
from collections import namedtuple
from typing import Any

import numpy as np

from engine.amp import _policy as _amp
from engine.autograd.grad_mode import STATE
from engine.dtypes import get_default_dtype, to_dtype
from engine.ops._util import attach, named, norm_dim, norm_dims, wrap, xp_of
from engine.tensor import Tensor

__all__ = [
    "all",
    "amax",
    "amin",
    "any",
    "argmax",
    "argmin",
    "argsort",
    "count_nonzero",
    "cumprod",
    "cumsum",
    "expand_back",
    "log_softmax",
    "logsumexp",
    "max",
    "mean",
    "min",
    "norm",
    "prod",
    "softmax",
    "sort",
    "std",
    "std_mean",
    "sum",
    "topk",
    "var",
    "var_mean",
]

_builtin_sum = builtins.sum
_MinMax = namedtuple("return_types", ["values", "indices"])


def expand_back(g: Tensor, shape: tuple, dims: tuple, keepdim: bool) -> Tensor:
    """The gradient of a reduction over ``dims``: ``g`` broadcast back to ``shape``."""
    if not keepdim and dims:
        ks = list(shape)
        for d in dims:
            ks[d] = 1
        g = g.reshape(tuple(ks))
    return g.expand(shape)


def _numel(shape: tuple, dims: tuple) -> int:
    n = 1
    for d in dims:
        n *= shape[d]
    return n


def sum(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    """Sum over ``dim`` (all dims when None); bool and int inputs sum in int64, as torch."""
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("sum", input)
    d = input._data
    dims = norm_dims(dim, d.ndim) if dim is not None else None
    if dtype is not None:
        d = d.astype(to_dtype(dtype).np)
    elif d.dtype.kind in "biu":
        d = d.astype(np.int64)
    shape = input._data.shape
    r = d.sum(axis=dims, keepdims=keepdim)
    if not hasattr(r, "ndim") or type(r) is not type(d):
        r = xp_of(input).asarray(r)
    r = wrap(r)
    if STATE.enabled and input._rg:
        alld = dims if dims is not None else tuple(range(len(shape)))
        attach(r, (input,), lambda g, _: (expand_back(g, shape, alld, keepdim),), "SumBackward1"
               if dims is not None else "SumBackward0")
    return r


def mean(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    d = input._data
    if dtype is not None:
        input = input.to(to_dtype(dtype))
    elif d.dtype.kind != "f":
        raise RuntimeError("mean(): could not infer output dtype. Input dtype must be either a "
                           f"floating point or complex dtype. Got: {input.dtype.name}")
    dims = norm_dims(dim, d.ndim)
    n = _numel(d.shape, dims)
    s = sum(input, dim, keepdim)
    return named(s / n if n else s * float("nan"),
                 "MeanBackward0" if dim is None else "MeanBackward1")


def var(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """Variance over ``dim`` with Bessel's ``correction`` (default 1; ``unbiased=False`` is 0)."""
    if isinstance(unbiased, bool) is False and unbiased is not None and dim is None:
        dim, unbiased = unbiased, None
    if correction is None:
        correction = 0 if unbiased is False else 1
    d = input._data
    if d.dtype.kind != "f":
        raise RuntimeError("std and var only support floating point and complex dtypes")
    dims = norm_dims(dim, d.ndim)
    n = _numel(d.shape, dims)
    xp = xp_of(input)
    mu = d.mean(axis=dims, keepdims=True) if n else d.sum(axis=dims, keepdims=True) * np.nan
    dev = d - mu
    denom = builtins.max(n - correction, 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = wrap(xp.asarray((dev * dev).sum(axis=dims, keepdims=keepdim) / d.dtype.type(denom)
                            if denom else (dev * dev).sum(axis=dims, keepdims=keepdim) * np.nan))
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, _):
            ge = expand_back(g, shape, dims, keepdim)
            c = input - mean(input, dims, keepdim=True)
            return (ge * c * (2.0 / denom if denom else float("nan")),)
        attach(r, (input,), bw, "VarBackward0", saved=(input,))
    return r


def std(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
        correction: Any = None) -> Tensor:
    """sqrt of var; gradient via sqrt and var."""
    from engine.ops.unary import sqrt

    return named(sqrt(var(input, dim, unbiased, keepdim, correction=correction)), "StdBackward0")


def var_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple:
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input: Tensor, dim: Any = None, unbiased: Any = None, keepdim: bool = False, *,
             correction: Any = None) -> tuple:
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def prod(input: Tensor, dim: Any = None, keepdim: bool = False, *, dtype: Any = None) -> Tensor:
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("prod", input)
    d = input._data
    if isinstance(dim, (tuple, list)):
        raise TypeError("prod(): argument 'dim' (position 1) must be int, not tuple")
    if dtype is not None:
        d = d.astype(to_dtype(dtype).np)
    elif d.dtype.kind in "biu":
        d = d.astype(np.int64)
    dims = norm_dims(dim, d.ndim)
    xp = xp_of(input)
    r = wrap(xp.asarray(d.prod(axis=dims, keepdims=keepdim)))
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, out):
            ge = expand_back(g, shape, dims, keepdim)
            if not bool((input._data == 0).any()):
                return (ge * expand_back(out, shape, dims, keepdim) / input,)
            return (ge * wrap(_prod_others(input._data, dims)),)
        attach(r, (input,), bw, "ProdBackward0", saved=(input,), save_out=True)
    return r


def _prod_others(x: Any, dims: tuple) -> Any:
    """Product of all other elements along ``dims`` for each element (handles zeros)."""
    xp = xp_of(wrap(x))
    nd = x.ndim
    rest = [i for i in range(nd) if i not in dims]
    perm = rest + list(dims)
    xt = xp.transpose(x, perm)
    lead = xt.shape[:len(rest)]
    flat = xt.reshape(lead + (-1,))
    ones = xp.ones(lead + (1,), dtype=x.dtype)
    left = xp.cumprod(xp.concatenate([ones, flat[..., :-1]], axis=-1), axis=-1)
    right = xp.flip(xp.cumprod(xp.concatenate([ones, xp.flip(flat, -1)[..., :-1]], axis=-1),
                               axis=-1), -1)
    others = (left * right).reshape(xt.shape)
    return xp.transpose(others, np.argsort(perm))


def amax(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    """Max over ``dim`` (all when empty); the gradient is shared evenly among ties."""
    return _amaxmin(input, dim, keepdim, True)


def amin(input: Tensor, dim: Any = (), keepdim: bool = False) -> Tensor:
    return _amaxmin(input, dim, keepdim, False)


def _amaxmin(input: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Tensor:
    d = input._data
    dims = norm_dims(None if dim == () or dim is None else dim, d.ndim)
    name = "amax" if is_max else "amin"
    for k in dims:
        if d.shape[k] == 0 and not (dim == () or dim is None):
            raise IndexError(f"{name}(): Expected reduction dim {k} to have non-zero size.")
    if d.size == 0 and _numel(d.shape, dims) == 0:
        raise RuntimeError(f"{'amax' if is_max else 'amin'}(): Expected reduction dim to be "
                           "specified for input.numel() == 0. Specify the reduction dim with "
                           "the 'dim' argument.")
    xp = xp_of(input)
    r = wrap(xp.asarray(d.max(axis=dims, keepdims=keepdim) if is_max else
                        d.min(axis=dims, keepdims=keepdim)))
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, out):
            mask = input == expand_back(out, shape, dims, keepdim)
            cnt = sum(mask, dims, keepdim=True)
            return (expand_back(g, shape, dims, keepdim) * mask / cnt,)
        attach(r, (input,), bw, "AmaxBackward0" if is_max else "AminBackward0", saved=(input,),
               save_out=True)
    return r


def max(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    """max(), max(dim, keepdim) -> (values, indices), or max(other) = maximum."""
    return _max_min(input, dim, keepdim, True)


def min(input: Tensor, dim: Any = None, keepdim: bool = False) -> Any:
    return _max_min(input, dim, keepdim, False)


def _max_min(input: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Any:
    if isinstance(dim, Tensor):
        from engine.ops.elementwise import maximum, minimum

        return maximum(input, dim) if is_max else minimum(input, dim)
    if dim is None:
        if input._data.size == 0:
            raise RuntimeError(f"{'max' if is_max else 'min'}(): Expected reduction dim to be "
                               "specified for input.numel() == 0.")
        return named(_amaxmin(input, None, False, is_max),
                     "MaxBackward1" if is_max else "MinBackward1")
    dim = norm_dim(dim, input._data.ndim)
    idx = argmax(input, dim, keepdim=True) if is_max else argmin(input, dim, keepdim=True)
    from engine.ops.indexing import gather

    values = gather(input, dim, idx) if input._data.ndim else input.reshape(())
    if not keepdim and input._data.ndim:
        values = values.squeeze(dim)
        idx = idx.squeeze(dim)
    return _MinMax(named(values, "MaxBackward0" if is_max else "MinBackward0"), idx)


def argmax(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _arg(input, dim, keepdim, True)


def argmin(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    return _arg(input, dim, keepdim, False)


def _arg(input: Tensor, dim: Any, keepdim: bool, is_max: bool) -> Tensor:
    d = input._data
    xp = xp_of(input)
    if d.size == 0 and (dim is None or d.shape[norm_dim(dim, d.ndim)] == 0):
        raise IndexError(f"{'argmax' if is_max else 'argmin'}(): Expected reduction dim to be "
                         "specified for input.numel() == 0.")
    if dim is None:
        i = d.argmax() if is_max else d.argmin()
        r = xp.asarray(i, dtype=np.int64)
        if keepdim:
            r = r.reshape((1,) * d.ndim)
        return wrap(r)
    if d.ndim == 0:
        norm_dim(dim, 0)
        return wrap(xp.zeros((), dtype=np.int64))
    dim = norm_dim(dim, d.ndim)
    i = d.argmax(axis=dim, keepdims=keepdim) if is_max else d.argmin(axis=dim, keepdims=keepdim)
    return wrap(i.astype(np.int64, copy=False))


def logsumexp(input: Tensor, dim: Any, keepdim: bool = False) -> Tensor:
    """log(sum(exp(x))) over ``dim``, computed stably; the gradient is the softmax."""
    if _amp.ACTIVE:
        input = _amp.fp32_one("logsumexp", input)
    d = input._data
    if d.dtype.kind != "f":
        d = d.astype(get_default_dtype().np)
    dims = norm_dims(dim, d.ndim)
    xp = xp_of(input)
    if d.size == 0:
        r = wrap(xp.log(xp.exp(d).sum(axis=dims, keepdims=keepdim)))
    else:
        m = d.max(axis=dims, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        s = xp.exp(d - m).sum(axis=dims, keepdims=True)
        out = xp.log(s) + m
        r = wrap(out if keepdim else out.reshape(tuple(n for i, n in enumerate(d.shape)
                                                         if i not in dims)))
    if STATE.enabled and input._rg:
        shape = d.shape

        def bw(g, out):
            from engine.ops.unary import exp

            return (expand_back(g, shape, dims, keepdim) *
                    exp(input - expand_back(out, shape, dims, keepdim)),)
        attach(r, (input,), bw, "LogsumexpBackward0", saved=(input,), save_out=True)
    return r


def _softmax_input(input: Tensor, dim: int | None, dtype: Any) -> tuple[Any, int, Any]:
    """(float array, resolved dim, array module) for softmax and log_softmax."""
    d = input._data if dtype is None else input._data.astype(to_dtype(dtype).np)
    if d.dtype.kind != "f":
        d = d.astype(get_default_dtype().np)
    return d, _softmax_dim(dim, d.ndim), xp_of(input)


def softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """exp(x) / sum(exp(x)) along ``dim``."""
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("softmax", input)
    d, dim, xp = _softmax_input(input, dim, dtype)
    if d.ndim == 0:
        e = xp.ones_like(d)
    else:
        e = d - d.max(axis=dim, keepdims=True)
        xp.exp(e, out=e)
        e /= e.sum(axis=dim, keepdims=True)
    r = wrap(e)
    if STATE.enabled and input._rg:
        def bw(g, out):
            return (out * (g - sum(g * out, dim, keepdim=True)),)
        attach(r, (input,), bw, "SoftmaxBackward0", save_out=True)
    return r


def log_softmax(input: Tensor, dim: int | None = None, dtype: Any = None) -> Tensor:
    """x - logsumexp(x) along ``dim``."""
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("log_softmax", input)
    d, dim, xp = _softmax_input(input, dim, dtype)
    if d.ndim == 0:
        out = xp.zeros_like(d)
    else:
        s = d - d.max(axis=dim, keepdims=True)
        out = s - xp.log(xp.exp(s).sum(axis=dim, keepdims=True))
    r = wrap(out)
    if STATE.enabled and input._rg:
        def bw(g, out):
            from engine.ops.unary import exp

            return (g - exp(out) * sum(g, dim, keepdim=True),)
        attach(r, (input,), bw, "LogSoftmaxBackward0", save_out=True)
    return r


def _softmax_dim(dim: Any, ndim: int) -> int:
    if dim is None:  # torch's legacy implicit choice
        dim = 0 if ndim in (0, 1, 3) else 1
    return norm_dim(dim, ndim)


def norm(input: Tensor, p: Any = "fro", dim: Any = None, keepdim: bool = False,
         dtype: Any = None) -> Tensor:
    """Vector p-norm over ``dim`` (all elements when None); 'fro' is the 2-norm."""
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("norm", input)
    return named(_norm(input, p, dim, keepdim, dtype), "LinalgVectorNormBackward0")


def _norm(input: Tensor, p: Any, dim: Any, keepdim: bool, dtype: Any) -> Tensor:
    from engine.ops.elementwise import where
    from engine.ops.unary import abs as _abs

    x = input if dtype is None else input.to(to_dtype(dtype))
    if x._data.dtype.kind != "f":
        raise RuntimeError("linalg.vector_norm: Expected a floating point or complex tensor as "
                           f"input. Got {x.dtype.name}")
    if p == "fro" or p == 2 or p is None:
        d = x._data
        dims = norm_dims(dim, d.ndim)
        xp = xp_of(x)
        r = wrap(xp.sqrt(xp.asarray((d * d).sum(axis=dims, keepdims=keepdim))))
        if STATE.enabled and x._rg:
            shape = d.shape

            def bw(g, out):
                o = expand_back(out, shape, dims, keepdim)
                return (where(o == 0, 0.0, expand_back(g, shape, dims, keepdim) * x / o),)
            attach(r, (x,), bw, "NormBackward1", saved=(x,), save_out=True)
        return r
    a = _abs(x)
    if p == float("inf"):
        return amax(a, dim if dim is not None else (), keepdim)
    if p == float("-inf"):
        return amin(a, dim if dim is not None else (), keepdim)
    if p == 1:
        return sum(a, dim, keepdim)
    if p == 0:
        return sum((a != 0).to(x.dtype), dim, keepdim)
    return sum(a ** p, dim, keepdim) ** (1.0 / p)


def cumsum(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("cumsum", input)
    d = input._data
    if dtype is not None:
        d = d.astype(to_dtype(dtype).np)
    elif d.dtype.kind in "biu":
        d = d.astype(np.int64)
    dim = norm_dim(dim, d.ndim)
    xp = xp_of(input)
    r = wrap(xp.cumsum(d, axis=dim) if d.ndim else d.copy())
    if STATE.enabled and input._rg:
        def bw(g, _):
            if g._data.ndim == 0:
                return (g,)
            return (cumsum(g.flip(dim), dim).flip(dim),)
        attach(r, (input,), bw, "CumsumBackward0")
    return r


def cumprod(input: Tensor, dim: int, *, dtype: Any = None) -> Tensor:
    """Cumulative product; the gradient assumes no zeros in the input (uses out / x)."""
    if _amp.ACTIVE and dtype is None:
        input = _amp.fp32_one("cumprod", input)
    d = input._data if dtype is None else input._data.astype(to_dtype(dtype).np)
    if d.dtype.kind in "biu" and dtype is None:
        d = d.astype(np.int64)
    dim = norm_dim(dim, d.ndim)
    xp = xp_of(input)
    r = wrap(xp.cumprod(d, axis=dim) if d.ndim else d.copy())
    if STATE.enabled and input._rg:
        def bw(g, out):
            if g._data.ndim == 0:
                return (g,)
            return (cumsum((g * out).flip(dim), dim).flip(dim) / input,)
        attach(r, (input,), bw, "CumprodBackward0", saved=(input,), save_out=True)
    return r


def any(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    d = input._data
    xp = xp_of(input)
    return wrap(xp.asarray(d.any(axis=None if dim is None else norm_dims(dim, d.ndim),
                                 keepdims=keepdim)))


def all(input: Tensor, dim: Any = None, keepdim: bool = False) -> Tensor:
    d = input._data
    xp = xp_of(input)
    return wrap(xp.asarray(d.all(axis=None if dim is None else norm_dims(dim, d.ndim),
                                 keepdims=keepdim)))


def count_nonzero(input: Tensor, dim: Any = None) -> Tensor:
    d = input._data
    xp = xp_of(input)
    return wrap(xp.asarray((d != 0).sum(axis=None if dim is None else norm_dims(dim, d.ndim)),
                           dtype=np.int64))


def sort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Any:
    """(values, indices) sorted along ``dim``; ties keep their order (stable)."""
    idx = argsort(input, dim, descending)
    from engine.ops.indexing import gather

    d = input._data
    if d.ndim == 0:
        return _MinMax(input.clone(), idx)
    return _MinMax(named(gather(input, norm_dim(dim, d.ndim), idx), "SortBackward0"), idx)


def argsort(input: Tensor, dim: int = -1, descending: bool = False, stable: bool = False) -> Tensor:
    d = input._data
    xp = xp_of(input)
    if d.ndim == 0:
        return wrap(xp.zeros((), dtype=np.int64))
    dim = norm_dim(dim, d.ndim)
    if descending:
        key = d.astype(np.int8) if d.dtype == np.bool_ else d
        n = d.shape[dim]
        # stable descending: sort the reversed array ascending, then map indices back
        rev = xp.flip(key, dim)
        i = xp.argsort(rev, axis=dim, kind="stable")
        i = xp.flip(n - 1 - i, dim)
    else:
        i = xp.argsort(d, axis=dim, kind="stable")
    return wrap(i.astype(np.int64, copy=False))


def topk(input: Tensor, k: int, dim: int = -1, largest: bool = True, sorted: bool = True) -> Any:
    """The k largest (or smallest) values along ``dim`` and their indices."""
    d = input._data
    dim = norm_dim(dim, d.ndim)
    n = d.shape[dim] if d.ndim else 1
    if not 0 <= k <= n:
        raise RuntimeError("selected index k out of range")
    idx = argsort(input, dim, descending=largest)
    if d.ndim:
        idx = idx.narrow(dim, 0, k)
    from engine.ops.indexing import gather

    values = gather(input, dim, idx) if d.ndim else input.clone()
    return _MinMax(named(values, "TopkBackward0"), idx)


_ = _builtin_sum
