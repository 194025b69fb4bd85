"""Fused cupy kernels for hot elementwise chains: optimizer updates, GELU, BatchNorm, unscaling.

Each entry point returns False (or None) unless its arrays are cupy arrays and fusion is on,
so the numpy path stays exactly as it was and is these kernels' reference in the GPU tests
(tests/engine/test_fused_gpu.py). ``ENGINE_FUSED=0`` turns them off (``set_enabled`` too).
"""
from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np

from engine.backend import xp_of as _xp
from engine.fused import kernels as _k

__all__ = ["adam_update", "batch_norm", "enabled", "gelu", "layer_norm", "lstm_layer", "set_enabled",
           "sgd_step", "unscale_check_"]

_ON = [os.environ.get("ENGINE_FUSED", "1") != "0"]


def set_enabled(on: bool) -> None:
    _ON[0] = bool(on)


def enabled(xp: Any) -> bool:
    """Whether fused kernels serve arrays of module ``xp`` (cupy only, and only when on)."""
    return _ON[0] and xp is not np and xp.__name__ == "cupy"


_BROKEN: set = set()  # kernels that did not compile here: the plain path serves their ops


def _launch(spec: tuple, *args: Any) -> Any:
    """Run one kernel: its outputs, or None when it cannot be compiled on this machine (warned
    once; the caller then takes the plain path, which the kernel has not touched)."""
    if spec in _BROKEN:
        return None
    try:
        return _k.build(spec)(*args)
    except Exception as exc:
        if type(exc).__name__ not in ("CompileException", "NVRTCError"):
            raise
        _BROKEN.add(spec)
        warnings.warn(f"engine.fused: kernel {spec[3]} does not compile here ({exc}); using the plain path",
                      RuntimeWarning, stacklevel=3)
        return None


def unscale_check_(xp: Any, g: Any, inv_scale: float, found: Any) -> bool:
    """g *= inv_scale in place, found[0] = 1 if any g was inf/NaN: one kernel (GradScaler)."""
    if not enabled(xp) or g.dtype.kind != "f" or not g.flags.c_contiguous:
        return False
    return _launch(_k.UNSCALE, np.float32(inv_scale), g, found) is not None


def sgd_step(state: Any, p: Any, lr: float, momentum: float, dampening: float, wd: float,
             nesterov: bool, maximize: bool) -> bool:
    """SGD's update of one parameter in one kernel (torch's order); False: use the plain path."""
    pd, gd = p._data, p.grad._data
    if not enabled(_xp(pd)) or gd.dtype != pd.dtype or not (pd.flags.c_contiguous and gd.flags.c_contiguous):
        return False
    f64 = np.float64
    if momentum == 0:
        return _launch(_k.SGD_PLAIN, gd, f64(lr), f64(wd), np.int32(maximize), pd) is not None
    from engine.tensor import Tensor

    st = state[p]
    b = st.get("momentum_buffer")
    first = b is None
    if first:
        b = st["momentum_buffer"] = Tensor._wrap(_xp(pd).empty_like(gd))
    done = _launch(_k.SGD, gd, f64(lr), f64(momentum), f64(1 - dampening), f64(wd), np.int32(nesterov),
                   np.int32(maximize), np.int32(first), pd, b._data) is not None
    if not done and first:
        del st["momentum_buffer"]  # the plain path makes it from the gradient
    return done


def adam_update(xp: Any, beta1: float, beta2: float, eps: float, bc2_sqrt: float, step_size: float,
                param: Any, g: Any, m: Any, v: Any, *rest: Any) -> bool:
    """Adam's moment and parameter update in one kernel (no amsgrad); False: plain path."""
    if not enabled(xp) or len(rest) > 1 or not (g.dtype == param.dtype == m.dtype == v.dtype):
        return False
    if not all(a.flags.c_contiguous for a in (param, g, m, v)):
        return False
    f64 = np.float64
    return _launch(_k.ADAM, g, f64(1 - beta1), f64(beta2), f64(1 - beta2), f64(eps), f64(bc2_sqrt),
                   f64(step_size), param, m, v) is not None


def gelu(input: Any, approximate: str) -> Any:
    """GELU (exact or tanh) as one forward and one backward kernel; None: plain path."""
    from engine.autograd.grad_mode import STATE
    from engine.ops._util import attach, wrap

    x = input._data
    if not enabled(_xp(x)) or x.dtype.kind != "f" or approximate not in ("none", "tanh"):
        return None
    xp = _xp(x)
    x = xp.ascontiguousarray(x)
    tanh = np.int32(approximate == "tanh")
    y = _launch(_k.GELU_FWD, x, tanh)
    if y is None:
        return None
    out = wrap(y)
    if STATE.enabled and input.requires_grad:
        def backward(g: Any, _: Any) -> tuple:
            dx = None if STATE.enabled else _launch(_k.GELU_BWD, xp.ascontiguousarray(g._data), x, tanh)
            if dx is None:  # create_graph (or no kernel): the differentiable formula on Tensors
                return (g * _gelu_grad_tensor(input, approximate),)
            return (wrap(dx),)
        attach(out, (input,), backward, "GeluBackward0")
    return out


def _gelu_grad_tensor(x: Any, approximate: str) -> Any:
    from engine.ops.unary import erf, exp, tanh

    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        t = tanh((x + x * x * x * 0.044715) * k)
        return (1 + t) * 0.5 + x * 0.5 * (1 - t * t) * ((1 + x * x * 0.134145) * k)
    return (1 + erf(x * (1 / math.sqrt(2.0)))) * 0.5 + x * exp(x * x * -0.5) * (1 / math.sqrt(2 * math.pi))


def batch_norm(input: Any, running_mean: Any, running_var: Any, weight: Any, bias: Any,
               training: bool, momentum: float, eps: float) -> Any:
    """BatchNorm forward as two reductions and one kernel, backward as two reductions and one
    kernel, on cupy (N, C, ...) input; running statistics updated as the plain path does. A
    float16 input with float32 parameters (what autocast leaves after a convolution) is read and
    written in float16 and computed in float32, as torch's does, without casting copies.
    None: use the plain path (numpy, other dtype mixes, or statistics missing in eval mode)."""
    from engine.autograd.grad_mode import STATE
    from engine.ops._util import attach, wrap

    x = input._data
    xp = _xp(x)
    if not enabled(xp) or x.ndim < 2 or x.dtype.kind != "f":
        return None
    if not training and (running_mean is None or running_var is None):
        return None
    given = [t._data.dtype for t in (weight, bias, running_mean, running_var) if t is not None]
    pdt = given[0] if given else x.dtype
    if any(d != pdt for d in given) or not (pdt == x.dtype or (x.dtype == np.float16 and pdt == np.float32)):
        return None
    n_, c = x.shape[0], x.shape[1]
    s = int(np.prod(x.shape[2:], dtype=np.int64)) if x.ndim > 2 else 1
    n = n_ * s
    x3 = xp.ascontiguousarray(x).reshape(n_, c, s)
    if training:
        if n <= 1:
            return None  # the plain path raises torch's error
        mean = x3.mean(axis=(0, 2), dtype=pdt)
        var = x3.var(axis=(0, 2), dtype=pdt)
    else:
        mean, var = running_mean._data, running_var._data
    invstd = 1 / xp.sqrt(var + eps)
    w = weight._data if weight is not None else xp.ones(c, dtype=pdt)
    b = bias._data if bias is not None else xp.zeros(c, dtype=pdt)
    got = _launch(_k.BN_FWD, x3, mean, invstd, w, b, np.int64(s), np.int64(c))
    if got is None:
        return None
    y, xhat = got
    if training and running_mean is not None and running_var is not None:
        rm, rv = running_mean._data, running_var._data
        rm *= 1 - momentum
        rm += momentum * mean
        rv *= 1 - momentum
        rv += momentum * var * (n / (n - 1))
    out = wrap(y.reshape(x.shape))
    if STATE.enabled and any(t is not None and t.requires_grad for t in (input, weight, bias)):
        def backward(g: Any, _: Any) -> tuple:
            g3 = xp.ascontiguousarray(g._data).reshape(n_, c, s)
            gsum = g3.sum(axis=(0, 2), dtype=pdt)
            gxhat = (g3 * xhat).sum(axis=(0, 2), dtype=pdt)
            gx = None
            if input.requires_grad:
                dx = _launch(_k.BN_BWD, g3, xhat, w, invstd, gsum, gxhat, np.int64(s), np.int64(c),
                             np.float64(n), np.int32(bool(training)))
                if dx is None:  # no kernel: the same formula as array ops
                    k = (w * invstd)[None, :, None]
                    dx = k * (g3 - gsum[None, :, None] / n - xhat * (gxhat[None, :, None] / n)) if training \
                        else k * g3
                    dx = dx.astype(x.dtype, copy=False)
                gx = wrap(dx.reshape(x.shape))
            gw = wrap(gxhat) if weight is not None and weight.requires_grad else None
            gb = wrap(gsum) if bias is not None and bias.requires_grad else None
            return gx, gw, gb
        attach(out, (input, weight, bias), backward, "NativeBatchNormBackward0")
    return out

def layer_norm(input: Any, normalized_shape: tuple, weight: Any, bias: Any, eps: float) -> Any:
    """LayerNorm over the trailing ``normalized_shape`` dims: forward as two row reductions and
    one kernel, backward as three reductions and one kernel, on cupy input whose dtype the
    parameters share; None: the plain path."""
    from engine.autograd.grad_mode import STATE
    from engine.ops._util import attach, wrap

    x = input._data
    xp = _xp(x)
    if not enabled(xp) or x.dtype.kind != "f" or x.ndim < len(normalized_shape):
        return None
    if any(t is not None and (t._data.dtype != x.dtype or tuple(t.shape) != normalized_shape)
           for t in (weight, bias)):
        return None
    d = int(np.prod(normalized_shape, dtype=np.int64))
    if d == 0 or x.size == 0:
        return None
    x2 = xp.ascontiguousarray(x).reshape(-1, d)
    mean = x2.mean(axis=1)
    invstd = 1 / xp.sqrt(x2.var(axis=1) + eps)
    w = weight._data.reshape(-1) if weight is not None else mean[:1]
    b = bias._data.reshape(-1) if bias is not None else mean[:1]
    got = _launch(_k.LN_FWD, x2, mean, invstd, w, b, np.int64(d), np.int32(weight is not None),
                  np.int32(bias is not None))
    if got is None:
        return None
    y, xhat = got
    out = wrap(y.reshape(x.shape))
    if STATE.enabled and any(t is not None and t.requires_grad for t in (input, weight, bias)):
        def backward(g: Any, _: Any) -> tuple:
            g2 = xp.ascontiguousarray(g._data).reshape(-1, d)
            gx = None
            if input.requires_grad:
                gh = g2 * w if weight is not None else g2
                s1, s2 = gh.mean(axis=1), (gh * xhat).mean(axis=1)
                dx = _launch(_k.LN_BWD, xp.ascontiguousarray(gh), xhat, invstd, s1, s2, np.int64(d))
                if dx is None:  # no kernel: the same formula as array ops
                    dx = invstd[:, None] * (gh - s1[:, None] - xhat * s2[:, None])
                gx = wrap(dx.reshape(x.shape))
            gw = wrap((g2 * xhat).sum(axis=0).reshape(weight.shape)) \
                if weight is not None and weight.requires_grad else None
            gb = wrap(g2.sum(axis=0).reshape(bias.shape)) if bias is not None and bias.requires_grad else None
            return gx, gw, gb
        attach(out, (input, weight, bias), backward, "NativeLayerNormBackward0")
    return out


def lstm_layer(input: Any, h0: Any, c0: Any, w_ih: Any, w_hh: Any, b_ih: Any, b_hh: Any, reverse: bool,
               w_hr: Any) -> Any:
    """``engine.nn.functional._rnn.lstm_layer`` on cupy with each step's gate math as one kernel
    (forward) and one kernel (backward) beside the step's GEMM; the same flat output and
    gradients. None: the plain path (numpy, a projection, mixed dtypes)."""
    from engine.ops._util import attach, needs_grad, wrap

    x, w1, w2 = input._data, w_ih._data, w_hh._data
    xp = _xp(x)
    if not enabled(xp) or w_hr is not None or x.dtype.kind != "f" or x.ndim != 3:
        return None
    if any(t is not None and t._data.dtype != x.dtype for t in (h0, c0, w_ih, w_hh, b_ih, b_hh)):
        return None
    t_len, n, _ = x.shape
    hid = w1.shape[0] // 4
    xw = (x.reshape(t_len * n, -1) @ xp.ascontiguousarray(w1.T)).reshape(t_len, n, 4 * hid)
    if b_ih is not None:
        xw += b_ih._data
    if b_hh is not None:
        xw += b_hh._data
    acts = xp.ascontiguousarray(xw)  # overwritten step by step with the gate activations
    w2t = xp.ascontiguousarray(w2.T)
    size = t_len * n * hid
    flat = xp.empty(size + n * hid, dtype=x.dtype)
    ys = flat[:size].reshape(t_len, n, hid)
    cs = xp.empty((t_len, n, hid), dtype=x.dtype)
    h, c = xp.ascontiguousarray(h0._data), xp.ascontiguousarray(c0._data)
    order = range(t_len - 1, -1, -1) if reverse else range(t_len)
    H = np.int64(hid)
    for t in order:
        a = acts[t]
        a += h @ w2t
        if _launch(_k.LSTM_FWD, c, H, a, cs[t], ys[t]) is None:
            return None  # nothing else was written: the plain path starts over
        h, c = ys[t], cs[t]
    flat[size:] = c.reshape(-1)
    out = wrap(flat)
    if not needs_grad(input, h0, c0, w_ih, w_hh, b_ih, b_hh):
        return out
    h0d, c0d = xp.ascontiguousarray(h0._data), xp.ascontiguousarray(c0._data)

    def backward(grad: Any, _: Any) -> tuple:
        gy = grad._data[:size].reshape(t_len, n, hid)
        d_gates = xp.empty_like(acts)
        dh = xp.zeros((n, hid), dtype=x.dtype)
        dc = xp.ascontiguousarray(grad._data[size:].reshape(n, hid).astype(x.dtype, copy=True))
        for t in reversed(order):
            dh += gy[t]
            c_prev = cs[t - 1] if (t > 0 and not reverse) else (cs[t + 1] if (reverse and t < t_len - 1) else c0d)
            if _launch(_k.LSTM_BWD, dh, cs[t], c_prev, acts[t], H, dc, d_gates[t]) is None:
                raise RuntimeError("engine.fused: the LSTM backward kernel does not compile here")
            dh = d_gates[t] @ w2
        fg = d_gates.reshape(t_len * n, 4 * hid)
        gx = (fg @ w1).reshape(x.shape) if input.requires_grad else None
        gw_ih = fg.T @ x.reshape(t_len * n, -1) if w_ih.requires_grad else None
        gw_hh = None
        if w_hh.requires_grad:
            h_prev = xp.concatenate([ys[1:t_len], h0d[None]], 0) if reverse else \
                xp.concatenate([h0d[None], ys[:t_len - 1]], 0)
            gw_hh = fg.T @ h_prev.reshape(t_len * n, hid)
        gb = fg.sum(0) if (b_ih is not None and b_ih.requires_grad) or \
            (b_hh is not None and b_hh.requires_grad) else None
        res = (gx, dh if h0.requires_grad else None, dc if c0.requires_grad else None, gw_ih, gw_hh,
               gb if b_ih is not None and b_ih.requires_grad else None,
               None if gb is None or b_hh is None or not b_hh.requires_grad else gb.copy(), None)
        return tuple(None if r is None else wrap(r) for r in res)

    attach(out, (input, h0, c0, w_ih, w_hh, b_ih, b_hh, w_hr), backward, "LstmBackward")
    return out
