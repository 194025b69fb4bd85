"""Engine dtypes (float16/32/64, int32/64, bool) and torch's type-promotion rules.

A dtype is a small interned object wrapping a numpy dtype; ``engine.float32`` is
what ``torch.float32`` is. Promotion follows torch (not numpy): dimensioned
tensors win over 0-d tensors, which win over Python scalars, unless a lower
priority operand is of a higher category (bool < integer < floating).
"""
from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "bool_",
    "dtype",
    "float16",
    "float32",
    "float64",
    "get_default_dtype",
    "int32",
    "int64",
    "promote_types",
    "set_default_dtype",
    "to_dtype",
]


class dtype:  # lowercase: torch's spelling
    """An engine dtype; compare with ``is`` or ``==``; ``.np`` is the numpy dtype."""

    __slots__ = ("category", "is_floating_point", "is_signed", "itemsize", "name", "np", "rank")

    def __init__(self, name: str, np_dtype: Any, rank: int, category: int) -> None:
        self.name = name
        self.np = np.dtype(np_dtype)
        self.itemsize = self.np.itemsize
        self.is_floating_point = category == 2
        self.is_signed = name != "bool"
        self.rank = rank
        self.category = category  # 0 bool, 1 integer, 2 floating

    def __repr__(self) -> str:
        return f"engine.{self.name}"

    def __reduce__(self):
        return (to_dtype, (self.name,))

    def to_complex(self):  # pragma: no cover - complex is out of scope
        raise NotImplementedError("complex dtypes are not supported")


bool_ = dtype("bool", np.bool_, 0, 0)
int32 = dtype("int32", np.int32, 1, 1)
int64 = dtype("int64", np.int64, 2, 1)
float16 = dtype("float16", np.float16, 3, 2)
float32 = dtype("float32", np.float32, 4, 2)
float64 = dtype("float64", np.float64, 5, 2)

ALL = (bool_, int32, int64, float16, float32, float64)
_BY_RANK = ALL
# numpy scalar type -> engine dtype; other numpy integer/float kinds are mapped on input.
FROM_NP: dict = {d.np.type: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"float": float32, "double": float64, "half": float16, "long": int64,
                 "int": int32, "bool_": bool_})

_default = [float32]


def get_default_dtype() -> dtype:
    """The dtype of tensors made from Python floats (float32 unless changed)."""
    return _default[0]


def set_default_dtype(d: Any) -> None:
    d = to_dtype(d)
    if not d.is_floating_point:
        raise TypeError("only floating-point types are supported as the default type")
    _default[0] = d


def to_dtype(d: Any) -> dtype:
    """An engine dtype from an engine dtype, a name, a numpy dtype or a Python type."""
    if type(d) is dtype:
        return d
    if isinstance(d, str):
        got = _BY_NAME.get(d.rsplit(".", 1)[-1])
        if got is None:
            raise TypeError(f"unsupported dtype {d!r}")
        return got
    if d is float:
        return _default[0]
    if d is int:
        return int64
    if d is bool:
        return bool_
    try:
        npd = np.dtype(d)
    except TypeError:
        raise TypeError(f"unsupported dtype {d!r}") from None
    return from_numpy_dtype(npd)


def from_numpy_dtype(npd: np.dtype) -> dtype:
    """The engine dtype for a numpy dtype; other integer kinds widen to int64."""
    got = FROM_NP.get(npd.type)
    if got is not None:
        return got
    if npd.kind in "iu":
        return int64
    if npd.kind == "f":
        return float64
    raise TypeError(f"unsupported numpy dtype {npd}")


def promote_types(a: dtype, b: dtype) -> dtype:
    """torch.promote_types for the supported dtypes: the higher of the two."""
    return a if a.rank >= b.rank else b


def _combine(higher: dtype | None, lower: dtype | None) -> dtype | None:
    """torch's combine_categories: the lower-priority class only counts if its category is higher."""
    if higher is None:
        return lower
    if lower is None or higher.category == 2:
        return higher
    if higher.category == 0 or lower.category == 2:
        return promote_types(higher, lower)
    return higher


def scalar_dtype(x: Any) -> dtype:
    """The dtype a Python scalar takes in an op (torch's wrapped numbers)."""
    if isinstance(x, bool):
        return bool_
    if isinstance(x, int):
        return int64
    return _default[0]


def result_type(*operands: Any) -> dtype:
    """torch.result_type over tensors and Python scalars."""
    dim = zero = wrapped = None
    for x in operands:
        data = getattr(x, "_data", None)
        if data is None:
            if isinstance(x, np.generic):
                d = from_numpy_dtype(x.dtype)
            else:
                d = scalar_dtype(x)
            wrapped = d if wrapped is None else promote_types(wrapped, d)
            continue
        d = FROM_NP[data.dtype.type]
        if data.ndim:
            dim = d if dim is None else promote_types(dim, d)
        else:
            zero = d if zero is None else promote_types(zero, d)
    return _combine(dim, _combine(zero, wrapped))
