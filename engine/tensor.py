"""The Tensor: an ndarray (numpy or cupy) plus the autograd fields.

Math methods and operators are attached by ``engine.ops`` (each op lives beside
its backward there); this module holds construction, conversion, the autograd
bookkeeping (leaf rules, hooks, retain_grad, version counter) and backward().

Contract for the rest of engine: ``Tensor._data`` is the array (any layout) and
``Tensor._wrap(array, requires_grad=False)`` wraps one without copying.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from engine import backend
from engine.autograd.grad_mode import STATE
from engine.dtypes import FROM_NP, from_numpy_dtype, get_default_dtype, to_dtype
from engine.dtypes import dtype as _dtype

__all__ = ["Tensor", "as_tensor", "from_numpy", "tensor"]


class _Handle:
    """What register_hook returns: ``.remove()`` unregisters the hook."""

    _next = 0

    def __init__(self, hooks: dict) -> None:
        _Handle._next += 1
        self.id = _Handle._next
        self._hooks = hooks

    def remove(self) -> None:
        self._hooks.pop(self.id, None)


_new = object.__new__
_ndarray, _generic = np.ndarray, np.generic  # module globals: cheaper to load than np.<attr>


def _init_tensor(array: Any, requires_grad: bool = False, vc: list | None = None, t: Any = None) -> Tensor:
    """Sets a Tensor's fields: on ``t``, or on a new Tensor when ``t`` is None; returns it.

    The one place that lays out a Tensor: ``Tensor.__init__`` calls it on self, and it is
    ``Tensor._wrap`` and ``engine.ops._util.wrap`` (the hot path of every op) itself, so a
    wrap costs no extra call. ``vc`` is a shared version counter (views, detach), else new.
    """
    if type(array) is not _ndarray and isinstance(array, _generic):
        array = np.asarray(array)  # numpy ufuncs turn 0-d arrays into scalars
    if t is None:
        t = _new(Tensor)
    t._data = array
    t._rg = requires_grad
    t.grad = None
    t.grad_fn = None
    t._vc = [0] if vc is None else vc
    t._hooks = None
    t._retains_grad = False
    return t


class Tensor:
    """A multi-dimensional array with reverse-mode autograd, like ``torch.Tensor``.

    ``Tensor(data)`` or ``Tensor(other_tensor)`` shares the array of a Tensor (so
    subclasses such as ``nn.Parameter`` can wrap one); prefer ``engine.tensor``.
    """

    # _view (set only on views, read with getattr): (base, fn) with ``fn(base)`` giving this
    # view differentiably; in-place ops on a view rewrite the base's history (CopySlices).
    __slots__ = (
        "__dict__",
        "__weakref__",
        "_data",
        "_hooks",
        "_retains_grad",
        "_rg",
        "_vc",
        "_view",
        "grad",
        "grad_fn",
    )
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, data: Any = None, requires_grad: bool = False) -> None:
        if data is None:
            array = np.empty((0,), dtype=get_default_dtype().np)
            vc = None
        elif isinstance(data, Tensor):
            array, vc = data._data, data._vc
        else:
            array, vc = _to_array(data, None), None
        _init_tensor(array, False, vc, self)
        if requires_grad:
            self.requires_grad = True

    # Tensor._wrap(array, requires_grad=False): wrap an ndarray as a leaf without copying (the
    # engine-internal constructor; ops use the same function as engine.ops._util.wrap).
    _wrap = staticmethod(_init_tensor)

    @staticmethod
    def _make_subclass(cls: type, data: Tensor, requires_grad: bool = False) -> Tensor:
        """torch's Tensor._make_subclass: a ``cls`` instance sharing ``data``'s array."""
        t = object.__new__(cls)
        Tensor.__init__(t, data.detach(), requires_grad)
        return t

    # ----- attributes -------------------------------------------------------
    @property
    def requires_grad(self) -> bool:
        return self._rg

    @requires_grad.setter
    def requires_grad(self, value: bool) -> None:
        value = bool(value)
        if self.grad_fn is not None and not value:
            raise RuntimeError(
                "you can only change requires_grad flags of leaf variables. If you want to use "
                "a computed variable in a subgraph that doesn't require differentiation use "
                "var_no_grad = var.detach()."
            )
        if value and self._data.dtype.kind not in "fc":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._rg = value

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        self.requires_grad = requires_grad
        return self

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def data(self) -> Tensor:
        """A detached Tensor sharing this one's array (assigning replaces the array)."""
        return self.detach()

    @data.setter
    def data(self, value: Tensor) -> None:
        self._data = value._data if isinstance(value, Tensor) else _to_array(value, None)

    @property
    def shape(self) -> tuple:
        return self._data.shape

    def size(self, dim: int | None = None):
        if dim is None:
            return self._data.shape
        return self._data.shape[dim]

    @property
    def dtype(self) -> _dtype:
        return FROM_NP[self._data.dtype.type]

    @property
    def device(self) -> backend.Device:
        return backend.array_device(self._data)

    @property
    def is_cuda(self) -> bool:
        return type(self._data) is not np.ndarray

    @property
    def ndim(self) -> int:
        return self._data.ndim

    def dim(self) -> int:
        return self._data.ndim

    def ndimension(self) -> int:
        return self._data.ndim

    def numel(self) -> int:
        return int(self._data.size)

    nelement = numel

    def element_size(self) -> int:
        return self._data.itemsize

    def is_floating_point(self) -> bool:
        return self._data.dtype.kind == "f"

    def is_contiguous(self) -> bool:
        return bool(self._data.flags.c_contiguous)

    @property
    def _base(self) -> Tensor | None:
        """The tensor this one is a view of (torch's ``._base``), or None."""
        v = getattr(self, "_view", None)
        return None if v is None else v[0]

    @property
    def _version(self) -> int:
        return self._vc[0]

    def _bump(self) -> None:
        self._vc[0] += 1

    def __len__(self) -> int:
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __hash__(self) -> int:
        return id(self)

    # ----- conversion ---------------------------------------------------------
    def item(self):
        if self._data.size != 1:
            raise RuntimeError(
                f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        return backend.to_numpy(self._data).tolist()

    def numpy(self, *, force: bool = False) -> np.ndarray:
        if self._rg and not force:
            raise RuntimeError(
                "Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() "
                "instead.")
        if type(self._data) is not np.ndarray:
            if not force:
                raise TypeError(
                    f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() "
                    "to copy the tensor to host memory first.")
            return backend.to_numpy(self._data)
        return self._data

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = backend.to_numpy(self._data)
        return a if dtype is None else a.astype(dtype, copy=False)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __bool__(self) -> bool:
        if self._data.size != 1:
            raise RuntimeError(
                "Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._data.reshape(()).item())

    def __index__(self) -> int:
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def detach(self) -> Tensor:
        """A new leaf sharing the array and the version counter, outside the graph."""
        return _init_tensor(self._data, False, self._vc)

    def detach_(self) -> Tensor:
        self.grad_fn = None
        self._rg = False
        return self

    def to(self, *args: Any, **kwargs: Any) -> Tensor:
        """``.to(dtype)``, ``.to(device)``, ``.to(device, dtype)`` or ``.to(other)``; differentiable."""
        dev = kwargs.pop("device", None)
        dt = kwargs.pop("dtype", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dev, dt = a.device, a.dtype
            elif isinstance(a, _dtype) or (isinstance(a, type) and a in (float, int, bool)):
                dt = a
            elif isinstance(a, (str, backend.Device, int)):
                dev = a
            else:
                dt = a
        from engine.ops.elementwise import _to  # local: ops import this module

        return _to(self, None if dev is None else backend.Device(dev),
                   None if dt is None else to_dtype(dt), copy)

    def type(self, dtype: Any = None):
        if dtype is None:
            return f"engine.{self.dtype.name}"
        return self.to(to_dtype(dtype))

    def float(self) -> Tensor:
        return self.to(to_dtype("float32"))

    def double(self) -> Tensor:
        return self.to(to_dtype("float64"))

    def half(self) -> Tensor:
        return self.to(to_dtype("float16"))

    def long(self) -> Tensor:
        return self.to(to_dtype("int64"))

    def int(self) -> Tensor:
        return self.to(to_dtype("int32"))

    def bool(self) -> Tensor:
        return self.to(to_dtype("bool"))

    def cpu(self) -> Tensor:
        return self.to("cpu")

    def cuda(self, device: Any = None) -> Tensor:
        if device is None:
            return self.to("cuda")
        return self.to(device if isinstance(device, (str, backend.Device)) else f"cuda:{device}")

    # ----- autograd -----------------------------------------------------------
    def retain_grad(self) -> None:
        if not self._rg:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is not None:
            self._retains_grad = True

    @property
    def retains_grad(self) -> bool:
        return self._retains_grad

    def register_hook(self, hook: Any) -> _Handle:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a return value replaces it."""
        if not self._rg:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._hooks is None:
            self._hooks = {}
        h = _Handle(self._hooks)
        self._hooks[h.id] = hook
        return h

    def backward(self, gradient: Tensor | None = None, retain_graph: bool | None = None,
                 create_graph: bool = False, inputs: Any = None) -> None:
        """Accumulate d(self)/d(leaf) into each leaf's ``.grad`` (torch.Tensor.backward)."""
        from engine.autograd import backward as _backward

        _backward([self], None if gradient is None else [gradient], retain_graph, create_graph,
                  inputs=inputs)

    # ----- in-place data ops (no autograd; optimizers run them under no_grad) -----
    def zero_(self) -> Tensor:
        return self.fill_(0)

    def fill_(self, value: Any) -> Tensor:
        _check_inplace(self)
        self._data.fill(value.item() if isinstance(value, Tensor) else value)
        self._vc[0] += 1
        return self

    def copy_(self, src: Any, non_blocking: bool = False) -> Tensor:
        from engine.ops.elementwise import copy_

        return copy_(self, src)

    # ----- printing -------------------------------------------------------------
    def __repr__(self) -> str:
        body = np.array2string(backend.to_numpy(self._data), separator=", ", precision=4,
                               prefix="tensor(")
        extras = []
        if self._data.dtype.type not in (np.float32, np.int64, np.bool_) or self._data.size == 0:
            extras.append(f"dtype=engine.{self.dtype.name}")
        if type(self._data) is not np.ndarray:
            extras.append(f"device='{self.device}'")
        if self.grad_fn is not None:
            extras.append(f"grad_fn=<{self.grad_fn.name()}>")
        elif self._rg:
            extras.append("requires_grad=True")
        return "tensor(" + body + "".join(", " + e for e in extras) + ")"

    def __reduce_ex__(self, proto: int):
        return (_rebuild, (backend.to_numpy(self._data), str(self.device), self._rg))

    def __deepcopy__(self, memo: dict) -> Tensor:
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) "
                               "support the deepcopy protocol at the moment")
        t = Tensor._wrap(self._data.copy(), self._rg)
        if self.grad is not None:
            t.grad = Tensor._wrap(self.grad._data.copy())
        memo[id(self)] = t
        return t


def _rebuild(array: np.ndarray, dev: str, requires_grad: bool) -> Tensor:
    return Tensor._wrap(backend.move_to(array, backend.Device(dev)), requires_grad)


def _check_inplace(t: Tensor) -> None:
    """torch's rule: a leaf that requires grad may not be modified in place in grad mode."""
    if t._rg and t.grad_fn is None and STATE.enabled:
        raise RuntimeError(
            "a leaf Variable that requires grad is being used in an in-place operation.")


# ----- construction -------------------------------------------------------------------
def _to_array(data: Any, dt: _dtype | None) -> Any:
    """An ndarray for ``engine.tensor(data)``: torch's dtype inference, always a copy."""
    if isinstance(data, Tensor):
        a = data._data
        return a.astype(dt.np) if dt is not None else a.copy()
    if isinstance(data, np.ndarray) or (not isinstance(data, (list, tuple, int, float, bool))
                                        and hasattr(data, "__cuda_array_interface__")):
        a = data
        if dt is None:
            d = from_numpy_dtype(a.dtype)
            return a.astype(d.np, copy=True)
        return a.astype(dt.np, copy=True)
    if isinstance(data, np.generic):
        a = np.array(data)
        return a.astype(dt.np if dt is not None else from_numpy_dtype(a.dtype).np)
    a = np.array(data)
    if a.dtype == object:
        raise TypeError(f"can't convert {type(data).__name__} of mixed or ragged content to a tensor")
    if dt is None:
        k = a.dtype.kind
        if k == "f":
            dt = get_default_dtype()
        elif k in "iu":
            dt = FROM_NP[np.int64]
        elif k == "b":
            dt = FROM_NP[np.bool_]
        else:
            raise TypeError(f"unsupported data of kind {a.dtype}")
        if a.size == 0 and isinstance(data, (list, tuple)):
            dt = get_default_dtype()
    return a.astype(dt.np, copy=False)


def tensor(data: Any, dtype: Any = None, device: Any = None,
           requires_grad: bool = False) -> Tensor:
    """A new leaf tensor holding a copy of ``data`` (torch.tensor)."""
    dt = None if dtype is None else to_dtype(dtype)
    a = _to_array(data, dt)
    if device is not None:
        a = backend.move_to(a, backend.Device(device))
    t = Tensor._wrap(a)
    if requires_grad:
        t.requires_grad = True
    return t


def as_tensor(data: Any, dtype: Any = None, device: Any = None) -> Tensor:
    """Like ``tensor`` but shares memory with an ndarray or Tensor when dtype and device allow."""
    dt = None if dtype is None else to_dtype(dtype)
    dev = None if device is None else backend.Device(device)
    if isinstance(data, Tensor):
        if (dt is None or data.dtype is dt) and (dev is None or data.device == dev):
            return data
        return data.to(device=dev, dtype=dt)
    if isinstance(data, np.ndarray) or hasattr(data, "__cuda_array_interface__"):
        d = dt or from_numpy_dtype(data.dtype)
        a = data if data.dtype == d.np else data.astype(d.np)
        if dev is not None:
            a = backend.move_to(a, dev)
        return Tensor._wrap(a)
    return tensor(data, dtype=dt, device=dev)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with ``array`` (supported dtypes only, as torch)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    if array.dtype.type not in FROM_NP:
        raise TypeError(f"can't convert np.ndarray of type {array.dtype}. The only supported "
                        "types are: float64, float32, float16, int64, int32, and bool.")
    return Tensor._wrap(array)


def zero_grads(tensors: Iterable[Tensor], set_to_none: bool = True) -> None:
    """Resets the ``.grad`` of each tensor: to None, or to zeros in place (what
    ``Module.zero_grad`` and ``Optimizer.zero_grad`` do to their parameters)."""
    for p in tensors:
        if p.grad is None:
            continue
        if set_to_none:
            p.grad = None
        else:
            p.grad._data[...] = 0
