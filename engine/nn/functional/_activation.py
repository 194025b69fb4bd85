"""Activation functions (torch.nn.functional), written with Tensor ops so autograd is free."""
from __future__ import annotations

import math
import warnings
from typing import Any

from engine import fused as _fused
from engine.amp import _policy as _amp
from engine.tensor import Tensor

__all__ = [
    "celu",
    "elu",
    "gelu",
    "glu",
    "hardsigmoid",
    "hardswish",
    "hardtanh",
    "leaky_relu",
    "log_softmax",
    "logsigmoid",
    "mish",
    "relu",
    "relu6",
    "relu_",
    "selu",
    "sigmoid",
    "silu",
    "softmax",
    "softmin",
    "softplus",
    "softsign",
    "tanh",
    "tanhshrink",
    "threshold",
]


def relu(input: Tensor, inplace: bool = False) -> Tensor:
    return input.relu()


def relu_(input: Tensor) -> Tensor:
    return input.relu_()


def threshold(input: Tensor, threshold: float, value: float, inplace: bool = False) -> Tensor:
    return _where(input > threshold, input, value)


def _where(cond: Tensor, a: Any, b: Any) -> Tensor:
    import engine

    return engine.where(cond, a, b)


def hardtanh(input: Tensor, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False) -> Tensor:
    return input.clamp(min_val, max_val)


def relu6(input: Tensor, inplace: bool = False) -> Tensor:
    return hardtanh(input, 0.0, 6.0)


def leaky_relu(input: Tensor, negative_slope: float = 0.01, inplace: bool = False) -> Tensor:
    return _where(input > 0, input, input * negative_slope)


def elu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _where(input > 0, input, input.clamp(max=0.0).expm1() * alpha)


def celu(input: Tensor, alpha: float = 1.0, inplace: bool = False) -> Tensor:
    return _where(input > 0, input, (input / alpha).clamp(max=0.0).expm1() * alpha)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input: Tensor, inplace: bool = False) -> Tensor:
    return elu(input, _SELU_ALPHA) * _SELU_SCALE


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x); ``approximate='tanh'`` uses torch's tanh formula."""
    fused = _fused.gelu(input, approximate)
    if fused is not None:
        return fused
    if approximate == "tanh":
        inner = (input + input * input * input * 0.044715) * math.sqrt(2.0 / math.pi)
        return input * 0.5 * (inner.tanh() + 1.0)
    if approximate != "none":
        raise ValueError(f"approximate argument must be either none or tanh, got {approximate!r}")
    return input * 0.5 * ((input * (1.0 / math.sqrt(2.0))).erf() + 1.0)


def sigmoid(input: Tensor) -> Tensor:
    return input.sigmoid()


def tanh(input: Tensor) -> Tensor:
    return input.tanh()


def silu(input: Tensor, inplace: bool = False) -> Tensor:
    return input * input.sigmoid()


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta x)) / beta, linear where beta x > threshold (as torch)."""
    if _amp.ACTIVE:
        input = _amp.fp32_one("softplus", input)
    scaled = input * beta
    # log1p(exp(-|z|)) + max(z, 0) is the overflow-free form of log(1 + exp(z))
    soft = ((-scaled.abs()).exp().log1p() + scaled.clamp(min=0.0)) / beta
    return _where(scaled > threshold, input, soft)


def mish(input: Tensor, inplace: bool = False) -> Tensor:
    return input * softplus(input).tanh()


def logsigmoid(input: Tensor) -> Tensor:
    return -softplus(-input)


def softsign(input: Tensor) -> Tensor:
    return input / (input.abs() + 1)


def tanhshrink(input: Tensor) -> Tensor:
    return input - input.tanh()


def hardsigmoid(input: Tensor, inplace: bool = False) -> Tensor:
    # torch's gradient is zero at both kinks, so select rather than clamp
    return _where(input <= -3.0, input * 0.0, _where(input >= 3.0, input * 0.0 + 1.0, input / 6.0 + 0.5))


def hardswish(input: Tensor, inplace: bool = False) -> Tensor:
    return _where(input <= -3.0, input * 0.0, _where(input >= 3.0, input, input * (input + 3.0) / 6.0))


def glu(input: Tensor, dim: int = -1) -> Tensor:
    a, b = input.chunk(2, dim)
    return a * b.sigmoid()


def _get_softmax_dim(name: str, ndim: int, stacklevel: int) -> int:
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. "
                  "Change the call to include dim=X as an argument.", stacklevel=stacklevel)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _get_softmax_dim("softmax", input.dim(), _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return input.softmax(dim)


def softmin(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _get_softmax_dim("softmin", input.dim(), _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return (-input).softmax(dim)


def log_softmax(input: Tensor, dim: int | None = None, _stacklevel: int = 3, dtype: Any = None) -> Tensor:
    if dim is None:
        dim = _get_softmax_dim("log_softmax", input.dim(), _stacklevel)
    if dtype is not None:
        input = input.to(dtype)
    return input.log_softmax(dim)
