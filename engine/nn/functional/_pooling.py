"""Pooling: max/avg (1-D, 2-D) and adaptive avg/max, without loops over pixels.

Max pooling over non-overlapping blocks (stride = kernel, no padding: the CNN case) is
kh*kw elementwise maxima of strided views; otherwise it gathers every window with one
fancy index (N, C, Ho, Wo, kh*kw) and takes the argmax (torch's first-maximum tie rule)
and its backward scatters with one bincount.
Average pooling sums a strided window view; adaptive average pooling is two small
matmuls with averaging matrices, so autograd handles it.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.backend import get_array_module
from engine.nn.functional._conv import _col2im, _pair, _windows
from engine.ops._parallel import split_rows
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

__all__ = [
    "adaptive_avg_pool1d",
    "adaptive_avg_pool2d",
    "adaptive_max_pool1d",
    "adaptive_max_pool2d",
    "avg_pool1d",
    "avg_pool2d",
    "lp_pool2d",
    "max_pool1d",
    "max_pool2d",
]


def _pool_out(size: int, k: int, s: int, p: int, d: int, ceil_mode: bool) -> int:
    """torch's pooling_output_shape."""
    num = size + 2 * p - d * (k - 1) - 1
    out = (-(-num // s) if ceil_mode else num // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _window_index(out: int, k: int, s: int, d: int) -> np.ndarray:
    """(out, k) positions, in padded coordinates, of each window's elements."""
    return np.arange(out)[:, None] * s + np.arange(k)[None, :] * d


def _max_by_index(input: Tensor, hidx: np.ndarray, widx: np.ndarray, pads: tuple, name: str) -> tuple:
    """Max over windows given as index arrays into the -inf-padded input; returns the output
    Tensor and torch's flat indices (into each H*W plane of the unpadded input)."""
    x = input._data
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (top, bottom), (left, right) = pads
    if top or bottom or left or right:
        fill = -xp.inf if x.dtype.kind == "f" else xp.iinfo(x.dtype).min
        x = xp.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), constant_values=fill)
    ho, kh = hidx.shape
    wo, kw = widx.shape
    hi, wi = xp.asarray(hidx), xp.asarray(widx)
    v = x[:, :, hi[:, :, None, None], wi[None, None, :, :]]  # (N, C, Ho, kh, Wo, kw)
    v = v.transpose(0, 1, 2, 4, 3, 5).reshape(n, c, ho, wo, kh * kw)
    am = v.argmax(-1)
    out_arr = xp.take_along_axis(v, am[..., None], -1)[..., 0]
    rows = hi[xp.arange(ho)[None, None, :, None], am // kw] - top
    cols = wi[xp.arange(wo)[None, None, None, :], am % kw] - left
    flat = (rows * w + cols).astype(xp.int64)
    out = wrap(xp.ascontiguousarray(out_arr))
    if needs_grad(input):
        def backward(g: Tensor, _: Any) -> tuple:
            plane = xp.arange(n * c, dtype=xp.int64).reshape(n, c, 1, 1) * (h * w)
            gx = xp.bincount((plane + flat).ravel(), weights=g._data.ravel(), minlength=n * c * h * w)
            return (wrap(gx.astype(g._data.dtype, copy=False).reshape(n, c, h, w)),)

        attach(out, (input,), backward, name)
    return out, wrap(flat)


def _by_sample(xp: Any, fn: Any, n: int, size: int) -> None:
    """fn(lo, hi) over the batch, split over the engine's threads for numpy arrays."""
    if xp is np:
        split_rows(fn, n, size)
    else:
        fn(0, n)


def _rows_nhwc(x: Any, k: tuple) -> Any:
    """A channels-last input tiled exactly by the blocks as (N, Ho, kh, Wo*kw*C): row i of every
    block row is one contiguous run of Wo*kw*C values. None for other layouts or sizes."""
    n, c, h, w = x.shape
    t = x.transpose(0, 2, 3, 1)
    if h % k[0] or w % k[1] or not t.flags.c_contiguous:
        return None
    return t.reshape(n, h // k[0], k[0], w * c)


def _max_blocks_backward_nhwc(xp: Any, rows: Any, out_arr: Any, gd: Any, k: tuple, shape: tuple) -> Any:
    """The input gradient of the block max for a channels-last input, in its layout.

    Each element-wise pass on the (N, C, Ho, Wo) offset views of a channels-last array runs
    numpy's inner loop over only C values (a max-pool backward of 64x32x28x28 took 8 ms); here
    the output and its gradient are repeated kw times along W once, so that the comparisons and
    products run over whole block rows (Wo*kw*C contiguous values), and only the first-maximum
    bookkeeping (torch's tie rule, which ReLU's zeros make common) works at output size."""
    n, c, h, w = shape
    kh, kw = k
    ho, wo = h // kh, w // kw
    o_nhwc = out_arr.transpose(0, 2, 3, 1)  # (N, Ho, Wo, C), contiguous: out_arr keeps the input's layout
    g_nhwc = gd.transpose(0, 2, 3, 1)
    gx = xp.empty((n, ho, kh, wo * kw * c), dtype=gd.dtype)

    def part(lo: int, hi: int) -> None:
        m = hi - lo
        wide = (m, ho, wo, kw, c)
        o_rep = xp.empty(wide, dtype=out_arr.dtype)
        o_rep[...] = o_nhwc[lo:hi, :, :, None, :]
        g_rep = xp.empty(wide, dtype=gd.dtype)
        g_rep[...] = g_nhwc[lo:hi, :, :, None, :]
        seen = xp.zeros((m, ho, wo, c), dtype=bool)
        hit = xp.empty(wide, dtype=bool)
        for i in range(kh):
            xp.equal(rows[lo:hi, :, i], o_rep.reshape(m, ho, -1), out=hit.reshape(m, ho, -1))
            for j in range(kw):
                hj = hit[:, :, :, j]
                xp.greater(hj, seen, out=hj)  # a maximum, and none before it in the block
                if i < kh - 1 or j < kw - 1:
                    seen |= hj
            xp.multiply(g_rep.reshape(m, ho, -1), hit.reshape(m, ho, -1), out=gx[lo:hi, :, i])

    _by_sample(xp, part, n, 4 * gx.size)
    return gx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def _max_blocks(input: Tensor, k: tuple) -> Tensor | None:
    """Max over non-overlapping kh x kw blocks (stride = kernel, no padding) as kh*kw elementwise
    maxima of strided views; the backward routes each gradient to the first maximum of its block
    (torch's tie rule). Returns None when a NaN appears (the general path handles NaN)."""
    x = input._data
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho, wo = h // k[0], w // k[1]
    crop = x[:, :, :ho * k[0], :wo * k[1]]
    v = crop.reshape(n, c, ho, k[0], wo, k[1])  # a view (splits axes); keeps a channels-last layout
    offsets = [(i, j) for i in range(k[0]) for j in range(k[1])]
    out_arr = xp.empty_like(v[:, :, :, 0, :, 0])  # in the input's memory order (channels-last stays so)

    def fwd(lo: int, hi: int) -> None:
        o = out_arr[lo:hi]
        if len(offsets) == 1:
            o[...] = v[lo:hi, :, :, 0, :, 0]
            return
        i, j = offsets[1]
        xp.maximum(v[lo:hi, :, :, 0, :, 0], v[lo:hi, :, :, i, :, j], out=o)
        for i, j in offsets[2:]:
            xp.maximum(o, v[lo:hi, :, :, i, :, j], out=o)

    _by_sample(xp, fwd, n, x.size)
    if x.dtype.kind == "f" and bool(xp.isnan(out_arr).any()):
        return None
    out = wrap(out_arr)
    rows = _rows_nhwc(x, k)
    if needs_grad(input) and rows is not None:
        def backward(g: Tensor, _: Any) -> tuple:
            return (wrap(_max_blocks_backward_nhwc(xp, rows, out_arr, g._data, k, x.shape)),)

        attach(out, (input,), backward, "MaxPool2DWithIndicesBackward0")
    elif needs_grad(input):
        def backward(g: Tensor, _: Any) -> tuple:
            gd = g._data
            full = xp.empty_like(crop, dtype=gd.dtype)  # in the input's memory order
            gx = full.reshape(n, c, ho, k[0], wo, k[1])
            last = len(offsets) - 1

            def bwd(lo: int, hi: int) -> None:
                o, gp = out_arr[lo:hi], gd[lo:hi]
                free = xp.ones_like(o, dtype=bool)
                hit = xp.empty_like(o, dtype=bool)
                for idx, (i, j) in enumerate(offsets):
                    xp.equal(v[lo:hi, :, :, i, :, j], o, out=hit)
                    if idx:
                        hit &= free
                    xp.multiply(gp, hit, out=gx[lo:hi, :, :, i, :, j])  # (copyto's where= is slow on strided views)
                    if idx < last:
                        xp.greater(free, hit, out=free)  # free &= ~hit

            _by_sample(xp, bwd, n, x.size)
            if full.shape != x.shape:
                full = xp.pad(full, ((0, 0), (0, 0), (0, h - ho * k[0]), (0, w - wo * k[1])))
            return (wrap(full),)

        attach(out, (input,), backward, "MaxPool2DWithIndicesBackward0")
    return out


def _batched(input: Tensor, want: int, name: str) -> tuple:
    if input.dim() == want:
        return input, False
    if input.dim() == want - 1:
        return input.unsqueeze(0), True
    raise RuntimeError(f"{name}: expected {want - 1}D or {want}D input, got {input.dim()}D")


def max_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """2-D max pooling over (N, C, H, W) or (C, H, W)."""
    x, unbatched = _batched(input, 4, "max_pool2d")
    k = _pair(kernel_size)
    s = _pair(stride) if stride not in (None, ()) else k
    p, d = _pair(padding), _pair(dilation)
    if any(pp > kk // 2 for pp, kk in zip(p, k)):
        raise RuntimeError("pad should be at most half of effective kernel size")
    h, w = x.shape[2:]
    if s == k and p == (0, 0) and d == (1, 1) and not return_indices and (not ceil_mode or (h % k[0] == 0
                                                                                             and w % k[1] == 0)):
        out = _max_blocks(x, k)
        if out is not None:
            return out.squeeze(0) if unbatched else out
    ho = _pool_out(h, k[0], s[0], p[0], d[0], ceil_mode)
    wo = _pool_out(w, k[1], s[1], p[1], d[1], ceil_mode)
    hidx = _window_index(ho, k[0], s[0], d[0])
    widx = _window_index(wo, k[1], s[1], d[1])
    pads = ((p[0], max(0, int(hidx.max()) + 1 - h - p[0])), (p[1], max(0, int(widx.max()) + 1 - w - p[1])))
    out, idx = _max_by_index(x, hidx, widx, pads, "MaxPool2DWithIndicesBackward0")
    if unbatched:
        out, idx = out.squeeze(0), idx.squeeze(0)
    return (out, idx) if return_indices else out


def max_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, dilation: Any = 1,
               ceil_mode: bool = False, return_indices: bool = False) -> Any:
    """1-D max pooling over (N, C, L) or (C, L)."""
    x = input.unsqueeze(-2)
    k = _pair(kernel_size, 1)[0]
    s = k if stride in (None, ()) else _pair(stride, 1)[0]
    out = max_pool2d(x, (1, k), (1, s), (0, _pair(padding, 1)[0]), (1, _pair(dilation, 1)[0]), ceil_mode, True)
    res, idx = out[0].squeeze(-2), out[1].squeeze(-2)
    return (res, idx) if return_indices else res


def _avg_divisor(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    start = np.arange(out) * s - p
    end = np.minimum(start + k, size + p)
    if include_pad:
        return (end - start).astype(np.float64)
    return (np.minimum(end, size) - np.maximum(start, 0)).astype(np.float64)


def avg_pool2d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True, divisor_override: int | None = None) -> Tensor:
    """2-D average pooling with torch's divisor rules (count_include_pad, ceil_mode, override)."""
    xt, unbatched = _batched(input, 4, "avg_pool2d")
    k = _pair(kernel_size)
    s = _pair(stride) if stride not in (None, ()) else k
    p = _pair(padding)
    if any(pp > kk // 2 for pp, kk in zip(p, k)):
        raise RuntimeError("pad should be at most half of kernel size")
    x = xt._data
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ho = _pool_out(h, k[0], s[0], p[0], 1, ceil_mode)
    wo = _pool_out(w, k[1], s[1], p[1], 1, ceil_mode)
    extra_h = max(0, (ho - 1) * s[0] + k[0] - h - 2 * p[0])
    extra_w = max(0, (wo - 1) * s[1] + k[1] - w - 2 * p[1])
    pads = ((p[0], p[0] + extra_h), (p[1], p[1] + extra_w))
    xpad = xp.pad(x, ((0, 0), (0, 0)) + pads)
    win = _windows(xp, xpad, k, s, (1, 1), (ho, wo))
    if divisor_override:
        div = np.full((ho, wo), float(divisor_override))
    else:
        div = np.outer(_avg_divisor(h, ho, k[0], s[0], p[0], count_include_pad),
                       _avg_divisor(w, wo, k[1], s[1], p[1], count_include_pad))
    div = xp.asarray(div, dtype=x.dtype)
    out = wrap(xp.ascontiguousarray(win.sum(axis=(2, 3)) / div))
    if needs_grad(xt):
        def backward(g: Tensor, _: Any) -> tuple:
            gd = g._data / div
            cols = xp.broadcast_to(gd[:, :, None, None], (n, c, k[0], k[1], ho, wo))
            full = _col2im(xp, cols, xpad.shape, k, s, (1, 1))
            return (wrap(xp.ascontiguousarray(full[:, :, p[0]:p[0] + h, p[1]:p[1] + w])),)

        attach(out, (xt,), backward, "AvgPool2DBackward0")
    return out.squeeze(0) if unbatched else out


def avg_pool1d(input: Tensor, kernel_size: Any, stride: Any = None, padding: Any = 0, ceil_mode: bool = False,
               count_include_pad: bool = True) -> Tensor:
    k = _pair(kernel_size, 1)[0]
    s = k if stride in (None, ()) else _pair(stride, 1)[0]
    out = avg_pool2d(input.unsqueeze(-2), (1, k), (1, s), (0, _pair(padding, 1)[0]), ceil_mode, count_include_pad)
    return out.squeeze(-2)


def _adaptive_bounds(size: int, out: int) -> tuple:
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def _avg_matrix(size: int, out: int, like: Any) -> Tensor:
    start, end = _adaptive_bounds(size, out)
    pos = np.arange(size)
    m = ((pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])) / (end - start)[:, None]
    xp = get_array_module(like)
    return Tensor._wrap(xp.asarray(m, dtype=like.dtype))


def _out_pair(output_size: Any, h: int, w: int) -> tuple:
    oh, ow = output_size if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    return (h if oh is None else int(oh)), (w if ow is None else int(ow))


def adaptive_avg_pool2d(input: Tensor, output_size: Any) -> Tensor:
    """Average over torch's adaptive windows [floor(i H / Ho), ceil((i + 1) H / Ho)): Ph x Pw^T."""
    h, w = input.shape[-2:]
    oh, ow = _out_pair(output_size, h, w)
    ph = _avg_matrix(h, oh, input._data)
    pw = _avg_matrix(w, ow, input._data)
    return ph.matmul(input).matmul(pw.t())


def adaptive_avg_pool1d(input: Tensor, output_size: Any) -> Tensor:
    size = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
    return input.matmul(_avg_matrix(input.shape[-1], int(size), input._data).t())


def adaptive_max_pool2d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    x, unbatched = _batched(input, 4, "adaptive_max_pool2d")
    h, w = x.shape[2:]
    oh, ow = _out_pair(output_size, h, w)
    idx = []
    for size, out in ((h, oh), (w, ow)):
        start, end = _adaptive_bounds(size, out)
        kmax = int((end - start).max())
        idx.append(np.minimum(start[:, None] + np.arange(kmax)[None, :], end[:, None] - 1))
    out, ind = _max_by_index(x, idx[0], idx[1], ((0, 0), (0, 0)), "AdaptiveMaxPool2DBackward0")
    if unbatched:
        out, ind = out.squeeze(0), ind.squeeze(0)
    return (out, ind) if return_indices else out


def adaptive_max_pool1d(input: Tensor, output_size: Any, return_indices: bool = False) -> Any:
    size = output_size[0] if isinstance(output_size, (tuple, list)) else output_size
    out, ind = adaptive_max_pool2d(input.unsqueeze(-2), (1, int(size)), True)
    out, ind = out.squeeze(-2), ind.squeeze(-2)
    return (out, ind) if return_indices else out


def lp_pool2d(input: Tensor, norm_type: float, kernel_size: Any, stride: Any = None,
              ceil_mode: bool = False) -> Tensor:
    k = _pair(kernel_size)
    out = avg_pool2d(input.pow(norm_type), k, stride, 0, ceil_mode)
    return (out.sign() * out.abs().relu()).mul(k[0] * k[1]).pow(1.0 / norm_type)


