"""Unary elementwise math and activations: neg abs sign exp log ... sigmoid relu gelu silu softplus.

Integer inputs to floating functions (exp, sqrt, sigmoid ...) give the default
float dtype, as in torch. Backward formulas reuse the output where torch does.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from engine.amp import _policy as _amp
from engine.autograd.grad_mode import STATE
from engine.ops._parallel import unary_ufunc
from engine.ops._util import attach, float_array, masked_grad, named, wrap, xp_of
from engine.ops.elementwise import where
from engine.tensor import Tensor

__all__ = [
    "abs",
    "acos",
    "asin",
    "atan",
    "ceil",
    "cos",
    "cosh",
    "elu",
    "erf",
    "exp",
    "exp2",
    "expm1",
    "floor",
    "frac",
    "gelu",
    "leaky_relu",
    "log",
    "log1p",
    "log2",
    "log10",
    "logit",
    "neg",
    "negative",
    "reciprocal",
    "relu",
    "round",
    "rsqrt",
    "sigmoid",
    "sign",
    "silu",
    "sin",
    "sinh",
    "softplus",
    "sqrt",
    "square",
    "tan",
    "tanh",
    "trunc",
]


_NODE_NAMES = {"log1p": "Log1PBackward0", "square": "PowBackward0"}  # torch's spelling


def _unary(name: str, f: Callable, bw: Callable | None, float_op: bool = True,
           save_in: bool = False, save_out: bool = False, doc: str = "",
           fast: Callable | None = None) -> Callable:
    """Build a unary op: ``f(xp, array)`` forward and ``bw(g, x, out)`` backward (Tensors).

    ``fast(xp, g, x, out)``, on arrays, is the same formula for backwards that record
    nothing: it returns a fresh array (one allocation, the rest in place with ``out=``).
    """
    node_name = _NODE_NAMES.get(name, name[0].upper() + name[1:] + "Backward0")

    def op(input: Tensor) -> Tensor:
        if _amp.ACTIVE:
            input = _amp.fp32_one(name, input)
        d = input._data
        if float_op and d.dtype.kind != "f":
            d = float_array(d)
        xp = np if type(d) is np.ndarray else xp_of(input)
        r = wrap(f(xp, d))
        if STATE.enabled and input._rg:
            if bw is None:
                attach(r, (input,), lambda g, _: (g * 0,), node_name)
            else:
                def backward(g: Tensor, out: Tensor) -> tuple:
                    gd = g._data
                    if fast is not None and not STATE.enabled and gd.ndim and \
                            gd.dtype == out._data.dtype:
                        return (fast(xp, gd, input._data, out._data),)
                    return (bw(g, input, out),)
                attach(r, (input,), backward, node_name,
                       saved=(input,) if save_in else (), save_out=save_out)
        return r

    op.__name__ = name
    op.__qualname__ = name
    op.__doc__ = doc or f"Elementwise {name}."
    return op


def _sigmoid_fwd(xp: Any, d: Any) -> Any:
    if xp is np:
        e = np.negative(d)
        with np.errstate(over="ignore"):
            e = unary_ufunc(np.exp, e, out=e if e.ndim else None)
        if d.ndim == 0:
            return np.asarray(1 / (1 + e))
    else:
        e = xp.exp(-d)
    e += 1
    return xp.reciprocal(e, out=e)


def _uf(xp: Any, name: str, d: Any) -> Any:
    """A compute-bound numpy ufunc split over threads for big arrays (see _parallel)."""
    if xp is np:
        return unary_ufunc(getattr(np, name), d)
    return getattr(xp, name)(d)


# ----- fast-path backwards on arrays: one fresh buffer, the same formula as the Tensor one ----
def _f_mul_into(r: Any, g: Any) -> Any:
    r *= g
    return r


def _f_tanh(xp: Any, g: Any, x: Any, o: Any) -> Any:  # g * (1 - o*o)
    r = o * o
    xp.subtract(1, r, out=r)
    return _f_mul_into(r, g)


def _f_sigmoid(xp: Any, g: Any, x: Any, o: Any) -> Any:  # g * (o * (1 - o))
    r = 1 - o
    r *= o
    return _f_mul_into(r, g)


def _f_tan(xp: Any, g: Any, x: Any, o: Any) -> Any:  # g * (o*o + 1)
    r = o * o
    r += 1
    return _f_mul_into(r, g)


def _f_reciprocal(xp: Any, g: Any, x: Any, o: Any) -> Any:  # -g * (o*o)
    r = o * o
    r *= g
    return xp.negative(r, out=r)


def _f_rsqrt(xp: Any, g: Any, x: Any, o: Any) -> Any:  # g * (o*o*o) * -0.5
    r = o * o
    r *= o
    r *= g
    r *= -0.5
    return r


def _f_div_by(make: Callable) -> Callable:  # g / make(x, o)
    def fb(xp: Any, g: Any, x: Any, o: Any) -> Any:
        r = make(x, o)
        return xp.divide(g, r, out=r)
    return fb


def _f_relu(xp: Any, g: Any, x: Any, o: Any) -> Any:  # where(o > 0, g, 0)
    return masked_grad(xp, o > 0, g)


def _softplus_fwd(xp: Any, d: Any) -> Any:
    return xp.logaddexp(d, 0.0 if d.dtype != np.float16 else np.float16(0))


def _neg_fwd(xp: Any, d: Any) -> Any:
    if d.dtype == np.bool_:
        raise RuntimeError("Negation, the `-` operator, on a bool tensor is not supported. If you "
                           "are trying to invert a mask, use the `~` or `logical_not()` operator "
                           "instead.")
    return -d


neg = _unary("neg", _neg_fwd, lambda g, x, o: -g, float_op=False,
             fast=lambda xp, g, x, o: xp.negative(g))
negative = neg
abs = _unary("abs", lambda xp, d: xp.abs(d), lambda g, x, o: g * sign(x), float_op=False,
             save_in=True, fast=lambda xp, g, x, o: _f_mul_into(xp.sign(x), g))
sign = _unary("sign", lambda xp, d: xp.sign(d), None, float_op=False)
exp = _unary("exp", lambda xp, d: _uf(xp, "exp", d), lambda g, x, o: g * o, save_out=True,
             fast=lambda xp, g, x, o: g * o)
exp2 = _unary("exp2", lambda xp, d: xp.exp2(d), lambda g, x, o: g * o * math.log(2.0),
              save_out=True)
log = _unary("log", lambda xp, d: xp.log(d), lambda g, x, o: g / x, save_in=True,
             fast=lambda xp, g, x, o: g / x)
log2 = _unary("log2", lambda xp, d: xp.log2(d), lambda g, x, o: g / (x * math.log(2.0)),
              save_in=True)
log10 = _unary("log10", lambda xp, d: xp.log10(d), lambda g, x, o: g / (x * math.log(10.0)),
               save_in=True)
log1p = _unary("log1p", lambda xp, d: xp.log1p(d), lambda g, x, o: g / (x + 1), save_in=True,
               fast=_f_div_by(lambda x, o: x + 1))
expm1 = _unary("expm1", lambda xp, d: xp.expm1(d), lambda g, x, o: g * (o + 1), save_out=True,
               fast=lambda xp, g, x, o: _f_mul_into(o + 1, g))
sqrt = _unary("sqrt", lambda xp, d: xp.sqrt(d), lambda g, x, o: g / (o * 2), save_out=True,
              fast=_f_div_by(lambda x, o: o * 2))
rsqrt = _unary("rsqrt", lambda xp, d: 1 / xp.sqrt(d), lambda g, x, o: g * (o * o * o) * -0.5,
               save_out=True, fast=_f_rsqrt)
square = _unary("square", lambda xp, d: d * d, lambda g, x, o: g * (x * 2), float_op=False,
                save_in=True, fast=lambda xp, g, x, o: _f_mul_into(x * 2, g))
reciprocal = _unary("reciprocal", lambda xp, d: 1 / d, lambda g, x, o: -g * (o * o),
                    save_out=True, fast=_f_reciprocal)
sin = _unary("sin", lambda xp, d: _uf(xp, "sin", d), lambda g, x, o: g * cos(x), save_in=True,
             fast=lambda xp, g, x, o: _f_mul_into(_uf(xp, "cos", x), g))
cos = _unary("cos", lambda xp, d: _uf(xp, "cos", d), lambda g, x, o: -g * sin(x), save_in=True,
             fast=lambda xp, g, x, o: xp.negative(_f_mul_into(_uf(xp, "sin", x), g)))
tan = _unary("tan", lambda xp, d: xp.tan(d), lambda g, x, o: g * (o * o + 1), save_out=True,
             fast=_f_tan)
atan = _unary("atan", lambda xp, d: xp.arctan(d), lambda g, x, o: g / (x * x + 1), save_in=True,
              fast=_f_div_by(lambda x, o: x * x + 1))
asin = _unary("asin", lambda xp, d: xp.arcsin(d), lambda g, x, o: g * rsqrt(1 - x * x),
              save_in=True)
acos = _unary("acos", lambda xp, d: xp.arccos(d), lambda g, x, o: -g * rsqrt(1 - x * x),
              save_in=True)
sinh = _unary("sinh", lambda xp, d: xp.sinh(d), lambda g, x, o: g * cosh(x), save_in=True,
              fast=lambda xp, g, x, o: _f_mul_into(xp.cosh(x), g))
cosh = _unary("cosh", lambda xp, d: xp.cosh(d), lambda g, x, o: g * sinh(x), save_in=True,
              fast=lambda xp, g, x, o: _f_mul_into(xp.sinh(x), g))
tanh = _unary("tanh", lambda xp, d: _uf(xp, "tanh", d), lambda g, x, o: g * (1 - o * o), save_out=True,
              fast=_f_tanh)
sigmoid = _unary("sigmoid", _sigmoid_fwd, lambda g, x, o: g * (o * (1 - o)), save_out=True,
                 fast=_f_sigmoid)
relu = _unary("relu", lambda xp, d: xp.maximum(d, 0), lambda g, x, o: where(o > 0, g, 0.0),
              float_op=False, save_out=True, fast=_f_relu)
floor = _unary("floor", lambda xp, d: xp.floor(d), None, float_op=False)
ceil = _unary("ceil", lambda xp, d: xp.ceil(d), None, float_op=False)
trunc = _unary("trunc", lambda xp, d: xp.trunc(d), None, float_op=False)
frac = _unary("frac", lambda xp, d: d - xp.trunc(d), lambda g, x, o: g, float_op=False)
_round0 = _unary("round", lambda xp, d: xp.round(d), None, float_op=False)


def round(input: Tensor, *, decimals: int = 0) -> Tensor:
    """Round half to even, like torch.round."""
    if decimals == 0:
        return _round0(input)
    s = 10.0 ** decimals
    return _round0(input * s) / s


# ----- activations composed of primitives (their gradients come for free) ----------------
def silu(input: Tensor) -> Tensor:
    """x * sigmoid(x)."""
    return named(input * sigmoid(input), "SiluBackward0")


def softplus(input: Tensor, beta: float = 1.0, threshold: float = 20.0) -> Tensor:
    """log(1 + exp(beta * x)) / beta, linear above ``threshold`` (as torch)."""
    if _amp.ACTIVE:
        input = _amp.fp32_one("softplus", input)
    bx = input * beta if beta != 1 else input
    sp = _softplus(bx)
    if beta != 1:
        sp = sp / beta
    return named(where(bx > threshold, input, sp), "SoftplusBackward0")


_softplus = _unary("softplus", _softplus_fwd, lambda g, x, o: g * sigmoid(x), save_in=True)


def leaky_relu(input: Tensor, negative_slope: float = 0.01) -> Tensor:
    return named(where(input > 0, input, input * negative_slope), "LeakyReluBackward0")


def elu(input: Tensor, alpha: float = 1.0) -> Tensor:
    return named(where(input > 0, input, expm1(input) * alpha), "EluBackward0")


def logit(input: Tensor, eps: float | None = None) -> Tensor:
    x = input if eps is None else input.clamp(eps, 1 - eps)
    return named(log(x / (1 - x)), "LogitBackward0")


# ----- erf (numpy has none): W. J. Cody's rational approximations, double precision -------
_A = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
      3.20937758913846947e03, 1.85777706184603153e-1)
_B = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
      2.84423683343917062e03)
_C = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
      2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
      2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_D = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
      1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
      3.43936767414372164e03, 1.23033935480374942e03)
_P = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
      1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_Q = (2.56852019228982242e00, 1.87295284992346725e00, 5.27905102951428412e-1,
      6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1


def _erf_np(x: np.ndarray) -> np.ndarray:
    """erf to double precision (Cody 1969), vectorised over three ranges of |x|."""
    dt = x.dtype
    x = x.astype(np.float64)
    y = np.abs(x)
    out = np.empty_like(x)
    m1 = y <= 0.46875
    if m1.any():
        v = x[m1]
        z = v * v
        xn, xd = _A[4] * z, z
        for i in range(3):
            xn = (xn + _A[i]) * z
            xd = (xd + _B[i]) * z
        out[m1] = v * (xn + _A[3]) / (xd + _B[3])
    m2 = (~m1) & (y <= 4.0)
    if m2.any():
        v = y[m2]
        xn, xd = _C[8] * v, v
        for i in range(7):
            xn = (xn + _C[i]) * v
            xd = (xd + _D[i]) * v
        r = (xn + _C[7]) / (xd + _D[7])
        out[m2] = 1.0 - _tail(v) * r
    m3 = y > 4.0
    if m3.any():
        v = y[m3]
        z = 1.0 / (v * v)
        xn, xd = _P[5] * z, z
        for i in range(4):
            xn = (xn + _P[i]) * z
            xd = (xd + _Q[i]) * z
        r = z * (xn + _P[4]) / (xd + _Q[4])
        r = (_SQRPI - r) / v
        out[m3] = 1.0 - _tail(v) * r
    neg = (~m1) & (x < 0)
    out[neg] = -out[neg]
    out[np.isnan(x)] = np.nan
    return out.astype(dt, copy=False)


def _tail(v: np.ndarray) -> np.ndarray:
    """exp(-v*v) computed in two parts to keep precision (Cody's trick)."""
    ysq = np.trunc(v * 16.0) / 16.0
    d = (v - ysq) * (v + ysq)
    return np.exp(-ysq * ysq) * np.exp(-d)


def _erf_fwd(xp: Any, d: Any) -> Any:
    if xp is np:
        return _erf_np(d)
    from cupyx.scipy.special import erf as cerf  # cupy ships erf

    return cerf(d).astype(d.dtype, copy=False)  # its float16 loop computes (and returns) wider


erf = _unary("erf", _erf_fwd, lambda g, x, o: g * (exp(-(x * x)) * (2.0 / math.sqrt(math.pi))),
             save_in=True)


def gelu(input: Tensor, approximate: str = "none") -> Tensor:
    """x * Phi(x) (exact, via erf) or the tanh approximation, as torch.nn.functional.gelu."""
    if approximate == "tanh":
        k = math.sqrt(2.0 / math.pi)
        return named(input * 0.5 * (1 + tanh((input + input * input * input * 0.044715) * k)),
                     "GeluBackward0")
    if approximate != "none":
        raise RuntimeError(f"approximate argument must be either none or tanh, got {approximate}")
    return named(input * 0.5 * (1 + erf(input * (1 / math.sqrt(2.0)))), "GeluBackward0")
