"""clip_grad_norm_ and clip_grad_value_ on the gradient arrays, in place."""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from engine.backend import get_array_module
from engine.tensor import Tensor

__all__ = ["clip_grad_norm_", "clip_grad_value_", "get_total_norm"]


def _grads(parameters: Any) -> list:
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def get_total_norm(tensors: Iterable[Tensor], norm_type: float = 2.0, error_if_nonfinite: bool = False,
                   foreach: bool | None = None) -> Tensor:
    """The norm of the norms of ``tensors`` (their concatenation's p-norm)."""
    tensors = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not tensors:
        return Tensor._wrap(get_array_module().asarray(0.0, dtype="float32"))
    xp = get_array_module(tensors[0]._data)
    norm_type = float(norm_type)
    if math.isinf(norm_type):
        norms = [xp.abs(t._data).max() for t in tensors]
        total = xp.max(xp.stack(norms))
    else:
        norms = [xp.sum(xp.abs(t._data.astype(xp.float64, copy=False)) ** norm_type) for t in tensors]
        total = xp.sum(xp.stack(norms)) ** (1.0 / norm_type)
    total = xp.asarray(total, dtype=tensors[0]._data.dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(f"The total norm of order {norm_type} for gradients from `parameters` is non-finite, "
                           "so it cannot be clipped. To disable this error and scale the gradients by the "
                           "non-finite norm anyway, set `error_if_nonfinite=False`")
    return Tensor._wrap(total)


def clip_grad_norm_(parameters: Any, max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False,
                    foreach: bool | None = None) -> Tensor:
    """Scales all gradients by min(1, max_norm / (total_norm + 1e-6)); returns the total norm."""
    grads = _grads(parameters)
    if not grads:
        from engine.tensor import tensor

        return tensor(0.0)
    total = get_total_norm(grads, norm_type, error_if_nonfinite)
    coef = float(max_norm) / (float(total._data) + 1e-6)
    if coef < 1.0:
        for g in grads:
            g._data *= g._data.dtype.type(coef)
    return total


def clip_grad_value_(parameters: Any, clip_value: float, foreach: bool | None = None) -> None:
    """Clamps every gradient element into [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    for g in _grads(parameters):
        xp = get_array_module(g._data)
        xp.clip(g._data, -clip_value, clip_value, out=g._data)
