"""Shape ops: view/reshape, permute, transpose, squeeze/unsqueeze, flatten/unflatten, expand,
repeat/tile, cat/stack, split/chunk/unbind, narrow, flip, roll, tril/triu, pad, contiguous.

Views (reshape of a contiguous array, permute, expand, narrow) share memory and the
version counter with their input, as torch's views do.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from engine.autograd.grad_mode import STATE
from engine.ops._util import as_t, attach, mark_view, named, norm_dim, prep2, wrap, xp_of
from engine.tensor import Tensor

__all__ = [
    "atleast_1d",
    "broadcast_tensors",
    "broadcast_to",
    "cat",
    "chunk",
    "clone",
    "concat",
    "concatenate",
    "contiguous",
    "expand",
    "expand_as",
    "flatten",
    "flip",
    "hstack",
    "meshgrid",
    "movedim",
    "narrow",
    "pad",
    "permute",
    "repeat",
    "reshape",
    "reshape_as",
    "roll",
    "split",
    "squeeze",
    "stack",
    "swapaxes",
    "t",
    "tile",
    "transpose",
    "tril",
    "triu",
    "unbind",
    "unflatten",
    "unsqueeze",
    "view",
    "view_as",
    "vstack",
]


def _shape_arg(shape: tuple) -> tuple:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int(s) for s in shape)


def _infer(shape: tuple, numel: int) -> tuple:
    if -1 not in shape:
        n = 1
        for s in shape:
            n *= s
        if n != numel:
            raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
        return shape
    if shape.count(-1) > 1:
        raise RuntimeError("only one dimension can be inferred")
    known = 1
    for s in shape:
        if s != -1:
            known *= s
    if known == 0 or numel % known:
        raise RuntimeError(f"shape '{list(shape)}' is invalid for input of size {numel}")
    return tuple(numel // known if s == -1 else s for s in shape)


def _view_of(r: Tensor, t: Tensor) -> Tensor:
    """Share the version counter when ``r``'s array is a view of ``t``'s."""
    if r._data.base is not None and (r._data.base is t._data or r._data.base is t._data.base):
        r._vc = t._vc
    return r


def reshape(input: Tensor, *shape: Any) -> Tensor:
    d = input._data
    new = _infer(_shape_arg(shape), d.size)
    if new == d.shape:
        r = wrap(d.view())
        r._vc = input._vc
    else:
        r = _view_of(wrap(d.reshape(new)), input)
    if r._vc is input._vc:
        mark_view(r, input, lambda b: reshape(b, new))
    if STATE.enabled and input._rg:
        old = d.shape
        attach(r, (input,), lambda g, _: (reshape(g, old),), "ViewBackward0")
    return r


def view(input: Tensor, *shape: Any) -> Tensor:
    """reshape that never copies: raises where torch's view does."""
    if len(shape) == 1 and not isinstance(shape[0], (int, tuple, list, np.integer)):
        return input.to(shape[0])  # view(dtype) is out of scope; treat as a cast
    d = input._data
    new = _infer(_shape_arg(shape), d.size)
    if d.size and new != d.shape and not d.flags.c_contiguous:
        try:
            v = d.view()
            v.shape = new
        except AttributeError:
            raise RuntimeError("view size is not compatible with input tensor's size and stride "
                               "(at least one dimension spans across two contiguous subspaces). "
                               "Use .reshape(...) instead.") from None
    return reshape(input, new)


def view_as(input: Tensor, other: Tensor) -> Tensor:
    return view(input, other.shape)


def reshape_as(input: Tensor, other: Tensor) -> Tensor:
    return reshape(input, other.shape)


def flatten(input: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    nd = input._data.ndim
    if nd == 0:
        return reshape(input, (1,))
    s, e = norm_dim(start_dim, nd), norm_dim(end_dim, nd)
    if s > e:
        raise RuntimeError("flatten() has invalid args: start_dim cannot come after end_dim")
    shp = input._data.shape
    n = 1
    for k in shp[s:e + 1]:
        n *= k
    return reshape(input, shp[:s] + (n,) + shp[e + 1:])


def unflatten(input: Tensor, dim: int, sizes: Sequence[int]) -> Tensor:
    shp = input._data.shape
    dim = norm_dim(dim, len(shp))
    sizes = _infer(tuple(sizes), shp[dim])
    return reshape(input, shp[:dim] + sizes + shp[dim + 1:])


def permute(input: Tensor, *dims: Any) -> Tensor:
    nd = input._data.ndim
    dims = _shape_arg(dims)
    if len(dims) != nd:
        raise RuntimeError(f"permute(sparse_coo): number of dimensions in the tensor input does "
                           f"not match the length of the desired ordering of dimensions i.e. "
                           f"input.dim() = {nd} is not equal to len(dims) = {len(dims)}")
    dims = tuple(norm_dim(d, nd) for d in dims)
    if len(set(dims)) != nd:
        raise RuntimeError("permute(): duplicate dims are not allowed.")
    r = wrap(input._data.transpose(dims))
    r._vc = input._vc
    mark_view(r, input, lambda b: permute(b, dims))
    if STATE.enabled and input._rg:
        inv = tuple(np.argsort(dims).tolist())
        attach(r, (input,), lambda g, _: (permute(g, inv),), "PermuteBackward0")
    return r


def transpose(input: Tensor, dim0: int, dim1: int) -> Tensor:
    nd = input._data.ndim
    if nd == 0:
        norm_dim(dim0, 0), norm_dim(dim1, 0)
        return reshape(input, ())
    perm = list(range(nd))
    a, b = norm_dim(dim0, nd), norm_dim(dim1, nd)
    perm[a], perm[b] = perm[b], perm[a]
    return named(permute(input, perm), "TransposeBackward0")


swapaxes = transpose


def t(input: Tensor) -> Tensor:
    nd = input._data.ndim
    if nd > 2:
        raise RuntimeError(f"t() expects a tensor with <= 2 dimensions, but self is {nd}D")
    return named(transpose(input, 0, 1) if nd == 2 else reshape(input, input._data.shape),
                 "TBackward0")


def movedim(input: Tensor, source: Any, destination: Any) -> Tensor:
    nd = input._data.ndim
    src = [norm_dim(s, nd) for s in ((source,) if isinstance(source, int) else source)]
    dst = [norm_dim(s, nd) for s in ((destination,) if isinstance(destination, int) else destination)]
    order = [i for i in range(nd) if i not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return permute(input, order)


def squeeze(input: Tensor, dim: Any = None) -> Tensor:
    shp = input._data.shape
    if dim is None:
        new = tuple(s for s in shp if s != 1)
    else:
        dims = (dim,) if isinstance(dim, int) else tuple(dim)
        dims = {norm_dim(d, len(shp)) for d in dims}
        new = tuple(s for i, s in enumerate(shp) if not (i in dims and s == 1))
    return named(reshape(input, new), "SqueezeBackward0" if dim is None else
                 "SqueezeBackward1" if isinstance(dim, int) else "SqueezeBackward2")


def unsqueeze(input: Tensor, dim: int) -> Tensor:
    shp = input._data.shape
    dim = norm_dim(dim, len(shp) + 1)
    return named(reshape(input, shp[:dim] + (1,) + shp[dim:]), "UnsqueezeBackward0")


def expand(input: Tensor, *sizes: Any) -> Tensor:
    """Broadcast to ``sizes`` without copying (-1 keeps a size); the gradient sums back."""
    sizes = _shape_arg(sizes)
    shp = input._data.shape
    if len(sizes) < len(shp):
        raise RuntimeError(f"expand(torch.FloatTensor{{{list(shp)}}}, size={list(sizes)}): the "
                           "number of sizes provided must be greater or equal to the number of "
                           "dimensions in the tensor")
    off = len(sizes) - len(shp)
    target = tuple(shp[i - off] if (s == -1 and i >= off) else s for i, s in enumerate(sizes))
    if target == shp:
        return reshape(input, shp)
    xp = xp_of(input)
    try:
        arr = xp.broadcast_to(input._data, target)
    except ValueError:
        raise RuntimeError(f"The expanded size of the tensor must match the existing size at "
                           f"non-singleton dimension. Target sizes: {list(sizes)}. Tensor "
                           f"sizes: {list(shp)}") from None
    r = wrap(arr)
    r._vc = input._vc
    if STATE.enabled and input._rg:
        from engine.ops._util import unbroadcast

        attach(r, (input,), lambda g, _: (unbroadcast(g, shp),), "ExpandBackward0")
    return r


def expand_as(input: Tensor, other: Tensor) -> Tensor:
    return expand(input, other.shape)


def broadcast_to(input: Tensor, size: Sequence[int]) -> Tensor:
    return expand(input, tuple(size))


def broadcast_tensors(*tensors: Tensor) -> tuple:
    shape = np.broadcast_shapes(*(x.shape for x in tensors))
    return tuple(expand(x, shape) for x in tensors)


def contiguous(input: Tensor, memory_format: Any = None) -> Tensor:
    d = input._data
    if d.flags.c_contiguous:
        return input
    r = wrap(xp_of(input).ascontiguousarray(d))
    if STATE.enabled and input._rg:
        attach(r, (input,), lambda g, _: (g,), "CloneBackward0")
    return r


def clone(input: Tensor, *, memory_format: Any = None) -> Tensor:
    r = wrap(input._data.copy())
    if STATE.enabled and input._rg:
        attach(r, (input,), lambda g, _: (g,), "CloneBackward0")
    return r


def repeat(input: Tensor, *sizes: Any) -> Tensor:
    """Tile the tensor ``sizes`` times along each dim (torch.Tensor.repeat)."""
    sizes = _shape_arg(sizes)
    shp = input._data.shape
    if len(sizes) < len(shp):
        raise RuntimeError("Number of dimensions of repeat dims can not be smaller than number "
                           "of dimensions of tensor")
    off = len(sizes) - len(shp)
    full = (1,) * off + shp
    r = wrap(xp_of(input).tile(input._data.reshape(full), sizes))
    if STATE.enabled and input._rg:
        def bw(g, _):
            # split each dim k into (sizes[k], full[k]) and sum over the repeat axes
            inter = []
            for s, n in zip(sizes, full):
                inter += [s, n]
            gr = g.reshape(tuple(inter)).sum(tuple(range(0, 2 * len(sizes), 2)))
            return (gr.reshape(shp),)
        attach(r, (input,), bw, "RepeatBackward0")
    return r


def tile(input: Tensor, dims: Sequence[int]) -> Tensor:
    dims = tuple(dims)
    nd = input._data.ndim
    if len(dims) < nd:
        dims = (1,) * (nd - len(dims)) + dims
    return repeat(input, dims)


def cat(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    """Concatenate along ``dim`` (dtypes promoted; 1-d empty tensors are skipped, as torch)."""
    tensors = [as_t(x) for x in tensors]
    if not tensors:
        raise RuntimeError("torch.cat(): expected a non-empty list of Tensors")
    keep = [x for x in tensors if not (x._data.ndim == 1 and x._data.shape[0] == 0)] or tensors[:1]
    nd = keep[0]._data.ndim
    if nd == 0:
        raise RuntimeError("zero-dimensional tensor (at position 0) cannot be concatenated")
    dim = norm_dim(dim, nd)
    from engine.dtypes import result_type

    rt = result_type(*keep).np
    xp = xp_of(keep[0])
    arrays = [x._data if x._data.dtype == rt else x._data.astype(rt) for x in keep]
    try:
        r = wrap(xp.concatenate(arrays, axis=dim))
    except ValueError as e:
        raise RuntimeError(f"Sizes of tensors must match except in dimension {dim}: {e}") from None
    if STATE.enabled and any(x._rg for x in keep):
        bounds = np.cumsum([0] + [x._data.shape[dim] for x in keep]).tolist()

        def bw(g, _):
            return tuple(narrow(g, dim, bounds[i], bounds[i + 1] - bounds[i]).to(x.dtype)
                         if x._rg else None for i, x in enumerate(keep))
        attach(r, keep, bw, "CatBackward0")
    return r


concat = cat
concatenate = cat


def stack(tensors: Sequence[Tensor], dim: int = 0) -> Tensor:
    tensors = [as_t(x) for x in tensors]
    if not tensors:
        raise RuntimeError("stack expects a non-empty TensorList")
    s0 = tensors[0]._data.shape
    for i, x in enumerate(tensors):
        if x._data.shape != s0:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got {list(s0)} "
                               f"at entry 0 and {list(x._data.shape)} at entry {i}")
    dim = norm_dim(dim, len(s0) + 1)
    return named(cat([unsqueeze(x, dim) for x in tensors], dim), "StackBackward0")


def hstack(tensors: Sequence[Tensor]) -> Tensor:
    tensors = [atleast_1d(x) for x in tensors]
    return cat(tensors, 0 if tensors[0]._data.ndim == 1 else 1)


def vstack(tensors: Sequence[Tensor]) -> Tensor:
    return cat([x.reshape(1, -1) if x._data.ndim < 2 else x for x in tensors], 0)


def atleast_1d(x: Tensor) -> Tensor:
    return reshape(x, (1,)) if x._data.ndim == 0 else x


def narrow(input: Tensor, dim: int, start: int, length: int) -> Tensor:
    """A view of ``length`` entries of ``dim`` from ``start``."""
    d = input._data
    dim = norm_dim(dim, d.ndim)
    n = d.shape[dim]
    if start < 0:
        start += n
    if not (0 <= start and start + length <= n and length >= 0):
        raise RuntimeError(f"start ({start}) + length ({length}) exceeds dimension size ({n}).")
    key = (slice(None),) * dim + (slice(start, start + length),)
    r = wrap(d[key])
    r._vc = input._vc
    mark_view(r, input, lambda b: narrow(b, dim, start, length))
    if STATE.enabled and input._rg:
        shp = d.shape

        def bw(g, _):
            widths = [(0, 0)] * len(shp)
            widths[dim] = (start, n - start - length)
            return (pad_widths(g, widths),)
        attach(r, (input,), bw, "SliceBackward0")  # torch's narrow is a slice
    return r


def split(tensor: Tensor, split_size_or_sections: Any, dim: int = 0) -> tuple:
    d = tensor._data
    dim = norm_dim(dim, d.ndim)
    n = d.shape[dim]
    if isinstance(split_size_or_sections, int):
        s = split_size_or_sections
        sizes = [s] * (n // s) + ([n % s] if n % s else []) if s else [0]
        if n == 0:
            sizes = [0]
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise RuntimeError(f"split_with_sizes expects split_sizes to sum exactly to {n} "
                               f"(input tensor's size at dimension {dim}), but got split_sizes="
                               f"{sizes}")
    out, start = [], 0
    name = "SplitBackward0" if isinstance(split_size_or_sections, int) else \
        "SplitWithSizesBackward0"
    for s in sizes:
        out.append(named(narrow(tensor, dim, start, s), name))
        start += s
    return tuple(out)


def chunk(input: Tensor, chunks: int, dim: int = 0) -> tuple:
    n = input._data.shape[norm_dim(dim, input._data.ndim)]
    size = -(-n // chunks) if n else 0
    if size == 0:
        return tuple(narrow(input, dim, 0, 0) for _ in range(1 if n == 0 else chunks))
    return split(input, size, dim)


def unbind(input: Tensor, dim: int = 0) -> tuple:
    dim = norm_dim(dim, input._data.ndim)
    return tuple(named(squeeze(narrow(input, dim, i, 1), dim), "UnbindBackward0")
                 for i in range(input._data.shape[dim]))


def flip(input: Tensor, dims: Any) -> Tensor:
    nd = input._data.ndim
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    dims = tuple(norm_dim(d, nd) for d in dims)
    r = wrap(xp_of(input).flip(input._data, dims).copy() if dims else input._data.copy())
    if STATE.enabled and input._rg:
        attach(r, (input,), lambda g, _: (flip(g, dims),), "FlipBackward0")
    return r


def roll(input: Tensor, shifts: Any, dims: Any = None) -> Tensor:
    xp = xp_of(input)
    if dims is None:
        r = wrap(xp.roll(input._data.reshape(-1), shifts).reshape(input._data.shape))
    else:
        r = wrap(xp.roll(input._data, shifts, dims))
    if STATE.enabled and input._rg:
        neg = tuple(-s for s in shifts) if isinstance(shifts, (tuple, list)) else -shifts
        attach(r, (input,), lambda g, _: (roll(g, neg, dims),), "RollBackward0")
    return r


def _tri(input: Tensor, diagonal: int, upper: bool) -> Tensor:
    d = input._data
    if d.ndim < 2:
        raise RuntimeError(f"{'triu' if upper else 'tril'}: input tensor must have at least 2 "
                           "dimensions")
    xp = xp_of(input)
    r = wrap(xp.triu(d, diagonal) if upper else xp.tril(d, diagonal))
    if STATE.enabled and input._rg:
        attach(r, (input,), lambda g, _: (_tri(g, diagonal, upper),),
               "TriuBackward0" if upper else "TrilBackward0")
    return r


def tril(input: Tensor, diagonal: int = 0) -> Tensor:
    return _tri(input, diagonal, False)


def triu(input: Tensor, diagonal: int = 0) -> Tensor:
    return _tri(input, diagonal, True)


def pad_widths(g: Tensor, widths: list) -> Tensor:
    """Zero-pad ``g`` by ((before, after), ...) per dim; differentiable (the gradient slices)."""
    xp = xp_of(g)
    r = wrap(xp.pad(g._data, widths))
    if STATE.enabled and g._rg:
        key = tuple(slice(b, b + n) for (b, _), n in zip(widths, g._data.shape))
        attach(r, (g,), lambda gg, _: (gg[key],), "ConstantPadNdBackward0")
    return r


_PAD_MODES = ("constant", "reflect", "replicate", "circular")


def pad(input: Tensor, pad: Sequence[int], mode: str = "constant", value: float | None = None) -> Tensor:
    """torch.nn.functional.pad: ``pad`` lists (left, right) pairs from the last dim backwards.

    Modes constant (negative pads crop; ``value`` is cast to the input's dtype), reflect,
    replicate and circular, with torch's argument checks and error messages. Unlike torch,
    the non-constant modes also take any number of padded dims on any input rank.
    """
    if mode not in _PAD_MODES:
        raise NotImplementedError(f"Unrecognised padding mode {mode}")
    pad = _pad_ints(pad)
    if len(pad) % 2:
        raise RuntimeError("Padding length must be divisible by 2")
    shape = input._data.shape
    nd, k = len(shape), len(pad) // 2
    if k > nd:
        raise RuntimeError("Padding length should be less than or equal to two times the input dimension "
                           f"but got padding length {len(pad)} and input of dimension {nd}")
    widths = [(0, 0)] * nd
    for j in range(k):
        widths[nd - 1 - j] = (pad[2 * j], pad[2 * j + 1])
    if mode == "constant":
        for (b, a), n in zip(widths, shape):
            if n + min(b, 0) < 0 or n + min(b, 0) + a < 0:
                raise RuntimeError("narrow(): length must be non-negative.")
        return _constant_pad(input, widths, 0 if value is None else value)
    if value is not None and value != 0:
        raise RuntimeError(f'Padding mode "{mode}" doesn\'t take in value argument')
    if mode == "circular":
        for (b, a), n in zip(widths, shape):
            if b > n or a > n:
                raise RuntimeError("Padding value causes wrapping around more than once.")
            if n + b + a < 0 or (n - max(-b, 0) - max(-a, 0) <= 0 < n + b + a):
                raise RuntimeError("Negative padding value is resulting in an empty dimension")
        return _index_pad(input, widths, mode, "torch::autograd::CopySlices")  # torch's name()
    if k and any(n == 0 for n in shape[-(k + 1):]):
        raise RuntimeError(f"Expected {k + 1}D or {k + 2}D (batch mode) tensor with possibly 0 batch size and "
                           f"other non-zero dimensions for input, but got: {list(shape)}")
    if mode == "reflect":
        for j in range(k):
            ax = nd - 1 - j
            (b, a), n = widths[ax], shape[ax]
            if b >= n or a >= n:
                raise RuntimeError(f"Argument #{4 + 2 * j}: Padding size should be less than the corresponding "
                                   f"input dimension, but got: padding ({b}, {a}) at dimension {ax} of input "
                                   f"{list(shape)}")
    out = [n + b + a for (b, a), n in zip(widths, shape)][nd - k:]
    if k and (all(o < 1 for o in out) or any(o < 0 for o in out)):
        names = ("D", "H", "W")[-k:] if k <= 3 else [f"dim{ax}" for ax in range(nd - k, nd)]
        raise RuntimeError(f"input ({', '.join(f'{c}: {n}' for c, n in zip(names, shape[nd - k:]))}) is too "
                           f"small. Calculated output {' '.join(f'{c}: {o}' for c, o in zip(names, out))}")
    kind = "Reflection" if mode == "reflect" else "Replication"
    return _index_pad(input, widths, mode, f"{kind}Pad{k}DBackward0")


def _pad_ints(pad: Any) -> list:
    out = list(pad)
    for i, p in enumerate(out):
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)):
            raise TypeError("pad(): argument 'pad' (position 2) must be tuple of ints, but found element of "
                            f"type {type(p).__name__} at pos {i}")
        out[i] = int(p)
    return out


def _constant_pad(input: Tensor, widths: list, value: Any) -> Tensor:
    """``input`` cropped by the negative and padded with ``value`` by the positive widths.

    The gradient is the constant pad of the incoming gradient by the negated widths."""
    d = input._data
    if any(b < 0 or a < 0 for b, a in widths):
        d = d[tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(widths, d.shape))]
    grow = [(max(b, 0), max(a, 0)) for b, a in widths]
    xp = xp_of(input)
    r = wrap(xp.pad(d, grow, constant_values=value) if value != 0 else xp.pad(d, grow))
    if STATE.enabled and input._rg:
        back = [(-b, -a) for b, a in widths]
        attach(r, (input,), lambda g, _: (_constant_pad(g, back, 0),), "ConstantPadNdBackward0")
    return r


def _index_pad(input: Tensor, widths: list, mode: str, name: str) -> Tensor:
    """Reflect, replicate or circular padding; the gradient sums through the map of source entries."""
    d = input._data
    xp = xp_of(input)
    apply = _index_pad_fn(xp, widths, d.shape, mode)
    r = wrap(apply(d))
    if STATE.enabled and input._rg:
        idx = apply(xp.arange(d.size, dtype=np.int64).reshape(d.shape))  # flat source of each output
        attach(r, (input,), lambda g, _: (_scatter_flat(g, idx, d.shape, name),), name)
    return r


def _index_pad_fn(xp: Any, widths: list, shape: tuple, mode: str) -> Any:
    """The padding as a function of an array of ``shape`` (the data, or the map of its flat indices)."""
    crop = tuple(slice(max(-b, 0), n - max(-a, 0)) for (b, a), n in zip(widths, shape))
    grow = [(max(b, 0), max(a, 0)) for b, a in widths]
    if (mode == "circular" or (mode == "replicate" and all(s.start < s.stop for s in crop))
            or all(b >= 0 and a >= 0 for b, a in widths)):
        # crop by the negative pads, then xp.pad (replicate and circular act on the kept part, as torch)
        np_mode = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}[mode]
        return lambda arr: xp.pad(arr[crop], grow, mode=np_mode)
    # reflect (replicate) with negative pads reflects about (repeats) the original edges
    takes = []
    for ax, ((b, a), n) in enumerate(zip(widths, shape)):
        if b or a:
            pos = np.arange(-b, n + a)
            if mode == "reflect":
                period = 2 * (n - 1) if n > 1 else 1
                pos = np.abs(pos) % period
                pos = np.where(pos >= n, period - pos, pos)
            takes.append((ax, xp.asarray(np.clip(pos, 0, n - 1))))

    def apply(arr: Any) -> Any:
        for ax, pos in takes:
            arr = xp.take(arr, pos, axis=ax)
        return arr
    return apply


def _gather_flat(x: Tensor, idx: Any, name: str) -> Tensor:
    """``x.flatten()[idx]``, the double backward of the index pads (its backward is _scatter_flat)."""
    r = wrap(x._data.reshape(-1)[idx])
    if STATE.enabled and x._rg:
        shape = x._data.shape
        attach(r, (x,), lambda g, _: (_scatter_flat(g, idx, shape, name),), name)
    return r


def _scatter_flat(g: Tensor, idx: Any, shape: tuple, name: str) -> Tensor:
    """The gradient of an index pad: ``g``'s entries summed into the ``shape`` entries ``idx`` names."""
    xp = xp_of(g)
    n = int(np.prod(shape))
    gd = g._data
    r = wrap(xp.bincount(idx.reshape(-1), weights=gd.reshape(-1), minlength=n)
             .astype(gd.dtype, copy=False).reshape(shape))
    if STATE.enabled and g._rg:
        attach(r, (g,), lambda gg, _: (_gather_flat(gg, idx, name),), name.replace("Backward0", "BackwardBackward0"))
    return r


def meshgrid(*tensors: Tensor, indexing: str = "ij") -> tuple:
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    n = len(tensors)
    sizes = [x.numel() for x in tensors]
    if indexing == "xy" and n >= 2:
        sizes[0], sizes[1] = sizes[1], sizes[0]
    out = []
    for i, x in enumerate(tensors):
        shp = [1] * n
        pos = i
        if indexing == "xy" and n >= 2 and i < 2:
            pos = 1 - i
        shp[pos] = -1
        out.append(expand(reshape(x, tuple(shp)), tuple(sizes)))
    return tuple(out)


_ = prep2
