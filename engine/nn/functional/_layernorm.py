"""layer_norm as one op on arrays, with a hand-written backward.

Why fused: through autograd the mean, centring, variance, scaling and affine terms record
eight nodes whose backward broadcasts and reduces each again; a Transformer step runs four
of them over (batch*seq, d_model). Here the input is worked on as (rows, D): two row
reductions and two passes forward, keeping xhat and 1/sigma; backward
dx = (dy*w - mean(dy*w) - xhat * mean(dy*w*xhat)) / sigma, with the weight and bias
gradients as column sums. Backward runs on arrays: no double backward through this op.
"""
from __future__ import annotations

from typing import Any

from engine.backend import get_array_module
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor


def layer_norm_rows(input: Tensor, d: int, weight: Tensor | None, bias: Tensor | None, eps: float) -> Tensor:
    """Normalizes the trailing ``d`` values of each row of ``input`` (biased variance)."""
    x = input._data
    xp = get_array_module(x)
    x2 = x.reshape(-1, d)
    mean = x2.mean(axis=1, keepdims=True)
    xhat = x2 - mean
    sq = xhat * xhat
    inv = 1.0 / xp.sqrt(sq.mean(axis=1, keepdims=True) + eps)
    del sq
    xhat *= inv
    w = None if weight is None else weight._data.reshape(-1)
    out = xhat * w if w is not None else xhat.copy()
    if bias is not None:
        out += bias._data.reshape(-1)
    res = wrap(out.reshape(x.shape))
    if needs_grad(input, weight, bias):
        def backward(g: Tensor, _: Any) -> tuple:
            g2 = xp.ascontiguousarray(g._data).reshape(-1, d)
            gw = gb = gx = None
            if weight is not None and weight.requires_grad:
                gw = (g2 * xhat).sum(axis=0).reshape(weight._data.shape)
            if bias is not None and bias.requires_grad:
                gb = g2.sum(axis=0).reshape(bias._data.shape)
            if input.requires_grad:
                dxh = g2 * w if w is not None else g2.copy()
                t = dxh * xhat
                m2 = t.mean(axis=1, keepdims=True)
                del t
                dxh -= dxh.mean(axis=1, keepdims=True)
                t = xhat * m2
                dxh -= t
                dxh *= inv
                gx = dxh.reshape(x.shape)
            return gx, gw, gb

        attach(res, (input, weight, bias), backward, "NativeLayerNormBackward0")
    return res
