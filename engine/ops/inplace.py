"""In-place ops (add_, mul_, addcmul_, clamp_, ...) and __setitem__.

Outside autograd (optimizers run under no_grad) they write straight into
``_data`` with ``out=``. When autograd is recording, the op is computed out of
place on a snapshot of the old value and written back, and the tensor takes
the op's grad_fn, so gradients flow as torch's in-place autograd does. Every
in-place op bumps the version counter (shared with views made by detach()).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from engine.autograd.grad_mode import STATE
from engine.ops import elementwise as E
from engine.ops import unary as U
from engine.ops._util import as_t, attach, named, prep2, wrap, xp_of
from engine.tensor import Tensor, _check_inplace

__all__ = [
    "abs_",
    "add_",
    "addcdiv",
    "addcdiv_",
    "addcmul",
    "addcmul_",
    "apply_inplace",
    "clamp_",
    "div_",
    "exp_",
    "lerp_",
    "masked_fill_",
    "mul_",
    "neg_",
    "pow_",
    "relu_",
    "setitem",
    "sigmoid_",
    "sqrt_",
    "sub_",
    "tanh_",
]


def _tracked(self: Tensor, args: tuple) -> bool:
    if not STATE.enabled:
        return False
    if self._rg:
        return True
    for a in args:
        if isinstance(a, Tensor) and a._rg:
            return True
    return False


def _store(self: Tensor, arr: Any, exact_dtype: bool) -> None:
    d = self._data
    if exact_dtype and arr.dtype != d.dtype and not np.can_cast(arr.dtype, d.dtype, "same_kind"):
        raise RuntimeError(f"result type {_name(arr.dtype)} can't be cast to the desired output "
                           f"type {_name(d.dtype)}")
    if arr.shape != d.shape:
        try:
            arr = xp_of(self).broadcast_to(arr, d.shape)
        except ValueError:
            raise RuntimeError(f"output with shape {list(d.shape)} doesn't match the broadcast "
                               f"shape {list(arr.shape)}") from None
    xp_of(self).copyto(d, arr, casting="unsafe")


def _name(npd: Any) -> str:
    return {"float32": "Float", "float64": "Double", "float16": "Half", "int64": "Long",
            "int32": "Int", "bool": "Bool"}.get(str(npd), str(npd))


def apply_inplace(self: Tensor, op: Callable, *args: Any, exact_dtype: bool = True) -> Tensor:
    """Run ``op(self, *args)`` and write the result into ``self`` (with autograd if recording)."""
    if _tracked(self, args):
        _check_inplace(self)
        view = getattr(self, "_view", None)
        if view is not None:
            return _inplace_on_view(self, view, op, args, exact_dtype)
        prev = wrap(self._data.copy())
        prev._rg = self._rg
        prev.grad_fn = self.grad_fn
        old = self.grad_fn
        if old is not None and old.out_version >= 0:
            old.out_version = -2  # its saved output is being overwritten: backward raises
        r = op(prev, *args)
        _store(self, r._data, exact_dtype)
        self.grad_fn = r.grad_fn
        self._rg = r._rg
        self._vc[0] += 1
        node = r.grad_fn
        if node is not None and node.out_version >= 0:  # its output is self, now bumped
            node.out_version = self._vc[0]
        return self
    else:
        _check_inplace(self)
        r = op(self, *args)
        _store(self, r._data, exact_dtype)
    self._vc[0] += 1
    return self


def _inplace_on_view(self: Tensor, view: tuple, op: Callable, args: tuple,
                     exact_dtype: bool) -> Tensor:
    """An in-place op on a view, with torch's semantics: the root base's history becomes
    CopySlices(old base, op(fn(old base))), and the view becomes ``fn(new base)``, so
    gradients through the base see the modification."""
    base, fn = view
    if base._rg and base.grad_fn is None:
        raise RuntimeError("a view of a leaf Variable that requires grad is being used in an "
                           "in-place operation.")
    prev = wrap(base._data.copy())  # the old base, with the old history
    prev._rg = base._rg
    prev.grad_fn = base.grad_fn
    old = base.grad_fn
    if old is not None and old.out_version >= 0:
        old.out_version = -2  # its saved output is being overwritten: backward raises
    r = op(fn(prev), *args)
    _store(self, r._data, exact_dtype)  # writes through the view into base's memory
    base._vc[0] += 1
    if r._rg or prev._rg:
        def bw(g: Tensor, _: Any) -> tuple:
            """The base's gradient with the view's region zeroed; the view's region to r."""
            gr = fn(g)
            if not STATE.enabled:
                gb = g._data.copy()
                fn(wrap(gb))._data[...] = 0
                return gb, gr
            mask = xp_of(g).ones_like(g._data)
            fn(wrap(mask))._data[...] = 0
            return E.mul(g, wrap(mask)), gr
        attach(base, (prev, r), bw, "torch::autograd::CopySlices")  # torch's name()
        v = fn(base)  # the view's new history: a view of the new base
        self.grad_fn = v.grad_fn
        self._rg = v._rg
    return self


def _fast(self: Tensor, other: Any, ufunc: Any, alpha: Any = 1) -> bool:
    """The untracked fast path: ufunc(self, other * alpha, out=self) when dtypes allow."""
    if _tracked(self, (other,)):
        return False
    if self._rg and self.grad_fn is None and STATE.enabled:
        _check_inplace(self)
    d = self._data
    o = other._data if isinstance(other, Tensor) else other
    if isinstance(o, (int, float, bool)):
        if isinstance(o, float) and d.dtype.kind != "f":
            return False
    elif o.dtype != d.dtype:
        if not np.can_cast(o.dtype, d.dtype, "same_kind"):
            return False
        o = o.astype(d.dtype)
    if alpha != 1:
        o = o * alpha
    try:
        ufunc(d, o, out=d)
    except ValueError:
        return False
    self._vc[0] += 1
    return True


def add_(self: Tensor, other: Any, *, alpha: Any = 1) -> Tensor:
    if _fast(self, other, xp_of(self).add, alpha):
        return self
    return apply_inplace(self, lambda s, o: E.add(s, o, alpha=alpha), other)


def sub_(self: Tensor, other: Any, *, alpha: Any = 1) -> Tensor:
    if _fast(self, other, xp_of(self).subtract, alpha):
        return self
    return apply_inplace(self, lambda s, o: E.sub(s, o, alpha=alpha), other)


def mul_(self: Tensor, other: Any) -> Tensor:
    if _fast(self, other, xp_of(self).multiply):
        return self
    return apply_inplace(self, E.mul, other)


def div_(self: Tensor, other: Any, *, rounding_mode: str | None = None) -> Tensor:
    if rounding_mode is None and self._data.dtype.kind == "f" and _fast(
            self, other, xp_of(self).true_divide):
        return self
    return apply_inplace(self, lambda s, o: E.div(s, o, rounding_mode=rounding_mode), other)


def addcmul(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """input + value * tensor1 * tensor2."""
    return named(E.add(input, E.mul(E.mul(tensor1, tensor2), value) if value != 1 else
                       E.mul(tensor1, tensor2)), "AddcmulBackward0")


def addcdiv(input: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    """input + value * tensor1 / tensor2."""
    q = E.div(tensor1, tensor2)
    return named(E.add(input, E.mul(q, value) if value != 1 else q), "AddcdivBackward0")


def addcmul_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    if not _tracked(self, (tensor1, tensor2)):
        _, _, a, b = prep2(tensor1, tensor2)
        t = a * b
        if value != 1:
            t *= value
        return _write_add(self, t, lambda s: addcmul(s, tensor1, tensor2, value=value))
    return apply_inplace(self, lambda s, a, b: addcmul(s, a, b, value=value), tensor1, tensor2)


def addcdiv_(self: Tensor, tensor1: Tensor, tensor2: Tensor, *, value: Any = 1) -> Tensor:
    if not _tracked(self, (tensor1, tensor2)):
        _, _, a, b = prep2(tensor1, tensor2)
        t = a / b
        if value != 1:
            t *= value
        return _write_add(self, t, lambda s: addcdiv(s, tensor1, tensor2, value=value))
    return apply_inplace(self, lambda s, a, b: addcdiv(s, a, b, value=value), tensor1, tensor2)


def _write_add(self: Tensor, t: Any, slow: Callable) -> Tensor:
    d = self._data
    if t.dtype == d.dtype and np.broadcast_shapes(t.shape, d.shape) == d.shape:
        _check_inplace(self)
        d += t
        self._vc[0] += 1
        return self
    return apply_inplace(self, slow)


def clamp_(self: Tensor, min: Any = None, max: Any = None) -> Tensor:
    return apply_inplace(self, lambda s: E.clamp(s, min, max))


def lerp_(self: Tensor, end: Tensor, weight: Any) -> Tensor:
    if not _tracked(self, (end, weight)) and end._data.dtype == self._data.dtype:
        _check_inplace(self)
        w = weight._data if isinstance(weight, Tensor) else weight
        self._data += (end._data - self._data) * w
        self._vc[0] += 1
        return self
    return apply_inplace(self, E.lerp, end, weight)


def pow_(self: Tensor, exponent: Any) -> Tensor:
    return apply_inplace(self, E.pow, exponent)


def masked_fill_(self: Tensor, mask: Tensor, value: Any) -> Tensor:
    from engine.ops.indexing import masked_fill

    return apply_inplace(self, lambda s: masked_fill(s, mask, value))


def _unary_inplace(f: Callable) -> Callable:
    def op(self: Tensor) -> Tensor:
        return apply_inplace(self, f)
    op.__name__ = f.__name__ + "_"
    return op


neg_ = _unary_inplace(U.neg)
sqrt_ = _unary_inplace(U.sqrt)
exp_ = _unary_inplace(U.exp)
abs_ = _unary_inplace(U.abs)
sigmoid_ = _unary_inplace(U.sigmoid)
tanh_ = _unary_inplace(U.tanh)
relu_ = _unary_inplace(U.relu)
log_ = _unary_inplace(U.log)
floor_ = _unary_inplace(U.floor)
round_ = _unary_inplace(U.round)


def setitem(self: Tensor, key: Any, value: Any) -> None:
    """``self[key] = value``; differentiable with respect to both when recording."""
    from engine.ops.indexing import convert_key, index_put_outofplace

    k = convert_key(key, self)
    if not _tracked(self, (value,)):
        _check_inplace(self)
        v = value
        if isinstance(v, Tensor):
            v = v._data
            if type(v) is not type(self._data):
                from engine import backend

                v = backend.move_to(v, self.device)
        self._data[k] = v
        self._vc[0] += 1
        return
    apply_inplace(self, lambda s, v: index_put_outofplace(s, k, v), as_t(value, like=self),
                  exact_dtype=False)
