"""A fused GRU layer (one direction) on raw arrays with a hand-written backward.

Why fused: through autograd each time step records about fifteen nodes (linear, chunks,
sigmoids, tanh, products) and the backward pays their bookkeeping and temporaries 50
times per sequence. Here, as for the LSTM (functional._rnn), the input projection of
every step is one GEMM before the loop, each step is one GEMM for the three gates
(r, z, n: torch's order and formulas, n = tanh(x W_in + b_in + r * (h W_hn + b_hn)),
h' = (1 - z) * n + z * h) plus in-place elementwise passes, and the backward is the
reverse loop (one GEMM a step) then four GEMMs over all steps for the weight and input
gradients. Backward runs on arrays: no double backward through this op.
"""
from __future__ import annotations

from typing import Any

from engine.backend import get_array_module
from engine.nn.functional._rnn import _sigmoid
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

__all__ = ["gru_layer"]


def gru_layer(input: Tensor, h0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
              b_hh: Tensor | None, reverse: bool = False) -> Tensor:
    """Runs one GRU direction over (T, N, I) input from h0 (N, H); returns the outputs h_t as
    (T, N, H) in input order (also when ``reverse``); h_n is step T-1 (0 when ``reverse``)."""
    x, w1, w2 = input._data, w_ih._data, w_hh._data
    xp = get_array_module(x)
    t_len, n, _ = x.shape
    hid = w2.shape[1]
    xw = (x.reshape(t_len * n, -1) @ w1.T).reshape(t_len, n, 3 * hid)
    if b_ih is not None:
        xw += b_ih._data
    w2t = xp.ascontiguousarray(w2.T)  # (H, 3H)
    bh = None if b_hh is None else b_hh._data
    gates = xw  # overwritten step by step: r, z (activations) and n
    hns = xp.empty((t_len, n, hid), dtype=x.dtype)  # h W_hn + b_hn, kept for the backward
    ys = xp.empty((t_len, n, hid), dtype=x.dtype)
    hw = xp.empty((n, 3 * hid), dtype=x.dtype)
    h = h0._data
    order = range(t_len - 1, -1, -1) if reverse else range(t_len)
    for t in order:
        a = gates[t]
        xp.matmul(h, w2t, out=hw)
        if bh is not None:
            hw += bh
        rz = a[:, :2 * hid]
        rz += hw[:, :2 * hid]
        _sigmoid(xp, rz)
        r, z, nn = a[:, :hid], a[:, hid:2 * hid], a[:, 2 * hid:]
        hn = hns[t]
        hn[...] = hw[:, 2 * hid:]
        hr = hw[:, 2 * hid:]
        hr *= r
        nn += hr
        xp.tanh(nn, out=nn)
        h_new = ys[t]
        xp.subtract(h, nn, out=h_new)
        h_new *= z
        h_new += nn
        h = h_new
    out = wrap(ys)
    if not needs_grad(input, h0, w_ih, w_hh, b_ih, b_hh):
        return out
    h0d = h0._data

    def backward(grad: Tensor, _: Any) -> tuple:
        gy = grad._data
        dx_gates = xp.empty_like(gates)  # dL/d(x W_ih^T + b_ih): r, z, n pre-activations
        dh_gates = xp.empty_like(gates)  # dL/d(h W_hh^T + b_hh)
        dh = xp.zeros((n, hid), dtype=x.dtype)
        tmp = xp.empty((n, hid), dtype=x.dtype)
        for t in reversed(order):
            dh += gy[t]
            a = gates[t]
            r, z, nn = a[:, :hid], a[:, hid:2 * hid], a[:, 2 * hid:]
            t_prev = t + 1 if reverse else t - 1
            h_prev = ys[t_prev] if 0 <= t_prev < t_len else h0d
            dxg, dhg = dx_gates[t], dh_gates[t]
            da_n = dxg[:, 2 * hid:]
            xp.multiply(nn, nn, out=tmp)  # d n_pre = dh * (1 - z) * (1 - n^2)
            xp.subtract(1.0, tmp, out=tmp)
            xp.subtract(1.0, z, out=da_n)
            da_n *= dh
            da_n *= tmp
            xp.multiply(da_n, r, out=dhg[:, 2 * hid:])
            da_r = dxg[:, :hid]  # d r_pre = d n_pre * hn * r * (1 - r)
            xp.multiply(da_n, hns[t], out=da_r)
            da_r *= r
            xp.subtract(1.0, r, out=tmp)
            da_r *= tmp
            da_z = dxg[:, hid:2 * hid]  # d z_pre = dh * (h_prev - n) * z * (1 - z)
            xp.subtract(h_prev, nn, out=da_z)
            da_z *= dh
            da_z *= z
            xp.subtract(1.0, z, out=tmp)
            da_z *= tmp
            dhg[:, :2 * hid] = dxg[:, :2 * hid]
            dh *= z  # the direct path h' -> h_prev, then the recurrent GEMM
            dh += dhg @ w2
        fx = dx_gates.reshape(t_len * n, 3 * hid)
        fh = dh_gates.reshape(t_len * n, 3 * hid)
        gx = (fx @ w1).reshape(x.shape) if input.requires_grad else None
        gw_ih = fx.T @ x.reshape(t_len * n, -1) if w_ih.requires_grad else None
        gw_hh = None
        if w_hh.requires_grad:
            h_prev = xp.concatenate([ys[1:], h0d[None]], 0) if reverse else xp.concatenate([h0d[None], ys[:-1]], 0)
            gw_hh = fh.T @ h_prev.reshape(t_len * n, hid)
        gb_ih = fx.sum(0) if b_ih is not None and b_ih.requires_grad else None
        gb_hh = fh.sum(0) if b_hh is not None and b_hh.requires_grad else None
        res = (gx, dh if h0.requires_grad else None, gw_ih, gw_hh, gb_ih, gb_hh)
        return tuple(None if r is None else wrap(r) for r in res)

    attach(out, (input, h0, w_ih, w_hh, b_ih, b_hh), backward, "GruBackward")
    return out
