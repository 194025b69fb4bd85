"""conv2d (groups=1) through channels-last columns: the output needs no layout copy.

The padded input is laid out (N, Hp, Wp, C) (free when the input already is channels-last,
as every output of this op is), its windows are copied once into rows (N*Ho*Wo, kh*kw*C),
and one GEMM with the (kh*kw*C, O) weight gives the output as (N*Ho*Wo, O): an
(N, O, Ho, Wo) view with channels-last strides, torch's ``channels_last`` memory format.
Elementwise ops keep that layout (numpy allocates their outputs in the inputs' order), so a
conv -> BatchNorm -> ReLU -> conv chain never transposes. The backward is two GEMMs against
the same rows and, for the input, kh*kw slice-adds whose inner runs are C contiguous values.
Values equal the channel-major path's up to the GEMM's summation order.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.backend import get_array_module
from engine.ops._parallel import split_rows


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


def _rows(xp: Any, xpad: Any, k: tuple, stride: tuple, dilation: tuple, out_hw: tuple) -> Any:
    """(N*Ho*Wo, kh*kw*C) copy of the windows of a (N, Hp, Wp, C) array."""
    n, _, _, c = xpad.shape
    ho, wo = out_hw
    if k == (1, 1) and stride == (1, 1) and xpad.flags.c_contiguous:
        return xpad.reshape(n * ho * wo, c)
    s = xpad.strides
    win = xp.lib.stride_tricks.as_strided(
        xpad, (n, ho, wo, k[0], k[1], c),
        (s[0], s[1] * stride[0], s[2] * stride[1], s[1] * dilation[0], s[2] * dilation[1], s[3]))
    if xp is not np:
        return xp.ascontiguousarray(win).reshape(n * ho * wo, k[0] * k[1] * c)
    rows = np.empty(win.shape, dtype=xpad.dtype)

    def part(lo: int, hi: int) -> None:
        np.copyto(rows[lo:hi], win[lo:hi])

    split_rows(part, n, rows.size)  # samples copied on the engine's threads at once
    return rows.reshape(n * ho * wo, k[0] * k[1] * c)


class Saved:
    """What the backward needs: the input, and its rows when keeping them costs little."""

    __slots__ = ("out_hw", "rows", "x")

    def __init__(self, x: Any, rows: Any, out_hw: tuple) -> None:
        self.x, self.rows, self.out_hw = x, rows, out_hw


KEEP_ROWS = 2  # keep the rows when they are at most this many times the input (else recompute them)


def forward(x: Any, w: Any, bias: Any, stride: tuple, pads: tuple, dilation: tuple, out_hw: tuple) -> tuple:
    """Output (N, O, Ho, Wo) (channels-last strides) and what the backward needs (Saved).

    A 3x3 kernel's rows are ~9x the input: the backward builds them again from the input
    (one copy) rather than holding them from forward to backward, which kept a ResNet's
    peak memory at 2.1x torch's."""
    xp = get_array_module(x)
    n = x.shape[0]
    o, c, kh, kw = w.shape
    ho, wo = out_hw
    rows = _rows(xp, _padded_nhwc(xp, x, pads), (kh, kw), stride, dilation, out_hw)
    wk = xp.ascontiguousarray(w.transpose(2, 3, 1, 0)).reshape(kh * kw * c, o)
    out = rows @ wk  # (N*Ho*Wo, O)
    if bias is not None:
        out += bias
    keep = rows.size <= KEEP_ROWS * x.size
    return out.reshape(n, ho, wo, o).transpose(0, 3, 1, 2), Saved(x, rows if keep else None, out_hw)


def backward(g: Any, saved: Saved, w: Any, x_shape: tuple, stride: tuple, pads: tuple, dilation: tuple,
             need_x: bool, need_w: bool) -> tuple:
    """Input and weight gradients of ``forward`` for the output gradient ``g`` (N, O, Ho, Wo)."""
    xp = get_array_module(g)
    n, o, ho, wo = g.shape
    _, c, kh, kw = w.shape
    m = n * ho * wo
    gm = g.transpose(0, 2, 3, 1).reshape(m, o)  # a view when g is channels-last, as ours are
    gw = gx = None
    if need_w:
        rows = saved.rows
        if rows is None:
            rows = _rows(xp, _padded_nhwc(xp, saved.x, pads), (kh, kw), stride, dilation, saved.out_hw)
        kk = kh * kw * c
        if kk <= 64 and n > 1:
            # a tiny (O, K) result over a huge inner dimension: per-sample GEMMs, summed
            gwk = xp.matmul(gm.reshape(n, ho * wo, o).transpose(0, 2, 1), rows.reshape(n, ho * wo, kk)).sum(0)
        else:
            gwk = gm.T @ rows  # (O, kh*kw*C)
        gw = xp.ascontiguousarray(gwk.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
    if need_x:
        _, _, h, wd = x_shape
        (pt, pb), (pl, pr) = pads
        if (kh, kw) == (1, 1) and stride == (1, 1) and not (pt or pb or pl or pr):
            return (gm @ w.reshape(o, c)).reshape(n, h, wd, c).transpose(0, 3, 1, 2), gw
        # one (N*Ho*Wo, C) block per kernel offset, each contiguous, so that every slice-add
        # below runs over Wo*C contiguous values (stride 1) rather than C-long pieces
        blocks = xp.matmul(gm, xp.ascontiguousarray(w.transpose(2, 3, 0, 1)).reshape(kh * kw, o, c))
        gpad = xp.zeros((n, h + pt + pb, wd + pl + pr, c), dtype=g.dtype)
        b6 = blocks.reshape(kh, kw, n, ho, wo, c)

        def part(lo: int, hi: int) -> None:  # samples lo..hi: the same adds in the same order
            for i in range(kh):
                hs = i * dilation[0]
                hsl = slice(hs, hs + stride[0] * (ho - 1) + 1, stride[0])
                for j in range(kw):
                    ws = j * dilation[1]
                    gpad[lo:hi, hsl, ws:ws + stride[1] * (wo - 1) + 1:stride[1]] += b6[i, j, lo:hi]

        if xp is np:
            split_rows(part, n, blocks.size)
        else:
            part(0, n)
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
