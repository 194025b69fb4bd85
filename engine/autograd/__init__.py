"""engine.autograd: backward, grad (higher order via create_graph), Function, gradcheck.

    >>> x = engine.tensor([1.0, 2.0], requires_grad=True)
    >>> (g,) = engine.autograd.grad((x ** 3).sum(), x, create_graph=True)
    >>> (h,) = engine.autograd.grad(g.sum(), x)      # 6 * x
"""
from __future__ import annotations

from typing import Any

from engine.autograd.function import Function, FunctionCtx
from engine.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from engine.autograd.gradcheck import gradcheck, gradgradcheck
from engine.autograd.graph import Node, run_backward

__all__ = [
    "Function",
    "FunctionCtx",
    "Node",
    "backward",
    "enable_grad",
    "grad",
    "gradcheck",
    "gradgradcheck",
    "inference_mode",
    "is_grad_enabled",
    "is_inference_mode_enabled",
    "no_grad",
    "set_grad_enabled",
]


def _as_list(x: Any) -> list:
    if x is None:
        return []
    from engine.tensor import Tensor

    if isinstance(x, Tensor):
        return [x]
    return list(x)


def _root_grads(outputs: list, grads: list | None, create_graph: bool) -> list:
    from engine.tensor import Tensor

    out = []
    for i, o in enumerate(outputs):
        g = None if grads is None or i >= len(grads) else grads[i]
        if g is None:
            if o._data.size != 1:
                raise RuntimeError("grad can be implicitly created only for scalar outputs")
            if o._data.dtype.kind != "f":
                raise RuntimeError("grad can be implicitly created only for real scalar outputs "
                                   f"but got {o.dtype.name}")
            g = Tensor._wrap(_xp(o).ones_like(o._data))
        elif not isinstance(g, Tensor):
            from engine.tensor import tensor

            g = tensor(g, dtype=o.dtype)
        if g._data.shape != o._data.shape:
            raise RuntimeError(f"Mismatch in shape: grad_output[{i}] has a shape of "
                               f"{list(g.shape)} and output[{i}] has a shape of {list(o.shape)}.")
        out.append(g)
    return out


def _xp(t: Any) -> Any:
    from engine.backend import xp_of

    return xp_of(t._data)


def _check_roots(outputs: list) -> None:
    for i, o in enumerate(outputs):
        if not o._rg:
            raise RuntimeError(f"element {i} of tensors does not require grad and does not have "
                               "a grad_fn")


def backward(tensors: Any, grad_tensors: Any = None, retain_graph: bool | None = None,
             create_graph: bool = False, inputs: Any = None) -> None:
    """Accumulate gradients of ``tensors`` into the ``.grad`` of the leaves (or of ``inputs``)."""
    outputs = _as_list(tensors)
    _check_roots(outputs)
    grads = _root_grads(outputs, _as_list(grad_tensors) or None, create_graph)
    if retain_graph is None:
        retain_graph = create_graph
    ins = _as_list(inputs) or None
    if ins is not None:
        for t in ins:
            if t.grad_fn is not None:  # a non-leaf input gets its .grad like a leaf
                t.retain_grad()
    run_backward(outputs, grads, retain_graph, create_graph, inputs=ins, accumulate=True)


def grad(outputs: Any, inputs: Any, grad_outputs: Any = None, retain_graph: bool | None = None,
         create_graph: bool = False, allow_unused: bool | None = None,
         is_grads_batched: bool = False, materialize_grads: bool = False) -> tuple:
    """The gradients of ``outputs`` with respect to ``inputs``, without touching ``.grad``."""
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    _check_roots(outs)
    for t in ins:
        if not t._rg:
            raise RuntimeError("One of the differentiated Tensors does not require grad")
    grads = _root_grads(outs, _as_list(grad_outputs) or None, create_graph)
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(outs, grads, retain_graph, create_graph, inputs=ins, accumulate=False)
    result = []
    for t, g in zip(ins, res):
        if g is None:
            if materialize_grads:
                from engine.tensor import Tensor

                g = Tensor._wrap(_xp(t).zeros_like(t._data))
            elif not allow_unused:
                raise RuntimeError("One of the differentiated Tensors appears to not have been "
                                   "used in the graph. Set allow_unused=True if this is the "
                                   "desired behavior.")
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)

