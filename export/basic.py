"""Linear, Bilinear, Embedding, Identity, the dropouts (identity in eval), Flatten/Unflatten and
every activation layer."""
from __future__ import annotations

import math

import numpy as np

from engine import nn
from engine.nn import functional as F
from engine.nn.transformer import NonDynamicallyQuantizableLinear
from export.builder import BOOL, INT64, Builder, ExportError, Val, array, axis, tensor_arg, translator, type_name

# ---------------------------------------------------------------------------------- linear


@translator(nn.Linear, NonDynamicallyQuantizableLinear)
def linear(b: Builder, m: nn.Linear, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    w = array(m.weight)
    bias = array(m.bias) if m.bias is not None else None
    return b.matmul_const(x, w.T, bias, path, f"{path}.weight")


@translator(nn.Bilinear)
def bilinear(b: Builder, m: nn.Bilinear, args: list, path: str) -> Val:
    x1, x2 = tensor_arg(m, args, path, 2)
    w = b.const(array(m.weight), f"{path}.weight")
    y = b.op("Einsum", [x1, w, x2], x1.shape[:-1] + (m.out_features,), hint=path, equation="...i,kij,...j->...k")
    return b.add(y, b.const(array(m.bias), f"{path}.bias"), path) if m.bias is not None else y


@translator(nn.Embedding)
def embedding(b: Builder, m: nn.Embedding, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    w = array(m.weight)
    if m.max_norm is not None:  # what the lookup's in-place renorm makes of every row, applied ahead
        p = float(m.norm_type)
        norms = np.abs(w).max(axis=1) if p == math.inf else np.linalg.norm(w, ord=p, axis=1)
        over = norms > m.max_norm
        w[over] *= (m.max_norm / (norms[over] + 1e-7)).astype(np.float32)[:, None]
    idx = x if x.dtype == INT64 else b.op("Cast", [x], x.shape, hint=path, dtype=INT64, to=INT64)
    return b.op("Gather", [b.const(w, f"{path}.weight"), idx], x.shape + (m.embedding_dim,), hint=path, axis=0)


# ------------------------------------------------------------------- identity and shapes


@translator(nn.Identity, nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout)
def identity(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return x  # eval mode: dropout is the identity


def flatten_val(b: Builder, x: Val, start: int, end: int, hint: str) -> Val:
    if x.rank == 0:
        return b.reshape(x, [1], hint)
    s, e = axis(start, x.rank), axis(end, x.rank)
    if s > e:
        raise ValueError("flatten: start_dim cannot come after end_dim")
    merged = x.shape[s:e + 1]
    size = None if None in merged else int(np.prod(merged, dtype=np.int64))
    return b.reshape(x, list(x.shape[:s]) + [size if size is not None else -1] + list(x.shape[e + 1:]), hint)


@translator(nn.Flatten)
def flatten(b: Builder, m: nn.Flatten, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return flatten_val(b, x, m.start_dim, m.end_dim, path)


@translator(nn.Unflatten)
def unflatten(b: Builder, m: nn.Unflatten, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    d = axis(m.dim, x.rank)
    sizes = [int(s) for s in m.unflattened_size]
    if x.shape[d] is None:
        if sizes.count(-1) > 1 or (-1 not in sizes and len(sizes) > 1):
            raise ExportError(path, type_name(m), "unflattens the run-time batch dimension")
    target = list(x.shape[:d]) + sizes + list(x.shape[d + 1:])
    # a -1 among static sizes is resolved by b.reshape; run-time sizes before d are copied
    return b.reshape(x, target, path)


# ----------------------------------------------------------------------------- activations


def softplus_val(b: Builder, x: Val, beta: float, threshold: float, hint: str) -> Val:
    """log(1 + exp(beta x)) / beta, linear above the threshold (the engine's overflow-free form)."""
    s = b.scale(x, beta, hint) if beta != 1 else x
    soft = b.add(b.op("Log", [b.add(b.unary("Exp", b.unary("Neg", b.unary("Abs", s, hint), hint), hint),
                                    b.scalar(1.0), hint)], x.shape, hint=hint),
                 b.unary("Relu", s, hint), hint)
    if beta != 1:
        soft = b.scale(soft, 1.0 / beta, hint)
    cond = b.op("Greater", [s, b.scalar(threshold)], x.shape, hint=hint, dtype=BOOL)
    return b.op("Where", [cond, x, soft], x.shape, hint=hint, dtype=x.dtype)


def gelu_val(b: Builder, x: Val, approximate: str, hint: str) -> Val:
    if approximate == "tanh":
        cube = b.mul(b.mul(x, x, hint), x, hint)
        inner = b.scale(b.add(x, b.scale(cube, 0.044715, hint), hint), math.sqrt(2.0 / math.pi), hint)
        return b.mul(b.scale(x, 0.5, hint), b.add(b.unary("Tanh", inner, hint), b.scalar(1.0), hint), hint)
    erf = b.unary("Erf", b.scale(x, 1.0 / math.sqrt(2.0), hint), hint)
    return b.mul(b.scale(x, 0.5, hint), b.add(erf, b.scalar(1.0), hint), hint)


def clip(b: Builder, x: Val, lo: float | None, hi: float | None, hint: str) -> Val:
    return b.op("Clip", [x, b.scalar(lo) if lo is not None else None, b.scalar(hi) if hi is not None else None],
                x.shape, hint=hint)


def _softmax_dim(dim: int | None, rank: int) -> int:
    return (0 if rank in (0, 1, 3) else 1) if dim is None else axis(dim, rank)


def _simple(op_type: str, **attrs):
    def fn(b: Builder, m, args: list, path: str) -> Val:
        (x,) = tensor_arg(m, args, path)
        return b.unary(op_type, x, path, **attrs)
    return fn


translator(nn.ReLU)(_simple("Relu"))
translator(nn.Sigmoid)(_simple("Sigmoid"))
translator(nn.Tanh)(_simple("Tanh"))
translator(nn.Softsign)(_simple("Softsign"))
translator(nn.Hardswish)(_simple("HardSwish"))
translator(nn.Hardsigmoid)(_simple("HardSigmoid", alpha=1.0 / 6.0, beta=0.5))
translator(nn.SELU)(_simple("Selu", alpha=1.6732632423543772, gamma=1.0507009873554805))


@translator(nn.LeakyReLU)
def leaky_relu(b: Builder, m: nn.LeakyReLU, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.unary("LeakyRelu", x, path, alpha=float(m.negative_slope))


@translator(nn.ELU)
def elu(b: Builder, m: nn.ELU, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.unary("Elu", x, path, alpha=float(m.alpha))


@translator(nn.CELU)
def celu(b: Builder, m: nn.CELU, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.unary("Celu", x, path, alpha=float(m.alpha))


@translator(nn.GELU)
def gelu(b: Builder, m: nn.GELU, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return gelu_val(b, x, m.approximate, path)


@translator(nn.ReLU6)
def relu6(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return clip(b, x, 0.0, 6.0, path)


@translator(nn.Hardtanh)
def hardtanh(b: Builder, m: nn.Hardtanh, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return clip(b, x, float(m.min_val), float(m.max_val), path)


@translator(nn.SiLU)
def silu(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.mul(x, b.unary("Sigmoid", x, path), path)


@translator(nn.Softplus)
def softplus(b: Builder, m: nn.Softplus, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return softplus_val(b, x, float(m.beta), float(m.threshold), path)


@translator(nn.Mish)
def mish(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.mul(x, b.unary("Tanh", softplus_val(b, x, 1.0, 20.0, path), path), path)


@translator(nn.LogSigmoid)
def logsigmoid(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.unary("Neg", softplus_val(b, b.unary("Neg", x, path), 1.0, 20.0, path), path)


@translator(nn.Tanhshrink)
def tanhshrink(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    return b.binary("Sub", x, b.unary("Tanh", x, path), path)


@translator(nn.Threshold)
def threshold(b: Builder, m: nn.Threshold, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    cond = b.op("Greater", [x, b.scalar(float(m.threshold))], x.shape, hint=path, dtype=BOOL)
    return b.op("Where", [cond, x, b.scalar(float(m.value))], x.shape, hint=path, dtype=x.dtype)


@translator(nn.GLU)
def glu(b: Builder, m: nn.GLU, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    d = axis(m.dim, x.rank)
    size = x.shape[d]
    if size is None or size % 2:
        raise ExportError(path, type_name(m), f"halves dimension {m.dim}, whose size is {size}")
    half = list(x.shape)
    half[d] = size // 2
    a, g = b.op("Split", [x, b.ints([size // 2, size // 2], "split")], hint=path,
                outputs=[(tuple(half), x.dtype)] * 2, axis=d)
    return b.mul(a, b.unary("Sigmoid", g, path), path)


@translator(nn.Softmax, nn.LogSoftmax, nn.Softmin)
def softmax(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    d = _softmax_dim(m.dim, x.rank)
    if isinstance(m, nn.Softmin):
        x = b.unary("Neg", x, path)
    return b.unary("LogSoftmax" if isinstance(m, nn.LogSoftmax) else "Softmax", x, path, axis=d)


# the functions an engine layer may hold as its activation (TransformerEncoderLayer)
FUNCTIONAL = {F.relu: lambda b, x, hint: b.unary("Relu", x, hint),
              F.gelu: lambda b, x, hint: gelu_val(b, x, "none", hint)}
