"""Containers: Sequential (a chain) and the graph spec's GraphModule, whose functional op nodes
(engine/spec/ops.py: add, cat, flatten, reshape, select, getitem, ...) are translated here."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine import nn
from engine.spec.graph import GraphModule
from export import basic
from export.builder import (
    Builder,
    ExportError,
    Val,
    axis,
    broadcast,
    child,
    fmt,
    translate,
    translator,
)


@translator(nn.Sequential)
def sequential(b: Builder, m: nn.Sequential, args: list, path: str) -> Any:
    out = args
    for name, layer in m._modules.items():
        out = [translate(b, layer, out, child(path, name))]
    return out[0] if len(out) == 1 else out


def _one(xs: list, name: str, path: str, count: int | None = None) -> list[Val]:
    for x in xs:
        if not isinstance(x, Val):
            raise ExportError(path, f"{name} op", "receives several tensors; pick one with 'getitem' first")
    return xs


def _fold(op_type: str) -> Callable:
    def fn(b: Builder, xs: list[Val], path: str) -> Val:
        out = xs[0]
        for x in xs[1:]:
            out = b.binary(op_type, out, x, path)
        return out
    return fn


def _matmul(b: Builder, xs: list[Val], path: str) -> Val:
    x, y = xs
    if x.rank == 1 and y.rank == 1:
        shape: tuple = ()
    elif x.rank == 1:
        shape = y.shape[:-2] + y.shape[-1:]
    elif y.rank == 1:
        shape = x.shape[:-1]
    else:
        shape = broadcast(x.shape[:-2], y.shape[:-2]) + (x.shape[-2], y.shape[-1])
    return b.op("MatMul", [x, y], shape, hint=path)


def _squeeze(b: Builder, xs: list[Val], path: str, dim: int | None = None) -> Val:
    (x,) = xs
    if dim is None:  # every size-1 dimension, at run time too (a batch of one included, as the engine)
        return b.op("Squeeze", [x], tuple(s for s in x.shape if s != 1), hint=path)
    d = axis(dim, x.rank)
    if x.shape[d] is None:
        raise ExportError(path, "squeeze op", f"squeezes dimension {dim} of {fmt(x.shape)}, whose size is only "
                                              "known at run time")
    return b.squeeze(x, [d], path) if x.shape[d] == 1 else x


def _reduce(op_type: str) -> Callable:
    def fn(b: Builder, xs: list[Val], path: str, dim: Any = None, keepdim: bool = False) -> Val:
        (x,) = xs
        if dim is None:  # the engine's x.mean() / x.sum(): a scalar
            return b.reduce(op_type, x, None, False, path)
        dims = dim if isinstance(dim, (list, tuple)) else [dim]
        return b.reduce(op_type, x, dims, bool(keepdim), path)
    return fn


def _select(b: Builder, xs: list[Val], path: str, dim: int, index: int) -> Val:
    (x,) = xs
    d = axis(dim, x.rank)
    idx = b.const(np.array(index, dtype=np.int64), f"{path}.index")
    return b.op("Gather", [x, idx], x.shape[:d] + x.shape[d + 1:], hint=path, axis=d)


def _stack(b: Builder, xs: list[Val], path: str, dim: int = 0) -> Val:
    d = axis(dim, xs[0].rank + 1)
    return b.concat([b.unsqueeze(x, [d], path) for x in xs], d, path)


def _permute(b: Builder, xs: list[Val], path: str, dims: list) -> Val:
    (x,) = xs
    return b.transpose(x, [axis(d, x.rank) for d in dims], path)


def _transpose(b: Builder, xs: list[Val], path: str, dim0: int, dim1: int) -> Val:
    (x,) = xs
    perm = list(range(x.rank))
    a, c = axis(dim0, x.rank), axis(dim1, x.rank)
    perm[a], perm[c] = perm[c], perm[a]
    return b.transpose(x, perm, path)


def _reshape(b: Builder, xs: list[Val], path: str, shape: list) -> Val:
    (x,) = xs
    return b.reshape(x, [int(s) for s in shape], path)


def _unary(op_type: str) -> Callable:
    return lambda b, xs, path: b.unary(op_type, xs[0], path)


def _softmax(op_type: str) -> Callable:
    return lambda b, xs, path, dim: b.unary(op_type, xs[0], path, axis=axis(dim, xs[0].rank))


OPS: dict[str, Callable] = {
    "add": _fold("Add"),
    "mul": _fold("Mul"),
    "sub": _fold("Sub"),
    "div": _fold("Div"),
    "matmul": _matmul,
    "cat": lambda b, xs, path, dim=0: b.concat(xs, dim, path) if len(xs) > 1 else xs[0],
    "stack": _stack,
    "flatten": lambda b, xs, path, start_dim=0, end_dim=-1: basic.flatten_val(b, xs[0], start_dim, end_dim, path),
    "reshape": _reshape,
    "permute": _permute,
    "transpose": _transpose,
    "unsqueeze": lambda b, xs, path, dim: b.unsqueeze(xs[0], [dim], path),
    "squeeze": _squeeze,
    "mean": _reduce("ReduceMean"),
    "sum": _reduce("ReduceSum"),
    "softmax": _softmax("Softmax"),
    "log_softmax": _softmax("LogSoftmax"),
    "relu": _unary("Relu"),
    "sigmoid": _unary("Sigmoid"),
    "tanh": _unary("Tanh"),
    "gelu": lambda b, xs, path: basic.gelu_val(b, xs[0], "none", path),
    "select": _select,
}


def op(b: Builder, name: str, xs: list, kwargs: dict, path: str) -> Any:
    if name == "getitem":
        (x,) = xs
        index = kwargs["index"]
        if not isinstance(x, tuple):
            raise ExportError(path, "getitem op", "picks from a layer's several outputs; this input is one tensor")
        return x[index]
    fn = OPS.get(name)
    if fn is None:
        raise ExportError(path, f"{name} op", "no ONNX translation for this op")
    try:
        return fn(b, _one(xs, name, path), path, **kwargs)
    except ExportError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ExportError(path, f"{name} op", str(exc)) from exc


@translator(GraphModule)
def graph_module(b: Builder, m: GraphModule, args: list, path: str) -> Any:
    plan = m.plan
    if len(args) != len(plan.inputs):
        raise ExportError(path, "GraphModule", f"takes {len(plan.inputs)} inputs, got {len(args)}")
    values = dict(zip(plan.inputs, args))
    for node in plan.nodes:
        xs = [values[n] for n in node.inputs]
        where = child(path, node.name)
        if node.cls is not None:
            values[node.name] = translate(b, getattr(m, node.name), xs, where)
        else:
            values[node.name] = op(b, node.op, xs, node.kwargs, where)
    if isinstance(plan.outputs, dict):
        return {head: values[ref] for head, ref in plan.outputs.items()}
    return values[plan.outputs]
