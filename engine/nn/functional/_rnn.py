"""A fused LSTM layer (one direction) on raw arrays with a hand-written backward.

Why fused: run through autograd, each time step records a dozen nodes and every
backward step pays their bookkeeping. Here the input projection of all time steps is
one GEMM hoisted out of the loop, each step is one batched GEMM for the four gates
(i, f, g, o, torch's order; each gate a contiguous (N, H) block) plus a few in-place
elementwise passes, and the backward is the reverse loop plus three GEMMs over all steps
for the weight and input gradients. Backward runs on arrays: no double backward through this op.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import fused as _fused
from engine.amp import _policy as _amp
from engine.backend import blas_threads, get_array_module
from engine.ops import _parallel
from engine.ops._util import attach, needs_grad, wrap
from engine.tensor import Tensor

__all__ = ["lstm_layer"]


def _sigmoid(xp: Any, a: Any) -> Any:
    """In place: a <- 1 / (1 + exp(-a))."""
    xp.negative(a, out=a)
    xp.exp(a, out=a)
    a += 1.0
    xp.reciprocal(a, out=a)
    return a


def lstm_layer(input: Tensor, h0: Tensor, c0: Tensor, w_ih: Tensor, w_hh: Tensor, b_ih: Tensor | None,
               b_hh: Tensor | None, reverse: bool = False, w_hr: Tensor | None = None) -> Tensor:
    """Runs one LSTM direction over (T, N, I) input from states h0 (N, P) and c0 (N, H).

    ``w_hr`` (P, H) is torch's projection (proj_size): h_t = (o * tanh(c_t)) W_hr^T; without it
    P = H. Returns one flat Tensor of T*N*P + N*H values: the outputs h_t as (T, N, P) in input
    order (also when ``reverse``), then the final cell state c_n (N, H); h_n is output step T-1
    (or 0 when ``reverse``). One op, so one autograd node for the whole sequence.
    """
    if _amp.ACTIVE:
        input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr = _amp.lower(
            "lstm", input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr)
    fused = _fused.lstm_layer(input, h0, c0, w_ih, w_hh, b_ih, b_hh, reverse, w_hr)
    if fused is not None:
        return fused
    x, w1, w2 = input._data, w_ih._data, w_hh._data
    xp = get_array_module(x)
    t_len, n, _ = x.shape
    hid = w1.shape[0] // 4
    wr = None if w_hr is None else w_hr._data
    proj = hid if wr is None else wr.shape[0]
    # gate-major steps (T, 4, N, H): each gate of a step is one contiguous (N, H) block, so every
    # elementwise pass below runs numpy's contiguous loops (on (N, 4H) column slices each pass
    # paid a strided inner loop per row: 2.5x the time for a 64 x 128 gate)
    acts = xp.empty((t_len, 4, n, hid), dtype=x.dtype)
    projection = _InputProjection(xp, x, w1, b_ih, b_hh, acts, reverse)
    w2g = xp.ascontiguousarray(w2.reshape(4, hid, proj).transpose(0, 2, 1))  # (4, P, H): h @ w2g[k] is gate k
    wrt = None if wr is None else xp.ascontiguousarray(wr.T)
    size = t_len * n * proj
    flat = xp.empty(size + n * hid, dtype=x.dtype)
    ys = flat[:size].reshape(t_len, n, proj)
    cs = xp.empty((t_len, n, hid), dtype=x.dtype)  # c_t after each step
    tcs = xp.empty((t_len, n, hid), dtype=x.dtype)  # tanh(c_t), for the backward
    hs = ys if wr is None else xp.empty((t_len, n, hid), dtype=x.dtype)  # o * tanh(c_t), before projection
    hw = xp.empty((4, n, hid), dtype=x.dtype)
    ig = xp.empty((n, hid), dtype=x.dtype)
    h, c = h0._data, c0._data
    order = range(t_len - 1, -1, -1) if reverse else range(t_len)
    try:
        for t in order:
            projection.ready(t)
            a = acts[t]  # overwritten in place with the gate activations i, f, g, o
            xp.matmul(h, w2g, out=hw)
            a += hw
            _sigmoid(xp, a[:2])
            xp.tanh(a[2], out=a[2])
            _sigmoid(xp, a[3])
            i, f, g, o = a
            c_new = cs[t]
            xp.multiply(f, c, out=c_new)
            xp.multiply(i, g, out=ig)
            c_new += ig
            tc = xp.tanh(c_new, out=tcs[t])
            h = xp.multiply(tc, o, out=hs[t])
            if wr is not None:
                h = xp.matmul(h, wrt, out=ys[t])
            c = c_new
    finally:
        projection.close()
    flat[size:] = c.reshape(-1)
    out = wrap(flat)
    if not needs_grad(input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr):
        return out
    h0d, c0d = h0._data, c0._data
    w2b = w2.reshape(4, hid, proj)  # gate k's rows of W_hh

    def backward(grad: Tensor, _: Any) -> tuple:
        gy = grad._data[:size].reshape(t_len, n, proj)
        d_gates = xp.empty_like(acts)  # (T, 4, N, H), as acts
        dhs = None if wr is None else xp.empty((t_len, n, proj), dtype=x.dtype)  # dL/dh_t, projected side
        dh = xp.zeros((n, proj), dtype=x.dtype)
        dc = grad._data[size:].reshape(n, hid).astype(x.dtype, copy=True)
        der = xp.empty((4, n, hid), dtype=x.dtype)  # per-step scratch
        tmp = xp.empty((n, hid), dtype=x.dtype)
        dhk = xp.empty((4, n, proj), dtype=x.dtype)
        grads = _WeightGrads(xp, x, ys, h0d, w1, d_gates, reverse, input.requires_grad,
                             w_ih.requires_grad, w_hh.requires_grad)
        try:
            for t in reversed(order):
                dh += gy[t]
                dhx = dh
                if wr is not None:
                    dhs[t] = dh
                    dhx = dh @ wr  # back through the projection: (N, H)
                a = acts[t]
                i, f, g, o = a
                c_prev = cs[t - 1] if (t > 0 and not reverse) else (cs[t + 1] if (reverse and t < t_len - 1) else c0d)
                # the activations' derivatives for all four gates at once: (1 - s) * s, and 1 - g^2
                xp.subtract(1.0, a, out=der)
                der *= a
                xp.multiply(g, g, out=der[2])
                xp.subtract(1.0, der[2], out=der[2])
                tc = tcs[t]
                dg = d_gates[t]
                xp.multiply(dhx, tc, out=dg[3])  # d o
                xp.multiply(tc, tc, out=tmp)
                xp.subtract(1.0, tmp, out=tmp)
                tmp *= o
                tmp *= dhx
                dc += tmp  # dc_t total
                xp.multiply(dc, g, out=dg[0])  # d i
                xp.multiply(dc, c_prev, out=dg[1])  # d f
                xp.multiply(dc, i, out=dg[2])  # d g
                dg *= der  # through the activations
                dc *= f
                xp.matmul(dg, w2b, out=dhk)  # per gate (N, H) @ (H, P), summed: dL/dh_{t-1}
                xp.sum(dhk, axis=0, out=dh)
                grads.step_done(t)
            gx, gw_ih, gw_hh, gb = grads.result()
        finally:
            grads.close()
        gw_hr = None
        if wr is not None and w_hr.requires_grad:
            gw_hr = dhs.reshape(t_len * n, proj).T @ hs.reshape(t_len * n, hid)
        if not ((b_ih is not None and b_ih.requires_grad) or (b_hh is not None and b_hh.requires_grad)):
            gb = None
        res = (gx, dh if h0.requires_grad else None, dc if c0.requires_grad else None, gw_ih, gw_hh,
               gb if b_ih is not None and b_ih.requires_grad else None,
               None if gb is None or b_hh is None or not b_hh.requires_grad else gb.copy(), gw_hr)
        return tuple(None if r is None else wrap(r) for r in res)

    attach(out, (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr), backward, "LstmBackward")
    return out


STEP_CHUNK = 10  # time steps per piece of the work hoisted out of the recurrence


class _StepPieces:
    """The work of an LSTM layer that does not depend on the recurrence (the input projection
    before it, the weight gradients after it), cut into pieces of STEP_CHUNK time steps so
    that it runs on the engine's pool beside the recurrence instead of before or after it.

    Pieces are the same whatever the thread count (results are summed in piece order, so
    they are the same bits); on one thread they run inline. While the pool is used OpenBLAS
    is held to one thread: the recurrence's small per-step GEMMs gain nothing from OpenBLAS's
    threads, and two callers asking its pool for every core queue behind each other."""

    def __init__(self, xp: Any, t_len: int) -> None:
        step = STEP_CHUNK if xp is np else t_len
        self.bounds = [(t0, min(t0 + step, t_len)) for t0 in range(0, t_len, step)]
        self.pieces: dict = {}
        self.pool = None
        if xp is np and _parallel._N > 1 and len(self.bounds) > 1:
            self.pool = _parallel._get_pool()
            blas_threads.hold_one()

    def _piece(self, t0: int, t1: int) -> Any:
        raise NotImplementedError

    def start(self, k: int) -> None:
        t0, t1 = self.bounds[k]
        self.pieces[k] = self.pool.submit(self._piece, t0, t1) if self.pool else (t0, t1)

    def finish(self, k: int) -> Any:
        piece = self.pieces.pop(k)
        return piece.result() if self.pool else self._piece(*piece)

    def close(self) -> None:
        """Wait for pieces still running (after an error) and give OpenBLAS its threads back."""
        if self.pool is not None:
            for f in self.pieces.values():
                f.exception()
            blas_threads.release()
            self.pool = None


class _InputProjection(_StepPieces):
    """acts[t] = gate-major (x_t W_ih^T + b_ih + b_hh), every piece queued up front in the loop's
    order; ``ready(t)`` waits for the piece holding step t."""

    def __init__(self, xp: Any, x: Any, w1: Any, b_ih: Any, b_hh: Any, acts: Any, reverse: bool) -> None:
        super().__init__(xp, x.shape[0])
        self.x, self.w1t, self.acts = x, xp.ascontiguousarray(w1.T), acts
        self.biases = [b._data for b in (b_ih, b_hh) if b is not None]
        self.first = {(b[1] - 1 if reverse else b[0]): k for k, b in enumerate(self.bounds)}
        if self.pool:
            for k in list(range(len(self.bounds)))[::-1 if reverse else 1]:
                self.start(k)

    def _piece(self, t0: int, t1: int) -> None:
        n, hid = self.acts.shape[2:]
        xw = self.x[t0:t1].reshape((t1 - t0) * n, -1) @ self.w1t
        for b in self.biases:
            xw += b
        self.acts[t0:t1] = xw.reshape(t1 - t0, n, 4, hid).transpose(0, 2, 1, 3)

    def ready(self, t: int) -> None:
        k = self.first.get(t)
        if k is not None:
            if not self.pool:
                self.start(k)
            self.finish(k)


class _WeightGrads(_StepPieces):
    """The backward's GEMMs over all steps (input gradient, W_ih, W_hh and bias gradients), a
    piece started as soon as the reverse loop has written its steps' gate gradients."""

    def __init__(self, xp: Any, x: Any, ys: Any, h0: Any, w1: Any, d_gates: Any, reverse: bool,
                 need_x: bool, need_ih: bool, need_hh: bool) -> None:
        super().__init__(xp, x.shape[0])
        self.xp, self.x, self.w1, self.d_gates, self.reverse = xp, x, w1, d_gates, reverse
        self.need_x, self.need_ih, self.need_hh = need_x, need_ih, need_hh
        self.hid = d_gates.shape[-1]
        # the state each step started from: h_{t-1} (h_{t+1} when reverse)
        self.h_prev = (xp.concatenate([ys[1:], h0[None]], 0) if reverse else
                       xp.concatenate([h0[None], ys[:-1]], 0)) if need_hh else None
        self.gx = xp.empty(x.shape, dtype=x.dtype) if need_x else None
        self.last = {(b[1] - 1 if not reverse else b[0]): k for k, b in enumerate(self.bounds)}

    def step_done(self, t: int) -> None:
        """Step ``t``'s gate gradients are written; start the piece this step completes."""
        k = self.last.get(t)
        if k is not None:
            self.start(k)

    def _piece(self, t0: int, t1: int) -> tuple:
        xp, h = self.xp, self.hid
        fg = xp.ascontiguousarray(self.d_gates[t0:t1].transpose(0, 2, 1, 3)).reshape(-1, 4 * h)
        if self.need_x:
            self.gx[t0:t1] = (fg @ self.w1).reshape(t1 - t0, *self.x.shape[1:])
        gih = fg.T @ self.x[t0:t1].reshape(len(fg), -1) if self.need_ih else None
        ghh = fg.T @ self.h_prev[t0:t1].reshape(len(fg), -1) if self.need_hh else None
        return gih, ghh, fg.sum(0)

    def result(self) -> tuple:
        """gx, gW_ih, gW_hh, gb: the pieces summed in piece order."""
        total: list = [None, None, None]
        for k in range(len(self.bounds)):
            for j, v in enumerate(self.finish(k)):
                if v is not None:
                    total[j] = v if total[j] is None else total[j] + v
        return (self.gx, *total)
