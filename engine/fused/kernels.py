"""CUDA sources of the fused elementwise kernels, built lazily with cupy (ElementwiseKernel).

Each kernel replaces a chain of cupy ops (one launch and one pass over memory each) with
one pass. Half-precision inputs compute in float (``acc_t``), as torch's kernels do. Scalar
hyperparameters come in as float64 and are rounded to the arrays' type inside (``(ACC)lr``),
which is what numpy does with a Python float times a float32 array.
Compiled on first use and cached by cupy; nothing here runs without a GPU.
"""
from __future__ import annotations

from functools import cache
from typing import Any

# acc_t<T>: the type a kernel computes in (float for half, else T itself).
PREAMBLE = r"""
template <typename T> struct acc { typedef T type; };
template <> struct acc<float16> { typedef float type; };
#define ACC typename acc<T>::type
"""

UNSCALE = (
    "float32 inv", "T g, raw float32 found",
    "ACC v = (ACC)g; if (!isfinite(v)) found[0] = 1.0f; g = (T)(v * (ACC)inv);",
    "engine_amp_unscale")

SGD = (
    "T g, float64 lr, float64 momentum, float64 one_minus_dampening, float64 wd, int32 nesterov, "
    "int32 maximize, int32 first", "T p, T buf",
    """
    ACC gg = maximize ? -(ACC)g : (ACC)g;
    if (wd != 0) gg += (ACC)wd * (ACC)p;
    ACC b = first ? gg : (ACC)momentum * (ACC)buf + (ACC)one_minus_dampening * gg;
    buf = (T)b;
    gg = nesterov ? gg + (ACC)momentum * b : b;
    p = (T)((ACC)p - (ACC)lr * gg);
    """, "engine_sgd_momentum_step")

SGD_PLAIN = (
    "T g, float64 lr, float64 wd, int32 maximize", "T p",
    """
    ACC gg = maximize ? -(ACC)g : (ACC)g;
    if (wd != 0) gg += (ACC)wd * (ACC)p;
    p = (T)((ACC)p - (ACC)lr * gg);
    """, "engine_sgd_step")

ADAM = (
    "T g, float64 one_minus_beta1, float64 beta2, float64 one_minus_beta2, float64 eps, "
    "float64 bc2_sqrt, float64 step_size", "T p, T m, T v",
    """
    ACC gg = (ACC)g;
    ACC mm = (ACC)m + (gg - (ACC)m) * (ACC)one_minus_beta1;
    ACC vv = (ACC)v * (ACC)beta2 + gg * (ACC)one_minus_beta2 * gg;
    m = (T)mm;
    v = (T)vv;
    ACC denom = sqrt(vv) / (ACC)bc2_sqrt + (ACC)eps;
    p = (T)((ACC)p - (ACC)step_size * (mm / denom));
    """, "engine_adam_step")

GELU_FWD = (
    "T x, int32 approx_tanh", "T y",
    """
    ACC a = (ACC)x;
    ACC r;
    if (approx_tanh) {
        ACC k = (ACC)0.7978845608028654;
        r = (ACC)0.5 * a * ((ACC)1 + tanh(k * (a + (ACC)0.044715 * a * a * a)));
    } else {
        r = (ACC)0.5 * a * ((ACC)1 + erf(a * (ACC)0.7071067811865476));
    }
    y = (T)r;
    """, "engine_gelu_fwd")

GELU_BWD = (
    "T g, T x, int32 approx_tanh", "T dx",
    """
    ACC a = (ACC)x;
    ACC d;
    if (approx_tanh) {
        ACC k = (ACC)0.7978845608028654;
        ACC t = tanh(k * (a + (ACC)0.044715 * a * a * a));
        ACC dinner = k * ((ACC)1 + (ACC)0.134145 * a * a);
        d = (ACC)0.5 * ((ACC)1 + t) + (ACC)0.5 * a * ((ACC)1 - t * t) * dinner;
    } else {
        d = (ACC)0.5 * ((ACC)1 + erf(a * (ACC)0.7071067811865476))
            + a * exp((ACC)-0.5 * a * a) * (ACC)0.3989422804014327;
    }
    dx = (T)((ACC)g * d);
    """, "engine_gelu_bwd")

# BatchNorm over (N, C, S) contiguous input: channel of element i is (i / S) % C. P is the
# parameters' and statistics' type: float for a float16 input under autocast (torch's mixed
# BatchNorm), else the input's; xhat is kept in P for the backward.
BN_FWD = (
    "T x, raw P mean, raw P invstd, raw P w, raw P b, int64 S, int64 C", "T y, P xhat",
    """
    long long c = (i / S) % C;
    ACC h = ((ACC)x - (ACC)mean[c]) * (ACC)invstd[c];
    xhat = (P)h;
    y = (T)(h * (ACC)w[c] + (ACC)b[c]);
    """, "engine_bn_fwd")

BN_BWD = (
    "T g, P xhat, raw P w, raw P invstd, raw P gsum, raw P gxhat_sum, int64 S, int64 C, "
    "float64 n, int32 training", "T dx",
    """
    long long c = (i / S) % C;
    ACC scale = (ACC)w[c] * (ACC)invstd[c];
    if (training) {
        dx = (T)(scale * ((ACC)g - (ACC)gsum[c] / (ACC)n - (ACC)xhat * (ACC)gxhat_sum[c] / (ACC)n));
    } else {
        dx = (T)(scale * (ACC)g);
    }
    """, "engine_bn_bwd")


# LayerNorm over rows of D contiguous values: row of element i is i / D, column i % D.
LN_FWD = (
    "T x, raw T mean, raw T invstd, raw T w, raw T b, int64 D, int32 has_w, int32 has_b", "T y, T xhat",
    """
    long long r = i / D, d = i % D;
    ACC h = ((ACC)x - (ACC)mean[r]) * (ACC)invstd[r];
    xhat = (T)h;
    if (has_w) h = h * (ACC)w[d];
    if (has_b) h = h + (ACC)b[d];
    y = (T)h;
    """, "engine_ln_fwd")

# gh is the gradient times the weight; s1 and s2 are its row means and those of gh * xhat.
LN_BWD = (
    "T gh, T xhat, raw T invstd, raw T s1, raw T s2, int64 D", "T dx",
    """
    long long r = i / D;
    dx = (T)((ACC)invstd[r] * ((ACC)gh - (ACC)s1[r] - (ACC)xhat * (ACC)s2[r]));
    """, "engine_ln_bwd")

# One LSTM step's gate math over (N, H) elements: the gate pre-activations a (N, 4H: i, f, g, o,
# torch's order) become their activations in place; c_new = f c_prev + i g, h = o tanh(c_new).
LSTM_FWD = (
    "T c_prev, int64 H", "raw T a, T c_new, T h",
    """
    long long r = i / H, j = i % H, base = r * 4 * H + j;
    ACC ig = (ACC)1 / ((ACC)1 + exp(-(ACC)a[base]));
    ACC fg = (ACC)1 / ((ACC)1 + exp(-(ACC)a[base + H]));
    ACC gg = tanh((ACC)a[base + 2 * H]);
    ACC og = (ACC)1 / ((ACC)1 + exp(-(ACC)a[base + 3 * H]));
    a[base] = (T)ig; a[base + H] = (T)fg; a[base + 2 * H] = (T)gg; a[base + 3 * H] = (T)og;
    ACC cn = fg * (ACC)c_prev + ig * gg;
    c_new = (T)cn;
    h = (T)(og * tanh(cn));
    """, "engine_lstm_fwd")

# Its backward: from dh (this step's total) and dc (carried, updated in place to dc * f) to the
# four gate gradients dg (N, 4H).
LSTM_BWD = (
    "T dh, T c_t, T c_prev, raw T a, int64 H", "T dc, raw T dg",
    """
    long long r = i / H, j = i % H, base = r * 4 * H + j;
    ACC ig = (ACC)a[base], fg = (ACC)a[base + H], gg = (ACC)a[base + 2 * H], og = (ACC)a[base + 3 * H];
    ACC tc = tanh((ACC)c_t);
    ACC d = (ACC)dh;
    ACC dct = (ACC)dc + d * og * ((ACC)1 - tc * tc);
    dg[base] = (T)(dct * gg * ig * ((ACC)1 - ig));
    dg[base + H] = (T)(dct * (ACC)c_prev * fg * ((ACC)1 - fg));
    dg[base + 2 * H] = (T)(dct * ig * ((ACC)1 - gg * gg));
    dg[base + 3 * H] = (T)(d * tc * og * ((ACC)1 - og));
    dc = (T)(dct * fg);
    """, "engine_lstm_bwd")

@cache
def build(spec: tuple) -> Any:
    """The cupy ElementwiseKernel for one of the specs above (compiled on first call)."""
    import cupy

    in_params, out_params, body, name = spec
    return cupy.ElementwiseKernel(in_params, out_params, body, name, preamble=PREAMBLE)
