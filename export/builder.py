"""The ONNX graph under construction: values with static shapes, nodes, initializers, and the
registry of layer translators.

A ``Val`` is one ONNX value: its name, its shape (an int per dimension, ``None`` where the
size is only known at run time, i.e. the batch) and its element type. Translators take the
engine module and its input values and emit nodes through ``Builder.op``; a layer returning
several tensors (an LSTM's ``output, (h_n, c_n)``) returns a tuple of values, exactly as the
module's forward returns a tuple of tensors.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import TensorProto, helper, numpy_helper

FLOAT = TensorProto.FLOAT
INT64 = TensorProto.INT64
BOOL = TensorProto.BOOL
OPSET = 17

Shape = tuple  # of int | None


class ExportError(Exception):
    """A module the ONNX exporter cannot translate; ``path`` is its qualified name in the model
    (``encoder.layers.0.self_attn``, empty for the model itself) and ``type_name`` its class."""

    def __init__(self, path: str, type_name: str, reason: str) -> None:
        self.path, self.type_name, self.reason = path, type_name, reason
        super().__init__(f"{path or 'the model'} ({type_name}) cannot be exported to ONNX: {reason}")


@dataclass(frozen=True)
class Val:
    name: str
    shape: Shape
    dtype: int = FLOAT

    @property
    def rank(self) -> int:
        return len(self.shape)


def axis(dim: int, rank: int) -> int:
    if not -rank <= dim < max(rank, 1):
        raise IndexError(f"dimension {dim} is out of range for a tensor of {rank} dimensions")
    return dim % rank if rank else 0


def broadcast(a: Shape, b: Shape) -> Shape:
    out = []
    for i in range(max(len(a), len(b))):
        x = a[len(a) - 1 - i] if i < len(a) else 1
        y = b[len(b) - 1 - i] if i < len(b) else 1
        if x == 1:
            out.append(y)
        elif y == 1 or y is None:
            out.append(x)
        else:
            out.append(y if x is None else x)
    return tuple(reversed(out))


def array(t: Any) -> np.ndarray:
    """An engine tensor (parameter or buffer) as a float32 numpy copy."""
    return np.array(np.asarray(t), dtype=np.float32)


class Builder:
    def __init__(self, opset: int = OPSET) -> None:
        self.opset = opset
        self.nodes: list = []
        self.initializers: list = []
        self._used: set[str] = set()
        self._consts: dict[tuple, Val] = {}

    def fresh(self, hint: str) -> str:
        base = hint or "v"
        name, i = base, 1
        while name in self._used:
            i += 1
            name = f"{base}_{i}"
        self._used.add(name)
        return name

    def reserve(self, name: str) -> None:
        if name in self._used:
            raise ValueError(f"the ONNX name {name!r} is taken")
        self._used.add(name)

    # constants -----------------------------------------------------------------------
    def const(self, value: np.ndarray, hint: str) -> Val:
        value = np.asarray(value)
        if value.dtype == np.float64:
            value = value.astype(np.float32)
        name = self.fresh(hint)
        tensor = numpy_helper.from_array(np.array(value, order="C"), name)
        self.initializers.append(tensor)
        dtype = helper.np_dtype_to_tensor_dtype(value.dtype)
        return Val(name, tuple(value.shape), dtype)

    def ints(self, values: Sequence[int], hint: str = "const") -> Val:
        key = ("i64", tuple(int(v) for v in values))
        if key not in self._consts:
            self._consts[key] = self.const(np.array(key[1], dtype=np.int64), hint)
        return self._consts[key]

    def scalar(self, value: float, dtype: int = FLOAT) -> Val:
        key = ("scalar", float(value), dtype)
        if key not in self._consts:
            np_type = helper.tensor_dtype_to_np_dtype(dtype)
            self._consts[key] = self.const(np.array(value, dtype=np_type), "scalar")
        return self._consts[key]

    # nodes ---------------------------------------------------------------------------
    def op(self, op_type: str, inputs: Sequence[Val | None], shape: Shape | None = None, *, hint: str = "",
           dtype: int | None = None, outputs: Sequence[tuple[Shape, int]] | None = None, **attrs: Any) -> Any:
        """Append one node; returns its output value (or the list of them with ``outputs``)."""
        names = ["" if v is None else v.name for v in inputs]
        while names and names[-1] == "":
            names.pop()
        if outputs is None:
            first = next(v for v in inputs if v is not None)
            outputs = [(shape, first.dtype if dtype is None else dtype)]
            single = True
        else:
            single = False
        stem = f"{hint}/{op_type}" if hint else op_type
        outs = [Val(self.fresh(f"{stem}:{i}" if len(outputs) > 1 else stem), tuple(s) if s is not None else None, d)
                for i, (s, d) in enumerate(outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(op_type, names, [o.name for o in outs], name=self.fresh("node:" + stem),
                                           **attrs))
        return outs[0] if single else outs

    # common sequences ----------------------------------------------------------------
    def unary(self, op_type: str, x: Val, hint: str = "", **attrs: Any) -> Val:
        return self.op(op_type, [x], x.shape, hint=hint, **attrs)

    def binary(self, op_type: str, x: Val, y: Val, hint: str = "") -> Val:
        return self.op(op_type, [x, y], broadcast(x.shape, y.shape), hint=hint)

    def add(self, x: Val, y: Val, hint: str = "") -> Val:
        return self.binary("Add", x, y, hint)

    def mul(self, x: Val, y: Val, hint: str = "") -> Val:
        return self.binary("Mul", x, y, hint)

    def scale(self, x: Val, factor: float, hint: str = "") -> Val:
        return self.mul(x, self.scalar(factor), hint)

    def transpose(self, x: Val, perm: Sequence[int], hint: str = "") -> Val:
        perm = [int(p) for p in perm]
        return self.op("Transpose", [x], tuple(x.shape[p] for p in perm), hint=hint, perm=perm)

    def reshape(self, x: Val, target: Sequence[int | None], hint: str = "") -> Val:
        """Reshape to ``target``: ints are sizes (one may be -1), ``None`` a run-time size: copied
        (ONNX's 0) where the target still agrees with the input's leading dimensions (the
        batch), else inferred (-1)."""
        spec, shape, unknown = [], [], 0
        prefix = True
        for i, t in enumerate(target):
            prefix = prefix and i < x.rank and t == x.shape[i]
            if t is None:
                if prefix:
                    spec.append(0)
                else:
                    spec.append(-1)
                    unknown += 1
                shape.append(None)
            else:
                spec.append(int(t))
                unknown += int(t) == -1
                shape.append(None if t == -1 else int(t))
        if unknown > 1:
            raise ValueError(f"cannot reshape {fmt(x.shape)} to {fmt(tuple(target))}: several run-time sizes")
        if -1 in spec and None not in x.shape:  # all sizes known: resolve the -1
            known = int(np.prod([s for s in spec if s > 0], dtype=np.int64)) or 1
            total = int(np.prod(x.shape, dtype=np.int64))
            shape[spec.index(-1)] = total // known
        return self.op("Reshape", [x, self.ints(spec, "shape")], tuple(shape), hint=hint)

    def unsqueeze(self, x: Val, axes: Sequence[int], hint: str = "") -> Val:
        rank = x.rank + len(axes)
        norm = sorted(axis(a, rank) for a in axes)
        shape = list(x.shape)
        for a in norm:
            shape.insert(a, 1)
        return self.op("Unsqueeze", [x, self.ints(norm, "axes")], tuple(shape), hint=hint)

    def squeeze(self, x: Val, axes: Sequence[int], hint: str = "") -> Val:
        norm = sorted(axis(a, x.rank) for a in axes)
        shape = tuple(s for i, s in enumerate(x.shape) if i not in norm)
        return self.op("Squeeze", [x, self.ints(norm, "axes")], shape, hint=hint)

    def reduce(self, op_type: str, x: Val, axes: Sequence[int] | None, keepdims: bool, hint: str = "") -> Val:
        """ReduceMean/ReduceSum/ReduceMax over ``axes`` (all of them when None)."""
        norm = sorted(axis(a, x.rank) for a in axes) if axes is not None else list(range(x.rank))
        shape = tuple(1 if i in norm else s for i, s in enumerate(x.shape) if keepdims or i not in norm)
        as_input = op_type == "ReduceSum" or self.opset >= 18
        if axes is None:
            return self.op(op_type, [x], shape, hint=hint, keepdims=int(keepdims))
        if as_input:
            return self.op(op_type, [x, self.ints(norm, "axes")], shape, hint=hint, keepdims=int(keepdims))
        return self.op(op_type, [x], shape, hint=hint, axes=norm, keepdims=int(keepdims))

    def slice(self, x: Val, ax: int, start: int, end: int, hint: str = "") -> Val:
        ax = axis(ax, x.rank)
        size = x.shape[ax]
        shape = list(x.shape)
        if size is not None:
            shape[ax] = len(range(*slice(start, end).indices(size)))
        else:
            shape[ax] = end - start if start >= 0 and end >= 0 else None
        return self.op("Slice", [x, self.ints([start], "starts"), self.ints([end], "ends"), self.ints([ax], "axes")],
                       tuple(shape), hint=hint)

    def concat(self, xs: Sequence[Val], ax: int, hint: str = "") -> Val:
        ax = axis(ax, xs[0].rank)
        sizes = [x.shape[ax] for x in xs]
        shape = list(xs[0].shape)
        shape[ax] = None if None in sizes else sum(sizes)
        return self.op("Concat", list(xs), tuple(shape), hint=hint, axis=ax)

    def matmul_const(self, x: Val, w: np.ndarray, bias: np.ndarray | None, hint: str, wname: str) -> Val:
        """x @ w (+ bias) for a constant (in, out) matrix; Gemm when x is a matrix."""
        out_shape = x.shape[:-1] + (w.shape[1],)
        wv = self.const(w, wname)
        bv = self.const(bias, wname + ".bias") if bias is not None else None
        if x.rank == 2:
            return self.op("Gemm", [x, wv, bv], out_shape, hint=hint)
        y = self.op("MatMul", [x, wv], out_shape, hint=hint)
        return self.add(y, bv, hint) if bv is not None else y


def fmt(shape: Shape) -> str:
    return "[" + ", ".join("N" if s is None else str(s) for s in shape) + "]"


Translator = Callable[[Builder, Any, list, str], Any]
TRANSLATORS: dict[type, Translator] = {}


def translator(*types: type) -> Callable[[Translator], Translator]:
    """Register the function translating modules of exactly these classes."""

    def register(fn: Translator) -> Translator:
        for t in types:
            TRANSLATORS[t] = fn
        return fn

    return register


def type_name(module: Any) -> str:
    return type(module).__name__


def child(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def tensor_arg(module: Any, args: list, path: str, count: int = 1) -> list[Val]:
    """The module's inputs, checked to be ``count`` single tensors."""
    if len(args) != count:
        raise ExportError(path, type_name(module), f"takes {count} input{'s' if count > 1 else ''} here, "
                                                   f"got {len(args)}")
    for a in args:
        if not isinstance(a, Val):
            raise ExportError(path, type_name(module), "receives several tensors; pick one with 'getitem' first")
    return list(args)


def translate(b: Builder, module: Any, args: list, path: str) -> Any:
    """Emit ``module`` applied to ``args``; its translator, or an ExportError naming it."""
    fn = TRANSLATORS.get(type(module))
    if fn is None:
        raise ExportError(path, type_name(module), "no ONNX translation for this layer type")
    try:
        return fn(b, module, args, path)
    except ExportError:
        raise
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise ExportError(path, type_name(module), str(exc)) from exc


def need_rank(module: Any, x: Val, ranks: Sequence[int], path: str, what: str) -> None:
    if x.rank not in ranks:
        raise ExportError(path, type_name(module), f"expects a batched {what} input ({' or '.join(map(str, ranks))}"
                                                   f" dimensions), got shape {fmt(x.shape)}")
