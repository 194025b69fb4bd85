"""Stochastic gradient descent with momentum, dampening, Nesterov and weight decay."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from engine import fused as _fused
from engine.backend import get_array_module
from engine.optim.optimizer import Optimizer, _bump, _foreach_blocked, _params_with_grad
from engine.tensor import Tensor

__all__ = ["SGD"]


def _sgd_kernel(xp: Any, lr: float, momentum: float, damp: float, nesterov: bool, fresh: bool,
                p: Any, g: Any, work: Any, buf: Any = None) -> None:
    """One block of the update in place: ``buf = momentum * buf + damp * g`` (with a buffer not
    ``fresh``: a fresh one is a copy of g), ``p -= lr * step``, step = buf, g + momentum * buf
    (Nesterov) or g (no momentum); the same operations in the same order as the whole-array
    expressions, so the same bits."""
    if buf is None:
        step = g
    else:
        if not fresh:
            buf *= momentum
            if damp == 1:
                buf += g
            else:
                buf += xp.multiply(g, damp, out=work)
        step = buf
        if nesterov:
            step = xp.multiply(buf, momentum, out=work)
            step += g
    p -= xp.multiply(step, lr, out=work)


class SGD(Optimizer):
    """torch.optim.SGD: ``buf = momentum * buf + (1 - dampening) * g``; ``p -= lr * buf``
    (or ``g + momentum * buf`` with Nesterov); weight decay adds ``wd * p`` to g."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, momentum: float = 0,
                 dampening: float = 0, weight_decay: float = 0, nesterov: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        if lr < 0.0:
            raise ValueError(f"Invalid learning rate: {lr}")
        if momentum < 0.0:
            raise ValueError(f"Invalid momentum value: {momentum}")
        if weight_decay < 0.0:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum and zero dampening")
        if differentiable:
            raise ValueError("differentiable optimizers are not supported")
        defaults = {"lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weight_decay,
                        "nesterov": nesterov, "maximize": maximize, "foreach": foreach,
                        "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov, maximize = group["weight_decay"], group["nesterov"], group["maximize"]
            for p in _params_with_grad(group):
                if _fused.sgd_step(self.state, p, lr, momentum, dampening, wd, nesterov, maximize):
                    _bump(p)
                    continue
                g = p.grad._data
                if maximize:
                    g = -g
                if wd != 0:
                    g = g + wd * p._data
                buf, fresh = None, False
                if momentum != 0:
                    state = self.state[p]
                    fresh = state.get("momentum_buffer") is None
                    if fresh:
                        state["momentum_buffer"] = Tensor._wrap(g.copy())
                    buf = state["momentum_buffer"]._data
                xp = get_array_module(p._data)
                kernel = partial(_sgd_kernel, xp, lr, momentum, 1 - dampening, nesterov, fresh)
                _foreach_blocked(kernel, p._data, g, self._scratch(p._data), *(() if buf is None else (buf,)))
                _bump(p)
        return loss
