"""Binary elementwise ops with broadcasting and torch's type promotion.

add sub mul div floor_divide remainder pow maximum minimum where lerp clamp,
comparisons, logical ops and dtype/device conversion. Each backward reduces the
gradient back to its input's shape (``grad_to``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import backend
from engine.amp import _policy as _amp
from engine.autograd.grad_mode import STATE
from engine.dtypes import get_default_dtype, result_type
from engine.ops._util import as_t, attach, named, prep2, raw_grad_to, unbroadcast, wrap, xp_of
from engine.tensor import Tensor

__all__ = [
    "add",
    "allclose",
    "bitwise_not",
    "clamp",
    "clip",
    "copy_",
    "div",
    "divide",
    "eq",
    "equal",
    "floor_divide",
    "fmod",
    "ge",
    "grad_to",
    "gt",
    "isclose",
    "isfinite",
    "isinf",
    "isnan",
    "le",
    "lerp",
    "logical_and",
    "logical_not",
    "logical_or",
    "logical_xor",
    "lt",
    "maximum",
    "minimum",
    "mul",
    "multiply",
    "ne",
    "pow",
    "remainder",
    "sub",
    "subtract",
    "true_divide",
    "where",
]


def grad_to(g: Tensor, t: Tensor) -> Tensor:
    """``g`` summed to ``t``'s shape and cast to its dtype: a broadcast input's gradient."""
    d = t._data
    if g._data.shape != d.shape:
        g = unbroadcast(g, d.shape)
    if g._data.dtype != d.dtype and d.dtype.kind == "f":
        g = _to(g, None, t.dtype, False)
    return g


def _tracked(ta: Any, tb: Any) -> bool:
    return STATE.enabled and ((ta is not None and ta._rg) or (tb is not None and tb._rg))


def add(input: Any, other: Any, *, alpha: Any = 1, out: Any = None) -> Tensor:
    """input + alpha * other."""
    if alpha != 1:
        other = mul(other, alpha)
    ta, tb, da, db = prep2(input, other)
    r = wrap(da + db)
    if _tracked(ta, tb):
        def bw(g, _):
            if not STATE.enabled:  # fast path: the same g, or a fresh reduced array
                return _pass(g, ta), _pass(g, tb)
            return (None if ta is None else grad_to(g, ta), None if tb is None else grad_to(g, tb))
        attach(r, (ta, tb), bw, "AddBackward0")
    return r


def sub(input: Any, other: Any, *, alpha: Any = 1) -> Tensor:
    """input - alpha * other."""
    if alpha != 1:
        other = mul(other, alpha)
    if _is_bool(getattr(input, "_data", input)) or _is_bool(getattr(other, "_data", other)):
        raise RuntimeError("Subtraction, the `-` operator, with a bool tensor is not supported. "
                           "If you are trying to invert a mask, use the `~` or `logical_not()` "
                           "operator instead.")
    ta, tb, da, db = prep2(input, other)
    r = wrap(da - db)
    if _tracked(ta, tb):
        def bw(g, _):
            if not STATE.enabled:
                return _pass(g, ta), (None if tb is None else raw_grad_to(-g._data, tb))
            return (None if ta is None else grad_to(g, ta), None if tb is None else grad_to(-g, tb))
        attach(r, (ta, tb), bw, "SubBackward0" if ta is not None else "RsubBackward1")
    return r


def _pass(g: Tensor, t: Any) -> Any:
    """The fast-path gradient of an input that receives ``g`` unchanged (up to broadcasting)."""
    if t is None or not t._rg:
        return None
    d, gd = t._data, g._data
    if gd.shape == d.shape and gd.dtype == d.dtype:
        return g  # shared, not fresh: stays a Tensor so the engine does not write into it
    return raw_grad_to(gd, t)


def _is_bool(x: Any) -> bool:
    return isinstance(x, bool) or getattr(x, "dtype", None) == np.bool_


def mul(input: Any, other: Any) -> Tensor:
    ta, tb, da, db = prep2(input, other)
    r = wrap(da * db)
    if _tracked(ta, tb):
        def bw(g, _):
            if not STATE.enabled:  # fast path: fresh arrays
                gd = g._data
                return (None if ta is None or not ta._rg else raw_grad_to(gd * db, ta),
                        None if tb is None or not tb._rg else raw_grad_to(gd * da, tb))
            ga = None if ta is None or not ta._rg else grad_to(g * (db if tb is None else tb), ta)
            gb = None if tb is None or not tb._rg else grad_to(g * (da if ta is None else ta), tb)
            return ga, gb
        attach(r, (ta, tb), bw, "MulBackward0", saved=_saved(ta, tb))
    return r


def _saved(ta: Any, tb: Any) -> tuple:
    if ta is None:
        return (tb,)
    if tb is None:
        return (ta,)
    return (ta, tb)


def div(input: Any, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    """True division (ints give the default float dtype), or 'trunc'/'floor' rounding."""
    if _amp.ACTIVE and not isinstance(input, Tensor):
        other = _amp.fp32_one("rtruediv", other)
    if rounding_mode == "floor":
        return floor_divide(input, other)
    ta, tb, da, db = prep2(input, other)
    if rounding_mode == "trunc":
        if _is_bool(da) and _is_bool(db):
            raise NotImplementedError("\"div_trunc_cpu\" not implemented for 'Bool'")
        q = da / db
        xp = backend.get_array_module(da, db)
        q = xp.trunc(q)
        return wrap(q.astype(da.dtype, copy=False) if getattr(da, "dtype", None) is not None and
                    da.dtype.kind in "iu" else q)
    if rounding_mode is not None:
        raise RuntimeError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' "
                           f"but found '{rounding_mode}'")
    da, db = _true_div_operands(da, db)
    r = wrap(da / db)
    if _tracked(ta, tb):
        def bw(g, out):
            if not STATE.enabled:  # fast path: fresh arrays, same formulas
                gd = g._data
                ga = None if ta is None or not ta._rg else raw_grad_to(gd / db, ta)
                gb = None if tb is None or not tb._rg else raw_grad_to(-gd * out._data / db, tb)
                return ga, gb
            b = (db if tb is None else tb) if ta is not None else tb
            ga = None if ta is None or not ta._rg else grad_to(g / b, ta)
            gb = None if tb is None or not tb._rg else grad_to(-g * out / b, tb)
            return ga, gb
        attach(r, (ta, tb), bw, "DivBackward0", saved=_saved(ta, tb), save_out=True)
    return r


def _true_div_operands(da: Any, db: Any) -> tuple:
    """Both operands in one floating dtype (ints divide in the default float dtype)."""
    fa = getattr(da, "dtype", None)
    fb = getattr(db, "dtype", None)
    if fa is None:  # Python scalar numerator
        if fb.kind != "f":
            db = db.astype(get_default_dtype().np)
        return float(da), db
    if fa.kind != "f":
        da = da.astype(get_default_dtype().np)
    if fb is None:
        return da, float(db)
    if fb.kind != "f" or fb != da.dtype:
        db = db.astype(da.dtype)
    return da, db


def _no_bool(da: Any, db: Any, name: str) -> None:
    if _is_bool(da) and _is_bool(db):
        raise NotImplementedError(f"\"{name}\" not implemented for 'Bool'")


def floor_divide(input: Any, other: Any) -> Tensor:
    """Floor division (Python's //); not differentiable."""
    _, _, da, db = prep2(input, other)
    _no_bool(da, db, "div_floor_cpu")
    return wrap(da // db)


def remainder(input: Any, other: Any) -> Tensor:
    """Python-style modulus (sign of the divisor), like torch.remainder."""
    ta, tb, da, db = prep2(input, other)
    _no_bool(da, db, "remainder_cpu")
    r = wrap(da % db)
    if _tracked(ta, tb):
        def bw(g, _):
            ga = None if ta is None else grad_to(g, ta)
            gb = None
            if tb is not None:
                gb = grad_to(-g * floor_divide(ta if ta is not None else da, tb), tb)
            return ga, gb
        attach(r, (ta, tb), bw, "RemainderBackward0", saved=_saved(ta, tb))
    return r


def fmod(input: Any, other: Any) -> Tensor:
    """C-style modulus (sign of the dividend)."""
    ta, tb, da, db = prep2(input, other)
    xp = backend.get_array_module(da, db)
    r = wrap(xp.fmod(da, db))
    if _tracked(ta, tb):
        attach(r, (ta, tb), lambda g, _: (grad_to(g, ta) if ta is not None else None, None),
               "FmodBackward0")
    return r


def pow(input: Any, exponent: Any) -> Tensor:  # shadows the builtin: torch's name
    """input ** exponent; either may be a Python scalar."""
    if _amp.ACTIVE:
        input, exponent = _amp.fp32("pow", input, exponent)
    ta, tb, da, db = prep2(input, exponent)
    if (tb is None and isinstance(db, int) and db < 0 and da.dtype.kind in "iub"):
        raise RuntimeError("Integers to negative integer powers are not allowed.")
    xp = backend.get_array_module(da, db)
    if tb is None and db == 2:
        r = wrap(da * da)
    elif tb is None and db == 0.5:
        r = wrap(xp.sqrt(da))
    else:
        r = wrap(xp.power(da, db))
    if _tracked(ta, tb):
        def bw(g, out):
            ga = gb = None
            if ta is not None and ta._rg:
                if tb is None:
                    ga = zeros_grad(g) if db == 0 else g * (db * ta ** (db - 1))
                else:
                    ga = where(tb == 0, 0.0, g * (tb * ta ** (tb - 1)))
                ga = grad_to(ga, ta)
            if tb is not None and tb._rg:
                base = ta if ta is not None else wrap(xp_of(tb).asarray(da, dtype=tb._data.dtype))
                from engine.ops.unary import log

                gb = where((base == 0) & (tb >= 0), 0.0, g * out * log(base))
                gb = grad_to(gb, tb)
            return ga, gb
        attach(r, (ta, tb), bw, "PowBackward0" if tb is None else
               "PowBackward2" if ta is None else "PowBackward1", saved=_saved(ta, tb), save_out=True)
    return r


def zeros_grad(g: Tensor) -> Tensor:
    return wrap(xp_of(g).zeros_like(g._data))


def maximum(input: Tensor, other: Tensor) -> Tensor:
    """Elementwise max; at ties the gradient is split in half (as torch)."""
    return _minmax(input, other, True)


def minimum(input: Tensor, other: Tensor) -> Tensor:
    return _minmax(input, other, False)


def _minmax(input: Any, other: Any, is_max: bool) -> Tensor:
    if not isinstance(other, Tensor):
        raise TypeError(f"{'maximum' if is_max else 'minimum'}(): argument 'other' must be Tensor")
    ta, tb, da, db = prep2(input, other)
    xp = backend.get_array_module(da, db)
    r = wrap(xp.maximum(da, db) if is_max else xp.minimum(da, db))
    if _tracked(ta, tb):
        def bw(g, _):
            tie = ta == tb
            win_a = (ta > tb) if is_max else (ta < tb)
            half = g * 0.5
            ga = where(tie, half, where(win_a, g, 0.0))
            gb = where(tie, half, where(win_a, 0.0, g))
            return grad_to(ga, ta), grad_to(gb, tb)
        attach(r, (ta, tb), bw, "MaximumBackward0" if is_max else "MinimumBackward0",
               saved=(ta, tb))
    return r


def where(condition: Any, input: Any = None, other: Any = None) -> Tensor:
    """Elements of ``input`` where ``condition`` holds, else of ``other``."""
    c = as_t(condition)
    if input is None and other is None:
        from engine.ops.indexing import nonzero

        return nonzero(c, as_tuple=True)
    ta, tb, da, db = prep2(input, other)
    xp = xp_of(c)
    cd = c._data if c._data.dtype == np.bool_ else c._data.astype(bool)
    r = wrap(xp.where(cd, da, db))
    if r._data.dtype != result_type(input, other).np:  # both scalars
        r = wrap(r._data.astype(result_type(input, other).np))
    if _tracked(ta, tb):
        def bw(g, _):
            z = zeros_grad(g)
            ga = None if ta is None else grad_to(where(c, g, z), ta)
            gb = None if tb is None else grad_to(where(c, z, g), tb)
            return ga, gb
        attach(r, (ta, tb), bw, "WhereBackward0")
    return r


def lerp(input: Tensor, end: Tensor, weight: Any) -> Tensor:
    """input + weight * (end - input), evaluated from the nearer end as torch does."""
    diff = sub(end, input)
    if not isinstance(weight, Tensor):
        if builtins_abs(weight) < 0.5:
            return named(add(input, mul(diff, weight)), "LerpBackward0")
        return named(sub(end, mul(diff, 1 - weight)), "LerpBackward0")
    return named(where(weight.abs() < 0.5, add(input, mul(weight, diff)),
                 sub(end, mul(diff, sub(1, weight)))), "LerpBackward1")


builtins_abs = abs


def clamp(input: Tensor, min: Any = None, max: Any = None) -> Tensor:
    """Clamp into [min, max]; the gradient flows where the input is inside the range."""
    if min is None and max is None:
        raise RuntimeError("torch.clamp: At least one of 'min' or 'max' must not be None")
    t = input
    if isinstance(min, Tensor) or isinstance(max, Tensor):
        r = t
        if min is not None:
            r = maximum(r, as_t(min, like=t)) if not isinstance(min, Tensor) else _clamp_t(r, min, True)
        if max is not None:
            r = minimum(r, as_t(max, like=t)) if not isinstance(max, Tensor) else _clamp_t(r, max, False)
        return r
    d = t._data
    rt = result_type(t, *(v for v in (min, max) if v is not None)).np
    if d.dtype != rt:
        d = d.astype(rt)
    xp = xp_of(t)
    r = wrap(xp.clip(d, min, max))
    if STATE.enabled and t._rg:
        def bw(g, _):
            m = None
            if min is not None:
                m = t >= min
            if max is not None:
                m2 = t <= max
                m = m2 if m is None else m & m2
            return (where(m, g, 0.0),)
        attach(r, (t,), bw, "ClampBackward1", saved=(t,))
    return r


def _clamp_t(x: Tensor, bound: Tensor, lower: bool) -> Tensor:
    """clamp with a tensor bound: the gradient goes to the bound where it is active."""
    ta, tb, da, db = prep2(x, bound)
    xp = backend.get_array_module(da, db)
    r = wrap(xp.maximum(da, db) if lower else xp.minimum(da, db))
    if _tracked(ta, tb):
        def bw(g, _):
            active = (ta < tb) if lower else (ta > tb)
            return grad_to(where(active, 0.0, g), ta), grad_to(where(active, g, 0.0), tb)
        attach(r, (ta, tb), bw, "ClampBackward0", saved=(ta, tb))
    return r


clip = clamp
subtract = sub
multiply = mul
divide = div


def true_divide(input: Any, other: Any) -> Tensor:
    return div(input, other)


# ----- comparisons and logic: bool results, no gradient ---------------------------------
def _cmp(f):
    def op(input: Any, other: Any) -> Tensor:
        _, _, da, db = prep2(input, other)
        return wrap(f(da, db))
    return op


eq = _cmp(lambda a, b: a == b)
ne = _cmp(lambda a, b: a != b)
lt = _cmp(lambda a, b: a < b)
le = _cmp(lambda a, b: a <= b)
gt = _cmp(lambda a, b: a > b)
ge = _cmp(lambda a, b: a >= b)
for _f, _n in ((eq, "eq"), (ne, "ne"), (lt, "lt"), (le, "le"), (gt, "gt"), (ge, "ge")):
    _f.__name__ = _n
    _f.__doc__ = f"Elementwise ``{_n}`` comparison after type promotion; a bool tensor."


def _as_bool(x: Any) -> Any:
    d = x._data if isinstance(x, Tensor) else x
    return d if getattr(d, "dtype", None) == np.bool_ else (d != 0)


def logical_and(input: Any, other: Any) -> Tensor:
    return wrap(_as_bool(input) & _as_bool(other))


def logical_or(input: Any, other: Any) -> Tensor:
    return wrap(_as_bool(input) | _as_bool(other))


def logical_xor(input: Any, other: Any) -> Tensor:
    return wrap(_as_bool(input) ^ _as_bool(other))


def logical_not(input: Tensor) -> Tensor:
    return wrap(~_as_bool(input))


def bitwise_not(input: Tensor) -> Tensor:
    return wrap(~input._data)


def _bitwise(f, name):
    def op(input: Any, other: Any) -> Tensor:
        _, _, da, db = prep2(input, other)
        if da.dtype.kind == "f":
            raise RuntimeError(f"\"{name}_cpu\" not implemented for 'Float'")
        return wrap(f(da, db))
    return op


bitwise_and = _bitwise(lambda a, b: a & b, "bitwise_and")
bitwise_or = _bitwise(lambda a, b: a | b, "bitwise_or")
bitwise_xor = _bitwise(lambda a, b: a ^ b, "bitwise_xor")


def isnan(input: Tensor) -> Tensor:
    return wrap(xp_of(input).isnan(input._data))


def isfinite(input: Tensor) -> Tensor:
    return wrap(xp_of(input).isfinite(input._data))


def isinf(input: Tensor) -> Tensor:
    return wrap(xp_of(input).isinf(input._data))


def isclose(input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08,
            equal_nan: bool = False) -> Tensor:
    _, _, da, db = prep2(input, other)
    return wrap(backend.get_array_module(da, db).isclose(da, db, rtol, atol, equal_nan))


def allclose(input: Tensor, other: Tensor, rtol: float = 1e-05, atol: float = 1e-08,
             equal_nan: bool = False) -> bool:
    return bool(isclose(input, other, rtol, atol, equal_nan)._data.all())


def equal(input: Tensor, other: Tensor) -> bool:
    return input.shape == other.shape and bool((input._data == other._data).all())


# ----- conversion ------------------------------------------------------------------------
def _to(t: Tensor, dev: Any, dt: Any, copy: bool) -> Tensor:
    """Tensor.to: cast and/or move; differentiable between floating dtypes and across devices."""
    d = t._data
    src_dev = backend.array_device(d)
    moved = dev is not None and dev != src_dev and not (
        dev.type == "cuda" and dev.index is None and src_dev.type == "cuda"
        and src_dev.index == backend.default_cuda_index())
    cast = dt is not None and dt.np != d.dtype
    if not moved and not cast:
        if not copy:
            return t
        out = wrap(d.copy())
    else:
        a = d.astype(dt.np) if cast else d
        if moved:
            a = backend.move_to(a, dev)
        out = wrap(a if (cast or moved) else a.copy())
    if STATE.enabled and t._rg and out._data.dtype.kind == "f":
        src_dt, src_devs = t.dtype, src_dev
        attach(out, (t,), lambda g, _: (_to(g, src_devs, src_dt, False),), "ToCopyBackward0")
    return out


def copy_(self: Tensor, src: Any) -> Tensor:
    """Copy ``src`` (broadcast, cast, moved) into ``self``; differentiable with respect to src."""
    from engine.ops.inplace import apply_inplace

    src = as_t(src, like=self)

    def op(prev, s):
        a = s._data
        if type(a) is not type(prev._data):
            a = backend.move_to(a, prev.device)
        xp = xp_of(prev)
        r = wrap(xp.broadcast_to(a.astype(prev._data.dtype, copy=False), prev._data.shape).copy())
        if STATE.enabled and s._rg:
            sdt, sdev = s.dtype, s.device
            attach(r, (None, s), lambda g, _: (None, _to(unbroadcast(g, s.shape), sdev, sdt, False)),
                   "CopyBackwards")
        return r
    return apply_inplace(self, op, src, exact_dtype=False)
