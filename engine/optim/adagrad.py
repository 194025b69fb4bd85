"""Adagrad (torch's: state created eagerly, learning-rate decay per step)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from engine.backend import get_array_module
from engine.optim.optimizer import Optimizer, _bump, _params_with_grad, _zero_step
from engine.tensor import Tensor

__all__ = ["Adagrad"]


class Adagrad(Optimizer):
    """s += g^2; p -= lr / (1 + (t - 1) lr_decay) * g / (sqrt(s) + eps)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-2, lr_decay: float = 0,
                 weight_decay: float = 0, initial_accumulator_value: float = 0, eps: float = 1e-10,
                 foreach: bool | None = None, *, maximize: bool = False, differentiable: bool = False,
                 fused: bool | None = None) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= lr_decay:
            raise ValueError(f"Invalid lr_decay value: {lr_decay}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        if not 0.0 <= initial_accumulator_value:
            raise ValueError(f"Invalid initial_accumulator_value value: {initial_accumulator_value}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        defaults = {"lr": lr, "lr_decay": lr_decay, "eps": eps, "weight_decay": weight_decay,
                        "initial_accumulator_value": initial_accumulator_value, "foreach": foreach,
                        "maximize": maximize, "differentiable": differentiable, "fused": fused}
        super().__init__(params, defaults)
        for group in self.param_groups:
            for p in group["params"]:
                self._init_state(p, group)

    def _init_state(self, p: Tensor, group: dict) -> None:
        state = self.state[p]
        if len(state) == 0:
            xp = get_array_module(p._data)
            state["step"] = _zero_step()
            state["sum"] = Tensor._wrap(xp.full_like(p._data, group["initial_accumulator_value"]))

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, lr_decay, eps, wd = group["lr"], group["lr_decay"], group["eps"], group["weight_decay"]
            for p in _params_with_grad(group):
                self._init_state(p, group)
                state = self.state[p]
                xp = get_array_module(p._data)
                g = -p.grad._data if group["maximize"] else p.grad._data
                state["step"]._data += 1
                step = float(state["step"]._data)
                if wd != 0:
                    g = g + wd * p._data
                clr = lr / (1 + (step - 1) * lr_decay)
                s = state["sum"]._data
                s += g * g
                p._data -= clr * (g / (xp.sqrt(s) + eps))
                _bump(p)
        return loss
