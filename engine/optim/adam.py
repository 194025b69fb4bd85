"""Adam and AdamW, with torch's update order and bias corrections (_single_tensor_adam)."""
from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import partial
from typing import Any

from engine import fused as _fused
from engine.backend import get_array_module
from engine.optim.optimizer import (
    Optimizer,
    _bump,
    _foreach_blocked,
    _params_with_grad,
    _zero_step,
    _zeros_like,
)

__all__ = ["Adam", "AdamW"]


def _adam_kernel(xp: Any, beta1: float, beta2: float, eps: float, bc2_sqrt: float, step_size: float,
                 param: Any, g: Any, m: Any, v: Any, t: Any, vmax: Any = None) -> None:
    """One Adam update in torch's arithmetic order, every op in place or into the work array t."""
    xp.subtract(g, m, out=t)
    t *= 1 - beta1
    m += t  # torch's lerp for weights < 0.5
    v *= beta2
    xp.multiply(g, 1 - beta2, out=t)
    t *= g
    v += t
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
        xp.sqrt(vmax, out=t)
    else:
        xp.sqrt(v, out=t)
    t /= bc2_sqrt
    t += eps
    xp.divide(m, t, out=t)
    t *= step_size
    param -= t


def check_adam_arguments(lr: float, eps: float, betas: tuple[float, float], weight_decay: float,
                         differentiable: bool) -> None:
    """torch's argument checks shared by Adam, AdamW and Adamax, with torch's messages."""
    if not 0.0 <= lr:
        raise ValueError(f"Invalid learning rate: {lr}")
    if not 0.0 <= eps:
        raise ValueError(f"Invalid epsilon value: {eps}")
    if not 0.0 <= betas[0] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 0: {betas[0]}")
    if not 0.0 <= betas[1] < 1.0:
        raise ValueError(f"Invalid beta parameter at index 1: {betas[1]}")
    if not 0.0 <= weight_decay:
        raise ValueError(f"Invalid weight_decay value: {weight_decay}")
    if differentiable:
        raise ValueError("differentiable optimizers are not supported")


class Adam(Optimizer):
    """torch.optim.Adam: m = lerp(m, g, 1 - b1); v = b2 v + (1 - b2) g^2;
    p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps). ``amsgrad`` uses max(v)."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0, amsgrad: bool = False, *,
                 foreach: bool | None = None, maximize: bool = False, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None,
                 decoupled_weight_decay: bool = False) -> None:
        check_adam_arguments(lr, eps, betas, weight_decay, differentiable)
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay, "amsgrad": amsgrad,
                        "maximize": maximize, "foreach": foreach, "capturable": capturable,
                        "differentiable": differentiable, "fused": fused,
                        "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        loss = self._closure_loss(closure)
        for group in self.param_groups:
            lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
            wd, amsgrad, maximize = group["weight_decay"], group["amsgrad"], group["maximize"]
            decoupled = group.get("decoupled_weight_decay", False)
            for p in _params_with_grad(group):
                state = self.state[p]
                if len(state) == 0:
                    state["step"] = _zero_step()
                    state["exp_avg"] = _zeros_like(p)
                    state["exp_avg_sq"] = _zeros_like(p)
                    if amsgrad:
                        state["max_exp_avg_sq"] = _zeros_like(p)
                xp = get_array_module(p._data)
                param = p._data
                g = p.grad._data
                if maximize:
                    g = -g
                step_t = state["step"]._data
                step_t += 1
                if wd != 0:
                    if decoupled:
                        param *= 1 - lr * wd
                    else:
                        g = g + wd * param
                step = float(step_t)
                bias_correction2_sqrt = (1 - beta2**step) ** 0.5
                step_size = lr / (1 - beta1**step)
                arrays = [param, g, state["exp_avg"]._data, state["exp_avg_sq"]._data, self._scratch(param)]
                if amsgrad:
                    arrays.append(state["max_exp_avg_sq"]._data)
                if _fused.adam_update(xp, beta1, beta2, eps, bias_correction2_sqrt, step_size, *arrays):
                    _bump(p)
                    continue
                _foreach_blocked(partial(_adam_kernel, xp, beta1, beta2, eps, bias_correction2_sqrt, step_size),
                                 *arrays)
                _bump(p)
        return loss


class AdamW(Adam):
    """Adam with decoupled weight decay (p *= 1 - lr * wd before the update); wd defaults to 1e-2."""

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 1e-2, amsgrad: bool = False, *,
                 maximize: bool = False, foreach: bool | None = None, capturable: bool = False,
                 differentiable: bool = False, fused: bool | None = None) -> None:
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, foreach=foreach, maximize=maximize,
                         capturable=capturable, differentiable=differentiable, fused=fused,
                         decoupled_weight_decay=True)
