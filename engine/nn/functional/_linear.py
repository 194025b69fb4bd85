"""linear, bilinear, identity-like helpers."""
from __future__ import annotations

from typing import Any

from engine.amp import _policy as _amp
from engine.autograd.grad_mode import STATE
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

__all__ = ["bilinear", "linear"]


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y = x W^T + b, with x of shape (*, in_features) and W of shape (out, in).

    One fused op: the leading dims are flattened so the forward is one 2-D GEMM (plus an
    in-place bias add) and the backward is three 2-D GEMM/reductions (a batched matmul would
    make the weight gradient a stack of per-item products summed afterwards). Under
    ``create_graph`` the backward is written with Tensor ops, so double backward works."""
    if _amp.ACTIVE:
        input, weight, bias = _amp.lower("linear", input, weight, bias)
    x, w = input._data, weight._data
    if x.ndim == 0 or x.shape[-1] != w.shape[-1] or w.ndim != 2:
        out = input.matmul(weight.t())  # the error messages (and 1-D weights) of matmul
        return out if bias is None else out + bias
    if x.dtype != w.dtype or (bias is not None and bias._data.dtype != x.dtype):
        out = input.matmul(weight.t())
        return out if bias is None else out + bias
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    out_arr = x2 @ w.T
    if bias is not None:
        out_arr += bias._data
    out = wrap(out_arr.reshape(lead + (w.shape[0],)))
    if needs_grad(input, weight, bias):
        def backward(g: Tensor, _: Any) -> tuple:
            if STATE.enabled:  # create_graph: differentiable backward
                g2 = g.reshape(-1, w.shape[0])
                gx = g2.matmul(weight).reshape(input.shape) if input.requires_grad else None
                gw = g2.t().matmul(input.reshape(-1, x.shape[-1])) if weight.requires_grad else None
                gb = g2.sum(0) if bias is not None and bias.requires_grad else None
                return gx, gw, gb
            # fresh raw arrays: the engine owns them, so a leaf takes each as .grad without a copy
            g2 = g._data.reshape(-1, w.shape[0])
            gx = (g2 @ w).reshape(x.shape) if input.requires_grad else None
            gw = g2.T @ x2 if weight.requires_grad else None
            gb = g2.sum(0) if bias is not None and bias.requires_grad else None
            return gx, gw, gb

        attach(out, (input, weight, bias), backward, "AddmmBackward0")
    return out


def bilinear(input1: Tensor, input2: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """y_k = x1^T W_k x2 + b_k, with W of shape (out, in1, in2)."""
    out_f, in1, in2 = weight.shape
    lead = input1.shape[:-1]
    x1 = input1.reshape(-1, in1)
    x2 = input2.reshape(-1, in2)
    # (B, in1) @ (in1, out*in2) -> (B, out, in2); then contract in2 with x2
    t = x1.matmul(weight.permute(1, 0, 2).reshape(in1, out_f * in2)).reshape(-1, out_f, in2)
    out = (t * x2.unsqueeze(1)).sum(-1)
    if bias is not None:
        out = out + bias
    return out.reshape(*lead, out_f)
