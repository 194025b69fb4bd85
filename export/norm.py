"""BatchNorm1d/2d (eval: running statistics), LayerNorm, RMSNorm, GroupNorm, InstanceNorm1d/2d."""
from __future__ import annotations

import numpy as np

from engine import nn
from export.builder import INT64, Builder, ExportError, Val, array, need_rank, tensor_arg, translator, type_name


def _affine(m, n: int) -> tuple[np.ndarray, np.ndarray]:
    w = array(m.weight) if getattr(m, "weight", None) is not None else np.ones(n, np.float32)
    bias = array(m.bias) if getattr(m, "bias", None) is not None else np.zeros(n, np.float32)
    return w, bias


def _channel(b: Builder, v: np.ndarray, rank: int, hint: str) -> Val:
    """A per-channel vector shaped to broadcast over (N, C, ...)."""
    return b.const(v.reshape((-1,) + (1,) * (rank - 2)), hint)


def _normalize(b: Builder, x: Val, axes: list[int], eps: float, hint: str) -> Val:
    """(x - mean) / sqrt(biased var + eps) over ``axes``."""
    mean = b.reduce("ReduceMean", x, axes, True, hint)
    centered = b.binary("Sub", x, mean, hint)
    var = b.reduce("ReduceMean", b.mul(centered, centered, hint), axes, True, hint)
    return b.binary("Div", centered, b.unary("Sqrt", b.add(var, b.scalar(eps), hint), hint), hint)


@translator(nn.BatchNorm1d, nn.BatchNorm2d)
def batch_norm(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    need_rank(m, x, m._expected_dims, path, "(batch, channels, ...)")
    c = m.num_features
    w, bias = _affine(m, c)
    if m.running_mean is None:  # no running statistics: eval mode normalizes with the batch's
        axes = [0] + list(range(2, x.rank))
        y = _normalize(b, x, axes, float(m.eps), path)
        return b.add(b.mul(y, _channel(b, w, x.rank, f"{path}.weight"), path),
                     _channel(b, bias, x.rank, f"{path}.bias"), path)
    return b.op("BatchNormalization",
                [x, b.const(w, f"{path}.weight"), b.const(bias, f"{path}.bias"),
                 b.const(array(m.running_mean), f"{path}.running_mean"),
                 b.const(array(m.running_var), f"{path}.running_var")],
                x.shape, hint=path, epsilon=float(m.eps))


@translator(nn.InstanceNorm1d, nn.InstanceNorm2d)
def instance_norm(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    need_rank(m, x, (m._expected_dims[1],), path, "(batch, channels, ...)")
    c = x.shape[1]
    w, bias = _affine(m, c)
    if m.track_running_stats and m.running_mean is not None:  # eval: the running statistics
        return b.op("BatchNormalization",
                    [x, b.const(w, f"{path}.weight"), b.const(bias, f"{path}.bias"),
                     b.const(array(m.running_mean), f"{path}.running_mean"),
                     b.const(array(m.running_var), f"{path}.running_var")],
                    x.shape, hint=path, epsilon=float(m.eps))
    return b.op("InstanceNormalization", [x, b.const(w, f"{path}.weight"), b.const(bias, f"{path}.bias")],
                x.shape, hint=path, epsilon=float(m.eps))


@translator(nn.LayerNorm)
def layer_norm(b: Builder, m: nn.LayerNorm, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    shape = tuple(m.normalized_shape)
    if tuple(x.shape[x.rank - len(shape):]) != shape:
        raise ExportError(path, type_name(m), f"normalizes {list(shape)} but its input ends in "
                                              f"{list(x.shape[x.rank - len(shape):])}")
    w = array(m.weight) if m.weight is not None else np.ones(shape, np.float32)
    bias = b.const(array(m.bias), f"{path}.bias") if m.bias is not None else None
    return b.op("LayerNormalization", [x, b.const(w, f"{path}.weight"), bias], x.shape, hint=path,
                axis=-len(shape), epsilon=float(m.eps))


@translator(nn.RMSNorm)
def rms_norm(b: Builder, m: nn.RMSNorm, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    n = len(m.normalized_shape)
    axes = list(range(x.rank - n, x.rank))
    eps = float(np.finfo(np.float32).eps) if m.eps is None else float(m.eps)
    ms = b.reduce("ReduceMean", b.mul(x, x, path), axes, True, path)
    y = b.binary("Div", x, b.unary("Sqrt", b.add(ms, b.scalar(eps), path), path), path)
    return b.mul(y, b.const(array(m.weight), f"{path}.weight"), path) if m.weight is not None else y


@translator(nn.GroupNorm)
def group_norm(b: Builder, m: nn.GroupNorm, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    if x.rank < 2 or x.shape[1] != m.num_channels:
        raise ExportError(path, type_name(m), f"expects {m.num_channels} channels in dimension 1")
    grouped = b.reshape(x, [x.shape[0], m.num_groups, -1], path)
    y = _normalize(b, grouped, [2], float(m.eps), path)
    shape = b.op("Shape", [x], (x.rank,), hint=path, dtype=INT64)
    y = b.op("Reshape", [y, shape], x.shape, hint=path)
    if m.weight is not None:
        y = b.mul(y, _channel(b, array(m.weight), x.rank, f"{path}.weight"), path)
    if m.bias is not None:
        y = b.add(y, _channel(b, array(m.bias), x.rank, f"{path}.bias"), path)
    return y
