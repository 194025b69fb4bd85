"""conv2d (groups=1) through channels-last rows: the output needs no layout copy.

The padded input is laid out (N, Hp, Wp, C) (free when the input already is channels-last,
as every output of this op is); its windows, copied into rows (N*Ho*Wo, kh*kw*C), times the
(kh*kw*C, O) weight give the output as (N*Ho*Wo, O): an (N, O, Ho, Wo) view with
channels-last strides, torch's ``channels_last`` memory format. Elementwise ops keep that
layout (numpy allocates their outputs in the inputs' order), so a conv -> BatchNorm -> ReLU ->
conv chain never transposes.

On numpy the rows of a kernel larger than its stride are not built whole: a 3x3 kernel's
rows are 9x the input, and writing them, packing them into the GEMM and reading them again
went to main memory three times (a 16-channel 32x32 ResNet conv took 6.6 ms where chunks
take 3.7). They are copied a chunk of about CHUNK_BYTES at a time into a scratch buffer that
stays in the core's L2 cache while the GEMM for that chunk reads it. The backward rebuilds
each chunk from the input for the weight gradient; a stride-1 input gradient is the forward
over the output gradient with the flipped kernel, a strided one scatters each chunk's
pieces at once. Chunks run on the engine's threads, a group of whole samples apiece. On
cupy one GEMM over all rows is faster. Values equal the channel-major path's up to the
GEMM's summation order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.backend import get_array_module
from engine.ops._parallel import split_rows

CHUNK_BYTES = 1 << 19  # rows of one chunk: with the GEMM's packed copy, within a 1 MB L2


def _padded_nhwc(xp: Any, x: Any, pads: tuple) -> Any:
    """(N, H, W, C) view of an (N, C, H, W) array, zero-padded into a fresh buffer if ``pads``."""
    xh = x.transpose(0, 2, 3, 1)
    (pt, pb), (pl, pr) = pads
    if not (pt or pb or pl or pr):
        return xh
    n, h, w, c = xh.shape
    xpad = xp.empty((n, h + pt + pb, w + pl + pr, c), dtype=x.dtype)
    # zero only the border: the interior is overwritten at once
    xpad[:, :pt] = 0
    xpad[:, pt + h:] = 0
    xpad[:, pt:pt + h, :pl] = 0
    xpad[:, pt:pt + h, pl + w:] = 0
    xpad[:, pt:pt + h, pl:pl + w] = xh
    return xpad


def _windows(xp: Any, xpad: Any, k: tuple, stride: tuple, dilation: tuple, out_hw: tuple) -> Any:
    """(N, Ho, Wo, kh, kw, C) strided view of the windows of an (N, Hp, Wp, C) array."""
    n, _, _, c = xpad.shape
    s = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad, (n, *out_hw, k[0], k[1], c),
        (s[0], s[1] * stride[0], s[2] * stride[1], s[1] * dilation[0], s[2] * dilation[1], s[3]))


def _whole_rows(xp: Any, xpad: Any, k: tuple, stride: tuple, dilation: tuple, out_hw: tuple) -> Any:
    """(N*Ho*Wo, kh*kw*C): every window's values as one row, in one copy."""
    win = _windows(xp, xpad, k, stride, dilation, out_hw)
    return xp.ascontiguousarray(win).reshape(-1, k[0] * k[1] * xpad.shape[3])


def _add_offsets(gpad: Any, b6: Any, h0: int, stride: tuple, dilation: tuple) -> None:
    """Scatter-add (kh, kw, S, Hc, Wo, C) per-offset pieces of output lines h0.. into the padded
    input gradient (S, Hp, Wp, C); each slice-add runs over Wo*C contiguous values."""
    kh, kw, _, hc, wo, _ = b6.shape
    for i in range(kh):
        hs = h0 * stride[0] + i * dilation[0]
        hsl = slice(hs, hs + stride[0] * (hc - 1) + 1, stride[0])
        for j in range(kw):
            ws = j * dilation[1]
            gpad[:, hsl, ws:ws + stride[1] * (wo - 1) + 1:stride[1]] += b6[i, j]


def _pointwise(k: tuple, stride: tuple, pads: tuple) -> bool:
    """A 1x1, stride-1, unpadded kernel: the rows are the channels-last input itself."""
    return k == (1, 1) and stride == (1, 1) and not any(pads[0] + pads[1])


def _copy_windows(dst: Any, win: Any) -> None:
    """``dst[...] = win`` for a (.., kh, kw, C) window view. With one channel (a grayscale
    input) numpy's copy would run its inner loop over kw values; one copy per kernel offset
    runs it over a whole output line instead (4x faster for 28x28 MNIST rows)."""
    if win.shape[-1] != 1:
        np.copyto(dst, win)
        return
    for i in range(win.shape[-3]):
        for j in range(win.shape[-2]):
            np.copyto(dst[..., i, j, :], win[..., i, j, :])


class _Chunks:
    """The output grid (N, Ho) cut into chunks (s0, s1, h0, h1) of about CHUNK_BYTES of rows,
    grouped so that a sample never spans two groups (a group's input gradient is its own)."""

    def __init__(self, n: int, ho: int, wo: int, kk: int, itemsize: int) -> None:
        self.wo, self.kk = wo, kk
        line = wo * kk * itemsize  # the rows of one output line
        if ho * line <= CHUNK_BYTES:
            ns = max(1, CHUNK_BYTES // (ho * line))
            self.groups = [[(s, min(n, s + ns), 0, ho)] for s in range(0, n, ns)]
            self.most = min(n, ns) * ho * wo
        else:
            nh = -(-ho // -(-ho * line // CHUNK_BYTES))  # even pieces of at most CHUNK_BYTES (or one line)
            self.groups = [[(s, s + 1, h, min(ho, h + nh)) for h in range(0, ho, nh)] for s in range(n)]
            self.most = min(ho, nh) * wo
        self.ho = ho

    def run(self, fn: Any, size: int) -> None:
        """``fn(chunks)`` for contiguous runs of groups, on the engine's threads when ``size`` is big."""
        groups = self.groups
        split_rows(lambda lo, hi: fn([c for g in groups[lo:hi] for c in g]), len(groups), size, blas=True)

    def rows(self, buf: Any, win: Any, s0: int, s1: int, h0: int, h1: int) -> Any:
        """The chunk's rows, (rows, kh*kw*C), copied from the window view into ``buf``."""
        v = win[s0:s1, h0:h1]
        b = buf[:v.size].reshape(v.shape)
        _copy_windows(b, v)
        return b.reshape(-1, self.kk)

    def m_range(self, s0: int, s1: int, h0: int, h1: int) -> tuple:
        """The chunk's rows of the (N*Ho*Wo, ...) matrices."""
        return (s0 * self.ho + h0) * self.wo, ((s1 - 1) * self.ho + h1) * self.wo


class Saved:
    """What the backward needs: the input as the forward padded it, (N, Hp, Wp, C) (a view
    when unpadded; kept so that the backward does not pad it again), and its rows when
    keeping them costs little."""

    __slots__ = ("out_hw", "rows", "xpad")

    def __init__(self, xpad: Any, rows: Any, out_hw: tuple) -> None:
        self.xpad, self.rows, self.out_hw = xpad, rows, out_hw


KEEP_ROWS = 2  # keep whole rows when they are at most this many times the input (a strided 1x1 conv)


def _weight_rows(w: Any) -> Any:
    o, c, kh, kw = w.shape
    return w.transpose(2, 3, 1, 0).reshape(kh * kw * c, o)


def forward(x: Any, w: Any, bias: Any, stride: tuple, pads: tuple, dilation: tuple, out_hw: tuple) -> tuple:
    """Output (N, O, Ho, Wo) (channels-last strides) and what the backward needs (Saved)."""
    xp = get_array_module(x)
    n = x.shape[0]
    o, c, kh, kw = w.shape
    ho, wo = out_hw
    kk = kh * kw * c
    xpad = _padded_nhwc(xp, x, pads)
    wk = xp.ascontiguousarray(_weight_rows(w))
    rows = None
    if _pointwise((kh, kw), stride, pads) and xpad.flags.c_contiguous:
        out = xpad.reshape(n * ho * wo, c) @ wk
    elif xp is not np or n * ho * wo * kk <= KEEP_ROWS * x.size:
        rows = _whole_rows(xp, xpad, (kh, kw), stride, dilation, out_hw)
        out = rows @ wk
        if rows.size > KEEP_ROWS * x.size:
            rows = None
    else:
        win = _windows(xp, xpad, (kh, kw), stride, dilation, out_hw)
        out = np.empty((n * ho * wo, o), dtype=np.result_type(x, w))
        chunks = _Chunks(n, ho, wo, kk, x.itemsize)

        def part(todo: list) -> None:
            buf = np.empty(chunks.most * kk, dtype=x.dtype)
            for s0, s1, h0, h1 in todo:
                m0, m1 = chunks.m_range(s0, s1, h0, h1)
                np.matmul(chunks.rows(buf, win, s0, s1, h0, h1), wk, out=out[m0:m1])

        chunks.run(part, out.size * kk // o * 2)
    if bias is not None:
        out += bias
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), Saved(xpad, rows, out_hw)


def backward(g: Any, saved: Saved, w: Any, x_shape: tuple, stride: tuple, pads: tuple, dilation: tuple,
             need_x: bool, need_w: bool) -> tuple:
    """Input and weight gradients of ``forward`` for the output gradient ``g`` (N, O, Ho, Wo)."""
    xp = get_array_module(g)
    n, o, ho, wo = g.shape
    _, c, kh, kw = w.shape
    kk = kh * kw * c
    gm = g.transpose(0, 2, 3, 1).reshape(n * ho * wo, o)  # a view when g is channels-last, as ours are
    if _pointwise((kh, kw), stride, pads):
        xm = saved.xpad.reshape(n * ho * wo, c)
        gw = (gm.T @ xm).reshape(o, c, 1, 1) if need_w else None
        gx = (gm @ w.reshape(o, c)).reshape(n, ho, wo, c).transpose(0, 3, 1, 2) if need_x else None
        return gx, gw
    _, _, h, wd = x_shape
    (pt, pb), (pl, pr) = pads
    if xp is not np or saved.rows is not None:
        return _backward_whole(xp, gm, saved, w, x_shape, stride, pads, dilation, need_x, need_w)
    full = tuple((d * (k - 1) - a, d * (k - 1) - b) for d, k, (a, b) in zip(dilation, (kh, kw), pads))
    if need_x and stride == (1, 1) and min(full[0] + full[1]) >= 0:
        # stride 1: the input gradient is the output gradient correlated with the flipped kernel,
        # (N*H*W, kh*kw*O) rows times (kh*kw*O, C): the forward's chunked GEMM, no scatter
        gx = forward(g, w[:, :, ::-1, ::-1].transpose(1, 0, 2, 3), None, (1, 1), full, dilation, (h, wd))[0]
        return gx, backward(g, saved, w, x_shape, stride, pads, dilation, False, need_w)[1] if need_w else None
    win = _windows(np, saved.xpad, (kh, kw), stride, dilation, saved.out_hw) if need_w else None
    # the input gradient's pieces: per kernel offset (O, C), so that each chunk gives one
    # contiguous (rows, C) block per offset and every slice-add runs over Wo*C contiguous values
    wt = np.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, o, c) if need_x else None
    gpad = np.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=g.dtype) if need_x else None
    chunks = _Chunks(n, ho, wo, kk, g.itemsize)
    sums: list = []

    def part(todo: list) -> None:
        buf = np.empty(chunks.most * kk, dtype=g.dtype)
        acc = tmp = None
        for s0, s1, h0, h1 in todo:
            m0, m1 = chunks.m_range(s0, s1, h0, h1)
            gc = gm[m0:m1]
            if need_w:
                rows = chunks.rows(buf, win, s0, s1, h0, h1)
                if acc is None:
                    acc = gc.T @ rows
                    tmp = np.empty_like(acc)
                else:
                    np.matmul(gc.T, rows, out=tmp)
                    acc += tmp
            if need_x:
                blocks = np.matmul(gc, wt, out=buf[:(m1 - m0) * kk].reshape(kh * kw, m1 - m0, c))
                _add_offsets(gpad[s0:s1], blocks.reshape(kh, kw, s1 - s0, h1 - h0, wo, c), h0, stride, dilation)
        if acc is not None:
            sums.append((todo[0], acc))

    chunks.run(part, gm.size * kk // o * (need_w + need_x))
    gw = gx = None
    if need_w:
        parts = [acc for _, acc in sorted(sums, key=lambda p: p[0])]  # in chunk order, whatever the threads
        gwk = parts[0] if len(parts) == 1 else np.sum(parts, axis=0)
        gw = np.ascontiguousarray(gwk.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
    if need_x:
        gx = gpad[:, pt:pt + h, pl:pl + wd].transpose(0, 3, 1, 2)
    return gx, gw


def _backward_whole(xp: Any, gm: Any, saved: Saved, w: Any, x_shape: tuple, stride: tuple, pads: tuple,
                    dilation: tuple, need_x: bool, need_w: bool) -> tuple:
    """The backward as whole-array GEMMs (cupy, and kept rows)."""
    _, c, kh, kw = w.shape
    o = w.shape[0]
    n, _, h, wd = x_shape
    ho, wo = saved.out_hw
    (pt, pb), (pl, pr) = pads
    gw = gx = None
    if need_w:
        rows = saved.rows
        if rows is None:
            rows = _whole_rows(xp, saved.xpad, (kh, kw), stride, dilation, saved.out_hw)
        gw = xp.ascontiguousarray((gm.T @ rows).reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
    if need_x:
        blocks = xp.matmul(gm, xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, o, c))
        gpad = xp.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=gm.dtype)
        _add_offsets(gpad, blocks.reshape(kh, kw, n, ho, wo, c), 0, stride, dilation)
        gx = gpad[:, pt:pt + h, pl:pl + wd].transpose(0, 3, 1, 2)
    return gx, gw


def channel_sum(g: Any) -> Any:
    """g.sum(axis=(0, 2, 3)) of an (N, C, H, W) array: for a channels-last one as rows of about
    512 values (numpy's reduction over C-wide rows runs one C-long inner loop per row: 4x slower)."""
    n, c, h, w = g.shape
    t = g.transpose(0, 2, 3, 1)
    if not t.flags.c_contiguous:
        return g.sum(axis=(0, 2, 3))
    m, k = n * h * w, 1
    while k * 2 * c <= 512 and m % (k * 2) == 0:
        k *= 2
    return t.reshape(m // k, k * c).sum(axis=0).reshape(k, c).sum(axis=0)
