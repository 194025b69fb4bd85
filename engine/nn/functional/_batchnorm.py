"""batch_norm in training mode as one op on arrays, with a hand-written backward.

Why fused: through autograd the batch statistics, centring, scaling and affine terms
record eight nodes whose backward broadcasts and reduces each one again. Here the forward
is two reductions and two passes, keeping only the centred input and 1/sqrt(var + eps)
for the backward, which is two reductions and three passes:
dx = w / sigma * (dy - mean(dy) - xhat * mean(dy * xhat)).

Layouts: a channels-first input is worked on as (N, C, H*W). A channels-last one (what
conv2d gives) is an (N*H*W, C) matrix, worked on as (N*H*W/k, k*C) with the per-channel
vectors tiled k times: numpy runs a reduction over axis 0, or a broadcast of a C-long row,
one C-long inner loop per row, which for C = 16 was 10x slower than the same work on
512-long rows. Backward runs on arrays: no double backward through this op (eval mode
keeps the differentiable Tensor path).
"""
from __future__ import annotations

from typing import Any

from engine.backend import get_array_module
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

_ROW = 512  # aim for rows of about this many values in the channels-last view


class _View:
    """How one input is laid out for the per-channel work: ``v`` the working array, ``sum``
    per-channel sums (keepdims, in v's broadcast shape), ``vec`` a (C,) vector for v."""

    def __init__(self, xp: Any, x: Any) -> None:
        self.xp, self.shape, c = xp, x.shape, x.shape[1]
        self.c, self.k, self.last = c, 1, False
        t = x.transpose(0, 2, 3, 1) if x.ndim == 4 else None
        if x.ndim == 2 or (t is not None and t.flags.c_contiguous):
            m = x.size // c
            k = 1
            while k * 2 * c <= _ROW and m % (k * 2) == 0:
                k *= 2
            self.k, self.last = k, x.ndim == 4
            self.v = (t if t is not None else x).reshape(m // k, k * c)
        else:
            self.v = x.reshape(x.shape[0], c, -1)

    def of(self, a: Any) -> Any:
        """Another array shaped like the input in this working layout (a copy if it must)."""
        if self.v.ndim == 3:
            return self.xp.ascontiguousarray(a).reshape(self.v.shape)
        if self.last:
            a = a.transpose(0, 2, 3, 1)
        return self.xp.ascontiguousarray(a).reshape(self.v.shape)

    def sum(self, a: Any) -> Any:
        if a.ndim == 3:
            return a.sum(axis=(0, 2), keepdims=True)
        s = a.sum(axis=0)
        if self.k > 1:
            s = self.xp.tile(s.reshape(self.k, self.c).sum(axis=0), self.k)
        return s.reshape(1, -1)

    def vec(self, a: Any) -> Any:
        if self.v.ndim == 3:
            return a.reshape(1, self.c, 1)
        return (self.xp.tile(a, self.k) if self.k > 1 else a).reshape(1, -1)

    def channel(self, a: Any) -> Any:
        """A per-channel (C,) vector from a sum/vec-shaped one."""
        return a.reshape(-1)[:self.c]

    def back(self, a: Any) -> Any:
        """An array in the working layout as one shaped like the input."""
        if self.v.ndim == 3 or not self.last:
            return a.reshape(self.shape)
        n, c, h, w = self.shape
        return a.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def batch_norm_train(input: Tensor, running_mean: Tensor | None, running_var: Tensor | None,
                     weight: Tensor | None, bias: Tensor | None, momentum: float, eps: float) -> Tensor:
    """Batch statistics over every dim but 1; running stats updated in place (unbiased var)."""
    x = input._data
    xp = get_array_module(x)
    lay = _View(xp, x)
    n = x.size // lay.c
    mean = lay.sum(lay.v) / n
    xc = lay.v - mean
    sq = xc * xc
    var = lay.sum(sq) / n
    del sq
    inv = 1.0 / xp.sqrt(var + eps)
    scale = inv if weight is None else inv * lay.vec(weight._data)
    out = xc * scale
    if bias is not None:
        out += lay.vec(bias._data)
    if running_mean is not None and running_var is not None:
        rm, rv = running_mean._data, running_var._data
        rm *= 1 - momentum
        rm += momentum * lay.channel(mean).astype(rm.dtype, copy=False)
        rv *= 1 - momentum
        rv += momentum * (lay.channel(var) * (n / (n - 1))).astype(rv.dtype, copy=False)
    res = wrap(lay.back(out))
    if needs_grad(input, weight, bias):
        def backward(g: Tensor, _: Any) -> tuple:
            gv = lay.of(g._data)
            sdy = lay.sum(gv)
            t = gv * xc
            sdyxc = lay.sum(t)
            del t
            gx = gw = gb = None
            if input.requires_grad:
                gxv = xc * (-(sdyxc * inv * inv / n))
                gxv += gv
                gxv -= sdy / n
                gxv *= scale
                gx = wrap(lay.back(gxv))
            if weight is not None and weight.requires_grad:
                gw = wrap(lay.channel(sdyxc * inv).astype(weight._data.dtype, copy=True))
            if bias is not None and bias.requires_grad:
                gb = wrap(lay.channel(sdy).astype(bias._data.dtype, copy=True))
            return gx, gw, gb

        attach(res, (input, weight, bias), backward, "NativeBatchNormBackward0")
    return res
