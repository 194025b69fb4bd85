"""engine.ops: every tensor op, by family, and their binding as Tensor methods and operators.

Families: elementwise (binary, comparisons), unary (math, activations), reduction,
shape, indexing, linalg, inplace, creation. ``engine`` re-exports the functions
under torch's names (``engine.exp``, ``engine.cat`` ...); this module also
attaches them to ``Tensor`` (``x.exp()``, ``x @ y``, ``x[idx] = v``).
"""
from __future__ import annotations

from typing import Any

from engine.ops import (
    creation,
    elementwise,
    indexing,
    inplace,
    linalg,
    reduction,
    scatter_reduction,
    shape,
    unary,
)
from engine.ops.creation import *
from engine.ops.elementwise import *
from engine.ops.indexing import *
from engine.ops.inplace import *
from engine.ops.linalg import *
from engine.ops.reduction import *
from engine.ops.scatter_reduction import *
from engine.ops.shape import *
from engine.ops.unary import *
from engine.tensor import Tensor

E, U, R, S, X, L, P = elementwise, unary, reduction, shape, indexing, linalg, inplace  # X: indexing


def _rev(f):
    def r(self: Tensor, other: Any) -> Tensor:
        return f(other, self)
    r.__name__ = "__r" + f.__name__ + "__"
    return r


def _not_impl_guard(f):
    """Return NotImplemented for operands an op cannot take, so Python tries the other side."""
    def op(self: Tensor, other: Any) -> Any:
        if not isinstance(other, (Tensor, int, float, bool)) and not hasattr(other, "dtype"):
            return NotImplemented
        return f(self, other)
    op.__name__ = f.__name__
    return op


def _bind() -> None:
    T = Tensor
    methods = {
        # binary and comparisons
        "add": E.add, "sub": E.sub, "subtract": E.sub, "mul": E.mul, "multiply": E.mul,
        "div": E.div, "divide": E.div, "true_divide": E.true_divide,
        "floor_divide": E.floor_divide, "remainder": E.remainder, "fmod": E.fmod, "pow": E.pow,
        "maximum": E.maximum, "minimum": E.minimum, "lerp": E.lerp, "clamp": E.clamp,
        "clip": E.clamp, "eq": E.eq, "ne": E.ne, "lt": E.lt, "le": E.le, "gt": E.gt, "ge": E.ge,
        "greater": E.gt, "less": E.lt, "greater_equal": E.ge, "less_equal": E.le,
        "not_equal": E.ne, "equal": E.equal, "allclose": E.allclose, "isclose": E.isclose,
        "logical_and": E.logical_and, "logical_or": E.logical_or,
        "logical_xor": E.logical_xor, "logical_not": E.logical_not, "isnan": E.isnan,
        "isfinite": E.isfinite, "isinf": E.isinf, "bitwise_not": E.bitwise_not,
        "where": lambda self, condition, other: E.where(condition, self, other),
        "addcmul": P.addcmul, "addcdiv": P.addcdiv,
        # reductions
        "sum": R.sum, "mean": R.mean, "var": R.var, "std": R.std, "prod": R.prod, "max": R.max,
        "min": R.min, "amax": R.amax, "amin": R.amin, "argmax": R.argmax, "argmin": R.argmin,
        "logsumexp": R.logsumexp, "softmax": R.softmax, "log_softmax": R.log_softmax,
        "norm": R.norm, "cumsum": R.cumsum, "cumprod": R.cumprod, "any": R.any, "all": R.all,
        "topk": R.topk, "sort": R.sort, "argsort": R.argsort, "count_nonzero": R.count_nonzero,
        # shape
        "reshape": S.reshape, "view": S.view, "view_as": S.view_as, "reshape_as": S.reshape_as,
        "flatten": S.flatten, "unflatten": S.unflatten, "permute": S.permute,
        "transpose": S.transpose, "swapaxes": S.transpose, "t": S.t, "squeeze": S.squeeze,
        "unsqueeze": S.unsqueeze, "expand": S.expand, "expand_as": S.expand_as,
        "broadcast_to": S.broadcast_to, "repeat": S.repeat, "tile": S.tile,
        "split": S.split, "chunk": S.chunk, "unbind": S.unbind, "narrow": S.narrow,
        "flip": S.flip, "roll": S.roll, "tril": S.tril, "triu": S.triu,
        "contiguous": S.contiguous, "clone": S.clone, "movedim": S.movedim,
        # indexing
        "gather": X.gather, "scatter": X.scatter, "scatter_add": X.scatter_add,
        "scatter_reduce": scatter_reduction.scatter_reduce,
        "index_select": X.index_select, "index_add": X.index_add, "masked_fill": X.masked_fill,
        "masked_select": X.masked_select, "nonzero": X.nonzero,
        "take_along_dim": lambda self, indices, dim: X.gather(self, dim, indices),
        # linalg
        "matmul": L.matmul, "mm": L.mm, "bmm": L.bmm, "mv": L.mv, "dot": L.dot,
        "outer": L.outer, "inner": L.inner,
        # in-place
        "add_": P.add_, "sub_": P.sub_, "mul_": P.mul_, "div_": P.div_, "addcmul_": P.addcmul_,
        "addcdiv_": P.addcdiv_, "clamp_": P.clamp_, "clip_": P.clamp_, "lerp_": P.lerp_,
        "pow_": P.pow_, "neg_": P.neg_, "sqrt_": P.sqrt_, "exp_": P.exp_, "abs_": P.abs_,
        "sigmoid_": P.sigmoid_, "tanh_": P.tanh_, "relu_": P.relu_, "log_": P.log_,
        "floor_": P.floor_, "round_": P.round_, "masked_fill_": P.masked_fill_,
        "uniform_": lambda self, a=0.0, b=1.0, *, generator=None: _random().uniform_(
            self, a, b, generator=generator),
        "normal_": lambda self, mean=0.0, std=1.0, *, generator=None: _random().normal_(
            self, mean, std, generator=generator),
        "scatter_": lambda self, dim, index, src=None, value=None, **kw: P.apply_inplace(
            self, lambda s: X.scatter(s, dim, index, src, value, **kw)),
        "scatter_reduce_": lambda self, dim, index, src, reduce, *, include_self=True:
            P.apply_inplace(self, lambda s, src: scatter_reduction.scatter_reduce(
                s, dim, index, src, reduce, include_self=include_self), src),
        "scatter_add_": lambda self, dim, index, src: P.apply_inplace(
            self, lambda s, src: X.scatter_add(s, dim, index, src), src),
        "index_add_": lambda self, dim, index, source, *, alpha=1: P.apply_inplace(
            self, lambda s, src: X.index_add(s, dim, index, src, alpha=alpha), source),
        "copy_": E.copy_,
        # creation helpers
        "new_zeros": lambda self, *size, dtype=None, device=None, requires_grad=False:
            creation.zeros(*size, dtype=dtype or self.dtype, device=device or self.device,
                           requires_grad=requires_grad),
        "new_ones": lambda self, *size, dtype=None, device=None, requires_grad=False:
            creation.ones(*size, dtype=dtype or self.dtype, device=device or self.device,
                          requires_grad=requires_grad),
        "new_empty": lambda self, *size, dtype=None, device=None, requires_grad=False:
            creation.empty(*size, dtype=dtype or self.dtype, device=device or self.device,
                           requires_grad=requires_grad),
        "new_full": lambda self, size, fill_value, *, dtype=None, device=None,
        requires_grad=False: creation.full(size, fill_value, dtype=dtype or self.dtype,
                                           device=device or self.device,
                                           requires_grad=requires_grad),
        "new_tensor": lambda self, data, dtype=None, device=None, requires_grad=False:
            _tensor()(data, dtype=dtype or self.dtype, device=device or self.device,
                      requires_grad=requires_grad),
    }
    for name in U.__all__:
        methods[name] = getattr(U, name)
    for name, f in methods.items():
        setattr(T, name, f)

    ops = {
        "__add__": E.add, "__sub__": E.sub, "__mul__": E.mul, "__truediv__": E.div,
        "__floordiv__": E.floor_divide, "__mod__": E.remainder, "__pow__": E.pow,
    }
    for name, f in ops.items():
        setattr(T, name, _not_impl_guard(f))
        setattr(T, name.replace("__", "__r", 1), _not_impl_guard(_rev(f)))
    T.__and__ = _bitwise_or_logical(E.bitwise_and, E.logical_and)
    T.__or__ = _bitwise_or_logical(E.bitwise_or, E.logical_or)
    T.__xor__ = _bitwise_or_logical(E.bitwise_xor, E.logical_xor)
    T.__rand__, T.__ror__, T.__rxor__ = T.__and__, T.__or__, T.__xor__
    T.__matmul__ = L.matmul
    T.__rmatmul__ = _rev(L.matmul)
    T.__neg__ = U.neg
    T.__pos__ = lambda self: self
    T.__abs__ = U.abs
    T.__invert__ = lambda self: E.logical_not(self) if self._data.dtype.kind == "b" else \
        E.bitwise_not(self)
    for name, f in (("__eq__", E.eq), ("__ne__", E.ne), ("__lt__", E.lt), ("__le__", E.le),
                    ("__gt__", E.gt), ("__ge__", E.ge)):
        setattr(T, name, _not_impl_guard(f))
    T.__hash__ = lambda self: id(self)
    T.__iadd__ = lambda self, o: P.add_(self, o)
    T.__isub__ = lambda self, o: P.sub_(self, o)
    T.__imul__ = lambda self, o: P.mul_(self, o)
    T.__itruediv__ = lambda self, o: P.div_(self, o)
    T.__getitem__ = X.getitem
    T.__setitem__ = P.setitem
    T.__iter__ = _iter
    T.T = property(lambda self: S.permute(self, tuple(range(self._data.ndim - 1, -1, -1))))
    T.mT = property(lambda self: S.transpose(self, -2, -1))
    T.H = T.T
    T.mH = T.mT


def _bitwise_or_logical(bitwise, logical):
    def op(self: Tensor, other: Any) -> Any:
        if not isinstance(other, (Tensor, int, bool)):
            return NotImplemented
        od = other._data.dtype.kind if isinstance(other, Tensor) else (
            "b" if isinstance(other, bool) else "i")
        if self._data.dtype.kind == "b" and od == "b":
            return logical(self, other)
        return bitwise(self, other)
    return op


def _iter(self: Tensor):
    if self._data.ndim == 0:
        raise TypeError("iteration over a 0-d tensor")
    return iter(S.unbind(self, 0))


def _random():
    from engine import random

    return random


def _tensor():
    from engine.tensor import tensor

    return tensor


_bind()

__all__ = sorted(set(creation.__all__ + elementwise.__all__ + indexing.__all__ + inplace.__all__
                     + linalg.__all__ + reduction.__all__ + scatter_reduction.__all__ + shape.__all__
                     + unary.__all__)
                 - {"grad_to", "expand_back", "convert_key", "index_put_outofplace", "getitem",
                    "setitem", "apply_inplace"})
