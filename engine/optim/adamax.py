"""Adamax: Adam with the infinity norm (torch's _single_tensor_adamax update order)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.backend import get_array_module
from engine.optim.adam import check_adam_arguments
from engine.optim.optimizer import Optimizer, _bump, _params_with_grad, _zero_step, _zeros_like

__all__ = ["Adamax"]


class Adamax(Optimizer):
    """m = lerp(m, g, 1 - b1); u = max(b2 u, |g| + eps); p -= lr / (1 - b1^t) * m / u."""

    def __init__(self, params: Iterable[Any], lr: float = 2e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, foreach: bool | None = None, *,
                 maximize: bool = False, differentiable: bool = False, capturable: bool = False) -> None:
        check_adam_arguments(lr, eps, betas, weight_decay, differentiable)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "foreach": foreach,
                        "maximize": maximize, "differentiable": differentiable, "capturable": capturable}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in _params_with_grad(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = _zero_step()
                    state["exp_avg"] = _zeros_like(p)
                    state["exp_inf"] = _zeros_like(p)
                xp = get_array_module(p._data)
                g = -p.grad._data if group["maximize"] else p.grad._data
                state["step"]._data += 1
                if wd != 0:
                    g = g + wd * p._data
                m, u = state["exp_avg"]._data, state["exp_inf"]._data
                m += (1 - beta1) * (g - m)
                u *= beta2
                xp.maximum(u, xp.abs(g) + eps, out=u)
                clr = lr / (1 - beta1 ** float(state["step"]._data))
                p._data -= clr * (m / u)
                _bump(p)
        return loss
