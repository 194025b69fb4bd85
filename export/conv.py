"""Convolutions (1-d/2-d, transposed, every padding mode) and pooling (max, average, adaptive)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from engine import nn
from export.builder import Builder, ExportError, Val, array, need_rank, tensor_arg, translator, type_name


def _tuple(v, n: int) -> tuple:
    return tuple(int(x) for x in v) if isinstance(v, (tuple, list)) else (int(v),) * n


def _pad(b: Builder, x: Val, pairs: Sequence[tuple[int, int]], mode: str, hint: str) -> Val:
    """Pad the trailing len(pairs) dims: 'zeros', 'reflect', 'replicate' or 'circular'."""
    nd = len(pairs)
    lead = x.rank - nd
    if mode == "circular":
        for i, (lo, hi) in enumerate(pairs):
            ax = lead + i
            size = x.shape[ax]
            parts = []
            if lo:
                parts.append(b.slice(x, ax, size - lo, size, hint))
            parts.append(x)
            if hi:
                parts.append(b.slice(x, ax, 0, hi, hint))
            x = b.concat(parts, ax, hint) if len(parts) > 1 else x
        return x
    pads = [0] * lead + [p[0] for p in pairs] + [0] * lead + [p[1] for p in pairs]
    shape = list(x.shape)
    for i, (lo, hi) in enumerate(pairs):
        shape[lead + i] += lo + hi
    onnx_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge"}[mode]
    return b.op("Pad", [x, b.ints(pads, "pads")], tuple(shape), hint=hint, mode=onnx_mode)


def _out(size: int, k: int, s: int, lo: int, hi: int, d: int) -> int:
    return (size + lo + hi - d * (k - 1) - 1) // s + 1


@translator(nn.Conv1d, nn.Conv2d)
def conv(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    nd = len(m.kernel_size)
    need_rank(m, x, (nd + 2,), path, "(batch, channels, ...)")
    k, s, d = m.kernel_size, m.stride, m.dilation
    if isinstance(m.padding, str):
        pairs = [(0, 0)] * nd if m.padding == "valid" else \
            [((d[i] * (k[i] - 1)) // 2, d[i] * (k[i] - 1) - (d[i] * (k[i] - 1)) // 2) for i in range(nd)]
    else:
        pairs = [(p, p) for p in m.padding]
    if m.padding_mode != "zeros":
        x = _pad(b, x, pairs, m.padding_mode, path)
        pairs = [(0, 0)] * nd
    spatial = tuple(_out(x.shape[2 + i], k[i], s[i], *pairs[i], d[i]) for i in range(nd))
    w = b.const(array(m.weight), f"{path}.weight")
    bias = b.const(array(m.bias), f"{path}.bias") if m.bias is not None else None
    return b.op("Conv", [x, w, bias], (x.shape[0], m.out_channels) + spatial, hint=path,
                kernel_shape=list(k), strides=list(s), dilations=list(d), group=int(m.groups),
                pads=[p[0] for p in pairs] + [p[1] for p in pairs])


@translator(nn.ConvTranspose1d, nn.ConvTranspose2d)
def conv_transpose(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    nd = len(m.kernel_size)
    need_rank(m, x, (nd + 2,), path, "(batch, channels, ...)")
    if isinstance(m.padding, str):
        raise ExportError(path, type_name(m), f"padding={m.padding!r} is not a transposed convolution's padding")
    k, s, d, p, op = m.kernel_size, m.stride, m.dilation, m.padding, m.output_padding
    spatial = tuple((x.shape[2 + i] - 1) * s[i] - 2 * p[i] + d[i] * (k[i] - 1) + op[i] + 1 for i in range(nd))
    w = b.const(array(m.weight), f"{path}.weight")
    bias = b.const(array(m.bias), f"{path}.bias") if m.bias is not None else None
    return b.op("ConvTranspose", [x, w, bias], (x.shape[0], m.out_channels) + spatial, hint=path,
                kernel_shape=list(k), strides=list(s), dilations=list(d), group=int(m.groups),
                pads=list(p) + list(p), output_padding=list(op))


# ------------------------------------------------------------------------------- pooling


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _windows(x: Val, nd: int, k, s, p, d, ceil_mode: bool) -> tuple[tuple, list[int]]:
    """Output sizes and explicit ONNX pads (extra at the end for ceil_mode) giving torch's sizes."""
    outs, ends = [], []
    for i in range(nd):
        size = x.shape[2 + i]
        o = _pool_out(size, k[i], s[i], p[i], d[i], ceil_mode)
        outs.append(o)
        ends.append(p[i] + max(0, (o - 1) * s[i] + d[i] * (k[i] - 1) + 1 - size - 2 * p[i]))
    return tuple(outs), list(p) + ends


@translator(nn.MaxPool1d, nn.MaxPool2d)
def max_pool(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    nd = 1 if isinstance(m, nn.MaxPool1d) else 2
    need_rank(m, x, (nd + 2,), path, "(batch, channels, ...)")
    if m.return_indices:
        raise ExportError(path, type_name(m), "return_indices=True (torch's flat indices) has no ONNX equivalent")
    k = _tuple(m.kernel_size, nd)
    s = _tuple(m.stride if m.stride not in (None, ()) else m.kernel_size, nd)
    p, d = _tuple(m.padding, nd), _tuple(m.dilation, nd)
    outs, pads = _windows(x, nd, k, s, p, d, m.ceil_mode)
    return b.op("MaxPool", [x], x.shape[:2] + outs, hint=path, kernel_shape=list(k), strides=list(s),
                pads=pads, dilations=list(d))


def _divisor(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


@translator(nn.AvgPool1d, nn.AvgPool2d)
def avg_pool(b: Builder, m, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    nd = 1 if isinstance(m, nn.AvgPool1d) else 2
    need_rank(m, x, (nd + 2,), path, "(batch, channels, ...)")
    k = _tuple(m.kernel_size, nd)
    s = _tuple(m.stride if m.stride not in (None, ()) else m.kernel_size, nd)
    p = _tuple(m.padding, nd)
    override = getattr(m, "divisor_override", None)
    outs, pads = _windows(x, nd, k, s, p, (1,) * nd, m.ceil_mode)
    shape = x.shape[:2] + outs
    if not any(pads) and not override:
        return b.op("AveragePool", [x], shape, hint=path, kernel_shape=list(k), strides=list(s))
    # window sums over the zero-padded input, divided as torch divides (padding, ceil_mode, override)
    padded = b.op("Pad", [x, b.ints([0, 0] + pads[:nd] + [0, 0] + pads[nd:], "pads")],
                  x.shape[:2] + tuple(x.shape[2 + i] + pads[i] + pads[nd + i] for i in range(nd)), hint=path)
    mean = b.op("AveragePool", [padded], shape, hint=path, kernel_shape=list(k), strides=list(s))
    if override:
        div = np.full(outs, float(override))
    else:
        div = _divisor(x.shape[2], outs[0], k[0], s[0], p[0], m.count_include_pad)
        if nd == 2:
            div = np.outer(div, _divisor(x.shape[3], outs[1], k[1], s[1], p[1], m.count_include_pad))
    factor = float(np.prod(k)) / div
    return b.mul(mean, b.const(factor.astype(np.float32), f"{path}.divisor"), path)


def _bounds(size: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _avg_matrix(size: int, out: int) -> np.ndarray:
    start, end = _bounds(size, out)
    pos = np.arange(size)
    return (((pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])) / (end - start)[:, None])


def _adaptive_sizes(m, x: Val, nd: int) -> list[int]:
    o = m.output_size
    o = list(o) if isinstance(o, (tuple, list)) else [o] * nd
    return [x.shape[x.rank - nd + i] if v is None else int(v) for i, v in enumerate(o)]


@translator(nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)
def adaptive_avg_pool(b: Builder, m, args: list, path: str) -> Val:
    """The engine's form: averaging matrices, Ph @ x @ Pw^T (exact for any sizes)."""
    (x,) = tensor_arg(m, args, path)
    nd = 1 if isinstance(m, nn.AdaptiveAvgPool1d) else 2
    need_rank(m, x, (nd + 1, nd + 2), path, "(batch, channels, ...)")
    sizes = _adaptive_sizes(m, x, nd)
    if None in x.shape[-nd:]:
        raise ExportError(path, type_name(m), "pools a run-time sized dimension")
    if all(o == 1 for o in sizes):
        axes = list(range(x.rank - nd, x.rank))
        return b.reduce("ReduceMean", x, axes, True, path)
    w = x.shape[-1]
    pw = _avg_matrix(w, sizes[-1])
    y = b.op("MatMul", [x, b.const(pw.T.astype(np.float32), f"{path}.pool_w")], x.shape[:-1] + (sizes[-1],),
             hint=path)
    if nd == 2:
        ph = _avg_matrix(x.shape[-2], sizes[0])
        y = b.op("MatMul", [b.const(ph.astype(np.float32), f"{path}.pool_h"), y],
                 x.shape[:-2] + (sizes[0], sizes[1]), hint=path)
    return y


@translator(nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d)
def adaptive_max_pool(b: Builder, m, args: list, path: str) -> Val:
    """Max over each adaptive bin, one axis at a time (a rectangle's max is separable)."""
    (x,) = tensor_arg(m, args, path)
    nd = 1 if isinstance(m, nn.AdaptiveMaxPool1d) else 2
    need_rank(m, x, (nd + 2,), path, "(batch, channels, ...)")
    if m.return_indices:
        raise ExportError(path, type_name(m), "return_indices=True (torch's flat indices) has no ONNX equivalent")
    sizes = _adaptive_sizes(m, x, nd)
    for i, out in enumerate(sizes):
        ax = x.rank - nd + i
        start, end = _bounds(x.shape[ax], out)
        bins = [b.reduce("ReduceMax", b.slice(x, ax, int(lo), int(hi), path), [ax], True, path)
                for lo, hi in zip(start, end)]
        x = b.concat(bins, ax, path) if len(bins) > 1 else bins[0]
    return x
