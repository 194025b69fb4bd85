"""Functional ops a graph node may apply (``{"op": "add", "inputs": [...]}``): for each, the
arguments it takes, its static shape rule and what it computes on engine tensors."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import engine
from engine.nn import functional as F
from engine.spec import shapes as S
from engine.spec.shapes import ShapeError


@dataclass(frozen=True)
class Op:
    arity: tuple[int, int]  # min, max number of inputs
    args: dict[str, Any]  # argument -> default (``REQUIRED`` when there is none)
    shape: Callable[..., Any]  # (input shapes, **args) -> output shape
    run: Callable[..., Any]  # (input tensors, **args) -> output


REQUIRED = object()


def _same(xs, **_):
    return xs[0]


def _broadcast(xs, **_):
    out = xs[0]
    for x in xs[1:]:
        out = S.broadcast(out, x)
    return out


def _cat(xs, dim=0):
    d = S.axis(xs[0], dim)
    for x in xs[1:]:
        if len(x) != len(xs[0]) or any(a != b for i, (a, b) in enumerate(zip(x, xs[0])) if i != d):
            raise ShapeError(f"cannot concatenate shapes {S.fmt(xs[0])} and {S.fmt(x)} along dim {dim}")
    return xs[0][:d] + (sum(x[d] for x in xs),) + xs[0][d + 1:]


def _stack(xs, dim=0):
    if any(x != xs[0] for x in xs):
        raise ShapeError(f"stack needs equal shapes, got {', '.join(S.fmt(x) for x in xs)}")
    d = S.axis(xs[0] + (1,), dim)
    return xs[0][:d] + (len(xs),) + xs[0][d:]


def _reduce(xs, dim=None, keepdim=False):
    x = xs[0]
    if dim is None:
        return (1,) * len(x) if keepdim else ()
    dims = {S.axis(x, d) for d in (dim if isinstance(dim, (list, tuple)) else [dim])}
    return tuple(1 if i in dims else n for i, n in enumerate(x) if keepdim or i not in dims)


def _permute(xs, dims):
    x = xs[0]
    if not isinstance(dims, (list, tuple)) or sorted(S.axis(x, d) for d in dims) != list(range(len(x))):
        raise ShapeError(f"dims {dims} is not a permutation of the {len(x)} dimensions of {S.fmt(x)}")
    return tuple(x[S.axis(x, d)] for d in dims)


def _transpose(xs, dim0, dim1):
    x = list(xs[0])
    a, b = S.axis(xs[0], dim0), S.axis(xs[0], dim1)
    x[a], x[b] = x[b], x[a]
    return tuple(x)


def _unsqueeze(xs, dim):
    d = S.axis(xs[0] + (1,), dim)
    return xs[0][:d] + (1,) + xs[0][d:]


def _squeeze(xs, dim=None):
    x = xs[0]
    if dim is None:
        return tuple(n for n in x if n != 1)
    d = S.axis(x, dim)
    return x[:d] + x[d + 1:] if x[d] == 1 else x


def _matmul(xs):
    a, b = xs
    if not a or not b:
        raise ShapeError("matmul needs tensors of at least 1 dimension")
    inner = b[-2] if len(b) > 1 else b[-1]
    if a[-1] != inner:
        raise ShapeError(f"matmul: {S.fmt(a)} @ {S.fmt(b)}: inner sizes {a[-1]} and {inner} differ")
    if len(a) == 1:
        return b[:-2] + b[-1:]
    if len(b) == 1:
        return a[:-1]
    return S.broadcast(a[:-2], b[:-2]) + (a[-2], b[-1])


def _getitem(xs, index):
    x = xs[0]
    if not isinstance(x, list):
        raise ShapeError("getitem picks from a layer's several outputs (e.g. LSTM's); this input is one tensor")
    if not isinstance(index, int) or isinstance(index, bool) or not -len(x) <= index < len(x):
        raise ShapeError(f"index {index} is out of range for {len(x)} outputs")
    return x[index]


def _select(xs, dim, index):
    x = xs[0]
    d = S.axis(x, dim)
    if not isinstance(index, int) or isinstance(index, bool) or not -x[d] <= index < x[d]:
        raise ShapeError(f"index {index} is out of range for dimension {dim} of size {x[d]}")
    return x[:d] + x[d + 1:]


def _run_select(ts, dim, index):
    x = ts[0]
    d = dim % x.ndim
    return x[(slice(None),) * d + (index,)]


def _check_softmax(xs, dim):
    S.axis(xs[0], dim)
    return xs[0]


def _flatten(xs, start_dim=0, end_dim=-1):
    return S.flatten(xs[0], start_dim, end_dim)


def _reshape(xs, shape):
    return S.reshape(xs[0], shape)


def _sum_all(ts):
    out = ts[0]
    for t in ts[1:]:
        out = out + t
    return out


def _mul_all(ts):
    out = ts[0]
    for t in ts[1:]:
        out = out * t
    return out


OPS: dict[str, Op] = {
    "add": Op((2, 16), {}, _broadcast, _sum_all),
    "mul": Op((2, 16), {}, _broadcast, _mul_all),
    "sub": Op((2, 2), {}, _broadcast, lambda ts: ts[0] - ts[1]),
    "div": Op((2, 2), {}, _broadcast, lambda ts: ts[0] / ts[1]),
    "matmul": Op((2, 2), {}, _matmul, lambda ts: engine.matmul(ts[0], ts[1])),
    "cat": Op((1, 64), {"dim": 0}, _cat, lambda ts, dim=0: engine.cat(list(ts), dim=dim)),
    "stack": Op((1, 64), {"dim": 0}, _stack, lambda ts, dim=0: engine.stack(list(ts), dim=dim)),
    "flatten": Op((1, 1), {"start_dim": 0, "end_dim": -1}, _flatten,
                  lambda ts, start_dim=0, end_dim=-1: engine.flatten(ts[0], start_dim, end_dim)),
    "reshape": Op((1, 1), {"shape": REQUIRED}, _reshape, lambda ts, shape: ts[0].reshape(tuple(shape))),
    "permute": Op((1, 1), {"dims": REQUIRED}, _permute, lambda ts, dims: ts[0].permute(*dims)),
    "transpose": Op((1, 1), {"dim0": REQUIRED, "dim1": REQUIRED}, _transpose,
                    lambda ts, dim0, dim1: ts[0].transpose(dim0, dim1)),
    "unsqueeze": Op((1, 1), {"dim": REQUIRED}, _unsqueeze, lambda ts, dim: ts[0].unsqueeze(dim)),
    "squeeze": Op((1, 1), {"dim": None}, _squeeze,
                  lambda ts, dim=None: ts[0].squeeze() if dim is None else ts[0].squeeze(dim)),
    "mean": Op((1, 1), {"dim": None, "keepdim": False}, _reduce,
               lambda ts, dim=None, keepdim=False: ts[0].mean() if dim is None else
               ts[0].mean(dim=tuple(dim) if isinstance(dim, list) else dim, keepdim=keepdim)),
    "sum": Op((1, 1), {"dim": None, "keepdim": False}, _reduce,
              lambda ts, dim=None, keepdim=False: ts[0].sum() if dim is None else
              ts[0].sum(dim=tuple(dim) if isinstance(dim, list) else dim, keepdim=keepdim)),
    "softmax": Op((1, 1), {"dim": REQUIRED}, _check_softmax, lambda ts, dim: F.softmax(ts[0], dim=dim)),
    "log_softmax": Op((1, 1), {"dim": REQUIRED}, _check_softmax, lambda ts, dim: F.log_softmax(ts[0], dim=dim)),
    "relu": Op((1, 1), {}, _same, lambda ts: F.relu(ts[0])),
    "sigmoid": Op((1, 1), {}, _same, lambda ts: engine.sigmoid(ts[0])),
    "tanh": Op((1, 1), {}, _same, lambda ts: engine.tanh(ts[0])),
    "gelu": Op((1, 1), {}, _same, lambda ts: F.gelu(ts[0])),
    "getitem": Op((1, 1), {"index": REQUIRED}, _getitem, lambda ts, index: ts[0][index]),
    "select": Op((1, 1), {"dim": REQUIRED, "index": REQUIRED}, _select, _run_select),
}


def op_flops(out: Any) -> int:
    return math.prod(out) if isinstance(out, tuple) else 0
