"""MultiheadAttention as MatMul/Softmax ops, TransformerEncoderLayer (post- or pre-norm, relu or
gelu) and TransformerEncoder.

Attention works on (batch, seq, embed) internally; a sequence-first module is transposed in
and out. softmax(Q K^T / sqrt(head_dim)) V per head, then out_proj; the attention weights
(the second output) are the per-head probabilities averaged over heads, as the engine's
default ``need_weights=True, average_attn_weights=True``.
"""
from __future__ import annotations

import numpy as np

from engine import nn
from export import basic
from export.builder import INT64, Builder, ExportError, Val, array, child, need_rank, tensor_arg, translate, translator
from export.builder import type_name as tname


def _project(b: Builder, x: Val, w: np.ndarray, bias: np.ndarray | None, hint: str, wname: str) -> Val:
    return b.matmul_const(x, w.T, bias, hint, wname)


def _extend(b: Builder, k: Val, extra: np.ndarray, hint: str) -> Val:
    """k (N, S, E) with one more key ``extra`` (E,) for every sample: (N, S + 1, E)."""
    first = b.slice(k, 1, 0, 1, hint)
    shape = b.op("Shape", [first], (3,), hint=hint, dtype=INT64)
    row = b.op("Expand", [b.const(extra.reshape(1, 1, -1).astype(np.float32), f"{hint}.extra"), shape],
               first.shape, hint=hint)
    return b.concat([k, row], 1, hint)


def attention(b: Builder, m: nn.MultiheadAttention, q_in: Val, k_in: Val, v_in: Val, path: str,
              need_weights: bool = True) -> tuple:
    """Batch-first (N, L, E) query and (N, S, E) key/value -> (output (N, L, E), weights (N, L, S)
    or None without ``need_weights``)."""
    e, h = m.embed_dim, m.num_heads
    hd = e // h
    bias = array(m.in_proj_bias) if m.in_proj_bias is not None else None
    bq, bk, bv = (None, None, None) if bias is None else (bias[:e], bias[e:2 * e], bias[2 * e:])
    if m._qkv_same_embed_dim:
        w = array(m.in_proj_weight)
        wq, wk, wv = w[:e], w[e:2 * e], w[2 * e:]
    else:
        wq, wk, wv = array(m.q_proj_weight), array(m.k_proj_weight), array(m.v_proj_weight)
    if q_in is k_in and k_in is v_in and m._qkv_same_embed_dim:  # self-attention: one projection GEMM
        qkv = _project(b, q_in, np.concatenate([wq, wk, wv]), bias, path, f"{path}.in_proj_weight")
        split = b.op("Split", [qkv, b.ints([e, e, e], "split")], hint=path,
                     outputs=[(q_in.shape[:-1] + (e,), q_in.dtype)] * 3, axis=2)
        q, k, v = split
    else:
        q = _project(b, q_in, wq, bq, path, f"{path}.q_proj_weight")
        k = _project(b, k_in, wk, bk, path, f"{path}.k_proj_weight")
        v = _project(b, v_in, wv, bv, path, f"{path}.v_proj_weight")
    if m.bias_k is not None:
        k = _extend(b, k, array(m.bias_k).reshape(-1), path)
        v = _extend(b, v, array(m.bias_v).reshape(-1), path)
    if m.add_zero_attn:
        k = _extend(b, k, np.zeros(e, np.float32), path)
        v = _extend(b, v, np.zeros(e, np.float32), path)
    n, tgt, src = q.shape[0], q.shape[1], k.shape[1]
    qh = b.transpose(b.reshape(q, [n, tgt, h, hd], path), [0, 2, 1, 3], path)  # (N, H, L, hd)
    kh = b.transpose(b.reshape(k, [n, src, h, hd], path), [0, 2, 3, 1], path)  # (N, H, hd, S)
    vh = b.transpose(b.reshape(v, [n, src, h, hd], path), [0, 2, 1, 3], path)  # (N, H, S, hd)
    scores = b.scale(b.op("MatMul", [qh, kh], (n, h, tgt, src), hint=path), 1.0 / hd ** 0.5, path)
    p = b.unary("Softmax", scores, path, axis=3)
    oh = b.op("MatMul", [p, vh], (n, h, tgt, hd), hint=path)
    out = b.reshape(b.transpose(oh, [0, 2, 1, 3], path), [n, tgt, e], path)
    op = m.out_proj
    out = _project(b, out, array(op.weight), array(op.bias) if op.bias is not None else None,
                   child(path, "out_proj"), f"{path}.out_proj.weight")
    weights = b.reduce("ReduceMean", p, [1], False, path) if need_weights else None
    return out, weights


@translator(nn.MultiheadAttention)
def multihead_attention(b: Builder, m: nn.MultiheadAttention, args: list, path: str,
                        need_weights: bool = True) -> tuple:
    if len(args) == 1:
        args = args * 3
    q, k, v = tensor_arg(m, args, path, 3)
    for x in (q, k, v):
        need_rank(m, x, (3,), path, "(batch, seq, embed)" if m.batch_first else "(seq, batch, embed)")
    if not m.batch_first:  # to (N, L, E), keeping q is k is v for self-attention
        moved = {}
        for x in (q, k, v):
            if x.name not in moved:
                moved[x.name] = b.transpose(x, [1, 0, 2], path)
        q, k, v = moved[q.name], moved[k.name], moved[v.name]
    out, weights = attention(b, m, q, k, v, path, need_weights)
    if not m.batch_first:
        out = b.transpose(out, [1, 0, 2], path)
    return out, weights


def _activation(b: Builder, layer, x: Val, path: str) -> Val:
    act = layer.activation
    if isinstance(act, nn.Module):
        return translate(b, act, [x], child(path, "activation"))
    for fn, emit in basic.FUNCTIONAL.items():
        if act is fn:
            return emit(b, x, path)
    raise ExportError(path, tname(layer), f"activation {getattr(act, '__name__', act)!r} is not relu or gelu")


@translator(nn.TransformerEncoderLayer)
def encoder_layer(b: Builder, m: nn.TransformerEncoderLayer, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    sa = m.self_attn

    def sa_block(y: Val) -> Val:
        return multihead_attention(b, sa, [y], child(path, "self_attn"), need_weights=False)[0]

    def ff_block(y: Val) -> Val:
        y = translate(b, m.linear1, [y], child(path, "linear1"))
        y = _activation(b, m, y, path)
        return translate(b, m.linear2, [y], child(path, "linear2"))

    def norm(which: str, y: Val) -> Val:
        return translate(b, getattr(m, which), [y], child(path, which))

    if m.norm_first:
        x = b.add(x, sa_block(norm("norm1", x)), path)
        return b.add(x, ff_block(norm("norm2", x)), path)
    x = norm("norm1", b.add(x, sa_block(x), path))
    return norm("norm2", b.add(x, ff_block(x), path))


@translator(nn.TransformerEncoder)
def encoder(b: Builder, m: nn.TransformerEncoder, args: list, path: str) -> Val:
    (x,) = tensor_arg(m, args, path)
    for i, layer in enumerate(m.layers):
        x = translate(b, layer, [x], child(path, f"layers.{i}"))
    if m.norm is not None:
        x = translate(b, m.norm, [x], child(path, "norm"))
    return x
