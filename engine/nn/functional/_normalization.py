"""batch_norm, layer_norm, group_norm, instance_norm, normalize, local stats with Tensor ops."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from engine import fused as _fused
from engine.amp import _policy as _amp
from engine.autograd.grad_mode import no_grad
from engine.nn.functional._batchnorm import batch_norm_train
from engine.nn.functional._layernorm import layer_norm_rows
from engine.tensor import Tensor

__all__ = ["batch_norm", "group_norm", "instance_norm", "layer_norm", "normalize", "rms_norm"]


def _channel_shape(x: Tensor) -> tuple:
    return (1, -1) + (1,) * (x.dim() - 2)


def batch_norm(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
               weight: Tensor | None = None, bias: Tensor | None = None, training: bool = False,
               momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalizes over every dim but 1 (channels). In training, batch statistics are used and
    the running ones updated in place with the unbiased variance, as torch."""
    fused = _fused.batch_norm(input, running_mean, running_var, weight, bias, training, momentum, eps)
    if fused is not None:
        return fused
    if _amp.half_with_float(input, weight, bias, running_mean, running_var):
        return batch_norm(input.float(), running_mean, running_var, weight, bias, training, momentum,
                          eps).half()
    if training and input.dim() >= 2 and input.numel() > input.shape[1] and input._data.dtype.kind == "f":
        return batch_norm_train(input, running_mean, running_var, weight, bias, momentum, eps)
    dims = (0,) + tuple(range(2, input.dim()))
    shape = _channel_shape(input)
    if training:
        n = input.numel() // input.shape[1]
        if n <= 1:
            raise ValueError("Expected more than 1 value per channel when training, got input size "
                             f"{list(input.shape)}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        out = centered / (var + eps).sqrt()
        if running_mean is not None and running_var is not None:
            with no_grad():
                m = mean._data.reshape(-1)
                v = var._data.reshape(-1) * (n / (n - 1))
                rm, rv = running_mean._data, running_var._data
                rm *= 1 - momentum
                rm += momentum * m.astype(rm.dtype, copy=False)
                rv *= 1 - momentum
                rv += momentum * v.astype(rv.dtype, copy=False)
    else:
        if running_mean is None or running_var is None:
            raise ValueError("running_mean and running_var must be defined in evaluation mode")
        out = (input - running_mean.reshape(shape)) / (running_var.reshape(shape) + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def instance_norm(input: Tensor, running_mean: Tensor | None = None, running_var: Tensor | None = None,
                  weight: Tensor | None = None, bias: Tensor | None = None, use_input_stats: bool = True,
                  momentum: float = 0.1, eps: float = 1e-5) -> Tensor:
    """Normalizes each (sample, channel) over its spatial dims. With running stats and
    ``use_input_stats`` they are updated in place with the batch average of the per-instance
    mean and unbiased variance (as torch); without ``use_input_stats`` they normalize instead."""
    dims = tuple(range(2, input.dim()))
    shape = _channel_shape(input)
    if not use_input_stats:
        if running_mean is None or running_var is None:
            raise ValueError("Expected running_mean and running_var to be defined when use_input_stats is false")
        out = (input - running_mean.reshape(shape)) / (running_var.reshape(shape) + eps).sqrt()
    else:
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        out = centered / (var + eps).sqrt()
        if running_mean is not None and running_var is not None:
            n = input.numel() // (input.shape[0] * input.shape[1])
            with no_grad():
                m = mean._data.reshape(input.shape[0], -1).mean(0)
                v = var._data.reshape(input.shape[0], -1).mean(0) * (n / max(n - 1, 1))
                rm, rv = running_mean._data, running_var._data
                rm *= 1 - momentum
                rm += momentum * m.astype(rm.dtype, copy=False)
                rv *= 1 - momentum
                rv += momentum * v.astype(rv.dtype, copy=False)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def layer_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """Normalizes over the trailing ``normalized_shape`` dims (biased variance)."""
    if _amp.ACTIVE:
        input, weight, bias = _amp.fp32("layer_norm", input, weight, bias)
    if _amp.half_with_float(input, weight, bias):
        return layer_norm(input.float(), normalized_shape, weight, bias, eps).half()
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    if tuple(input.shape[input.dim() - len(normalized_shape):]) != normalized_shape:
        raise RuntimeError(f"Given normalized_shape={list(normalized_shape)}, expected input with shape "
                           f"[*, {', '.join(map(str, normalized_shape))}], but got input of size{list(input.shape)}")
    fused = _fused.layer_norm(input, normalized_shape, weight, bias, eps)
    if fused is not None:
        return fused
    d = 1
    for s in normalized_shape:
        d *= s
    if input._data.dtype.kind == "f" and d > 0 and all(
            t is None or t._data.dtype == input._data.dtype for t in (weight, bias)):
        return layer_norm_rows(input, d, weight, bias, eps)  # the fused op (no double backward)
    dims = tuple(range(input.dim() - len(normalized_shape), input.dim()))
    mean = input.mean(dims, keepdim=True)
    centered = input - mean
    var = (centered * centered).mean(dims, keepdim=True)
    out = centered / (var + eps).sqrt()
    if weight is not None:
        out = out * weight
    if bias is not None:
        out = out + bias
    return out


def rms_norm(input: Tensor, normalized_shape: Sequence[int], weight: Tensor | None = None,
             eps: float | None = None) -> Tensor:
    normalized_shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    dims = tuple(range(input.dim() - len(normalized_shape), input.dim()))
    if eps is None:
        import numpy as np

        eps = float(np.finfo(input._data.dtype).eps)
    out = input / ((input * input).mean(dims, keepdim=True) + eps).sqrt()
    return out * weight if weight is not None else out


def group_norm(input: Tensor, num_groups: int, weight: Tensor | None = None, bias: Tensor | None = None,
               eps: float = 1e-5) -> Tensor:
    """Normalizes each group of C / num_groups channels (and the spatial dims) per sample."""
    if _amp.ACTIVE:
        input, weight, bias = _amp.fp32("group_norm", input, weight, bias)
    if _amp.half_with_float(input, weight, bias):
        return group_norm(input.float(), num_groups, weight, bias, eps).half()
    n, c = input.shape[:2]
    if c % num_groups:
        raise RuntimeError(f"Expected number of channels in input to be divisible by num_groups, but got "
                           f"input of shape {list(input.shape)} and num_groups={num_groups}")
    x = input.reshape(n, num_groups, -1)
    mean = x.mean(2, keepdim=True)
    centered = x - mean
    var = (centered * centered).mean(2, keepdim=True)
    out = (centered / (var + eps).sqrt()).reshape(input.shape)
    shape = _channel_shape(input)
    if weight is not None:
        out = out * weight.reshape(shape)
    if bias is not None:
        out = out + bias.reshape(shape)
    return out


def normalize(input: Tensor, p: float = 2.0, dim: int = 1, eps: float = 1e-12, out: Any = None) -> Tensor:
    """x / max(||x||_p, eps) along ``dim``."""
    if _amp.ACTIVE:
        input = _amp.fp32_one("normalize", input)
    if p == 2.0:
        norm = (input * input).sum(dim, keepdim=True).sqrt()
    else:
        norm = input.abs().pow(p).sum(dim, keepdim=True).pow(1.0 / p)
    return input / norm.clamp(min=eps)
