"""Multi-head attention core as one fused op: batched matmuls over (N, H) with a hand-written backward.

Why fused: through autograd the scores, softmax, dropout and the two batched products
record separate nodes whose backward re-materializes broadcasts and layout copies. Here
the forward is two batched GEMMs and an in-place softmax, and the backward is four
batched GEMMs plus the softmax Jacobian-vector product. Backward runs on arrays: no double backward through this op.
"""
from __future__ import annotations

from typing import Any

from engine.amp import _policy as _amp
from engine.backend import get_array_module
from engine.ops._util import attach, needs_grad, raw_sum_to, wrap
from engine.tensor import Tensor

__all__ = ["multi_head_attention_core"]


def _heads(a: Any, n_heads: int) -> Any:
    """(L, N, E) -> (N, H, L, hd) view."""
    seq, n, e = a.shape
    return a.reshape(seq, n, n_heads, e // n_heads).transpose(1, 2, 0, 3)


def multi_head_attention_core(q: Tensor, k: Tensor, v: Tensor, num_heads: int, mask: Tensor | None = None,
                              dropout_p: float = 0.0, need_weights: bool = False) -> tuple:
    """softmax(Q K^T / sqrt(hd) + mask) V per head, for projected q (L, N, E), k and v (S, N, E).

    ``mask`` is an additive float Tensor broadcastable to (N, H, L, S) (it gets a gradient when
    it requires one, as in torch). Returns the (L, N, E)
    output and, when ``need_weights``, the (N, H, L, S) attention probabilities after
    dropout (as torch), both differentiable; else None.
    """
    if _amp.ACTIVE:
        q, k, v = _amp.lower("scaled_dot_product_attention", q, k, v)
    qa, ka, va = q._data, k._data, v._data
    xp = get_array_module(qa)
    seq_q, n, e = qa.shape
    hd = e // num_heads
    scale = 1.0 / hd ** 0.5
    qh, kh, vh = _heads(qa, num_heads), _heads(ka, num_heads), _heads(va, num_heads)
    p = xp.matmul(qh, kh.transpose(0, 1, 3, 2))  # (N, H, L, S)
    p *= scale
    if mask is not None:
        p += mask._data
    p -= p.max(axis=-1, keepdims=True)
    xp.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    keep = None
    pd = p
    if dropout_p > 0.0:
        from engine.nn.functional._misc import _bernoulli_keep

        keep = _bernoulli_keep(p.shape, dropout_p, p, scale=1.0 / (1.0 - dropout_p))
        pd = p * keep
    oh = xp.matmul(pd, vh)  # (N, H, L, hd)
    size = seq_q * n * e
    if need_weights:  # one output array: the attention output, then the weights (one autograd node)
        flat = xp.empty(size + pd.size, dtype=qa.dtype)
        flat[:size].reshape(seq_q, n, num_heads, hd)[...] = oh.transpose(2, 0, 1, 3)
        flat[size:] = pd.ravel()
        packed = wrap(flat)
    else:
        packed = wrap(xp.ascontiguousarray(oh.transpose(2, 0, 1, 3)).reshape(seq_q, n, e))
    if needs_grad(q, k, v, mask):
        def backward(g: Tensor, _: Any) -> tuple:
            ga = g._data
            gw = None
            if need_weights:
                ga, gw = ga[:size].reshape(seq_q, n, e), ga[size:].reshape(pd.shape)
            gh = _heads(ga, num_heads)  # (N, H, L, hd)
            gv = gk = gq = None
            if v.requires_grad:
                gv = xp.matmul(pd.transpose(0, 1, 3, 2), gh)  # (N, H, S, hd)
            dp = xp.matmul(gh, vh.transpose(0, 1, 3, 2))  # (N, H, L, S)
            if gw is not None:
                dp += gw
            if keep is not None:
                dp *= keep
            ds = dp - (dp * p).sum(axis=-1, keepdims=True)
            ds *= p
            gm = None
            if mask is not None and mask.requires_grad:
                gm = wrap(raw_sum_to(ds, mask._data.shape).astype(ds.dtype, copy=False))
            ds *= scale
            if q.requires_grad:
                gq = xp.matmul(ds, kh)
            if k.requires_grad:
                gk = xp.matmul(ds.transpose(0, 1, 3, 2), qh)

            def back(a: Any) -> Any:
                return None if a is None else wrap(xp.ascontiguousarray(a.transpose(2, 0, 1, 3)).reshape(-1, n, e))

            return back(gq), back(gk), back(gv), gm

        attach(packed, (q, k, v, mask), backward, "MultiHeadAttentionBackward")
    if not need_weights:
        return packed, None
    return packed[:size].reshape(seq_q, n, e), packed[size:].reshape(pd.shape)
