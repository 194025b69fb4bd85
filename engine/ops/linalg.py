"""Linear algebra: matmul/@ (batched, broadcasting), mm, bmm, mv, dot, outer, einsum.

matmul's backward is two matmuls on transposed views (BLAS takes the transpose
flags, no copies), with the batch dims of a broadcast operand summed back.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine.amp import _policy as _amp
from engine.autograd.grad_mode import STATE
from engine.ops._util import attach, named, prep2, raw_sum_to, unbroadcast, wrap, xp_of
from engine.tensor import Tensor

__all__ = [
    "bmm",
    "dot",
    "einsum",
    "ger",
    "inner",
    "linear",
    "matmul",
    "mm",
    "mv",
    "outer",
    "tensordot",
    "vdot",
]


def _mT(x: Tensor) -> Tensor:
    return x.transpose(-2, -1)


def matmul(input: Tensor, other: Tensor) -> Tensor:
    """torch.matmul: dot, matrix-vector, matrix-matrix and broadcast batched products."""
    if _amp.ACTIVE:
        input, other = _amp.lower("matmul", input, other)
    if not isinstance(input, Tensor) or not isinstance(other, Tensor):
        raise TypeError("matmul(): argument 'input' and 'other' must be Tensor")
    a, b = input._data, other._data
    if a.ndim == 0 or b.ndim == 0:
        raise RuntimeError(f"both arguments to matmul need to be at least 1D, but they are "
                           f"{a.ndim}D and {b.ndim}D")
    if a.dtype != b.dtype:
        raise RuntimeError(f"expected m1 and m2 to have the same dtype, but got: "
                           f"{input.dtype.name} != {other.dtype.name}")
    try:
        out = a @ b if a.dtype.kind == "f" else (a @ b).astype(a.dtype, copy=False)
    except ValueError:
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({_fmt(a)} and "
                           f"{_fmt(b)})") from None
    if out.ndim == 0 and type(out) is not type(a):
        out = xp_of(input).asarray(out)
    r = wrap(out)
    if STATE.enabled and (input._rg or other._rg):
        ta, tb = input, other

        def bw(g, _):
            if not STATE.enabled:
                return _matmul_bw_fast(g._data, ta, tb)
            ga = gb = None
            an, bn = ta._data.ndim, tb._data.ndim
            if an == 1 and bn == 1:
                ga = g * tb if ta._rg else None
                gb = g * ta if tb._rg else None
                return ga, gb
            A = ta.unsqueeze(0) if an == 1 else ta
            B = tb.unsqueeze(-1) if bn == 1 else tb
            G = g
            if an == 1:
                G = G.unsqueeze(-2)
            if bn == 1:
                G = G.unsqueeze(-1)
            if ta._rg:
                ga = matmul(G, _mT(B))
                if an == 1:
                    ga = unbroadcast(ga, (1,) + ta._data.shape).reshape(ta._data.shape)
                else:
                    ga = unbroadcast(ga, ta._data.shape)
            if tb._rg:
                gb = matmul(_mT(A), G)
                if bn == 1:
                    gb = unbroadcast(gb, tb._data.shape + (1,)).reshape(tb._data.shape)
                else:
                    gb = unbroadcast(gb, tb._data.shape)
            return ga, gb
        attach(r, (input, other), bw, "MmBackward0" if a.ndim == b.ndim == 2 else
               "MatmulBackward0", saved=(input, other))
    return r


def _matmul_bw_fast(g: Any, ta: Tensor, tb: Tensor) -> tuple:
    """matmul's backward on arrays (nothing recorded): each gradient is one BLAS call on
    transposed views into a fresh C-contiguous output, which the engine then owns (a leaf
    takes it as ``.grad`` without a copy); broadcast batch dims are summed back."""
    a, b = ta._data, tb._data
    an, bn = a.ndim, b.ndim
    xp = xp_of(ta)
    if an == 1 and bn == 1:
        return (g * b if ta._rg else None), (g * a if tb._rg else None)
    A = a[None, :] if an == 1 else a
    B = b[:, None] if bn == 1 else b
    G = g
    if an == 1:
        G = G[..., None, :]
    if bn == 1:
        G = G[..., None]
    ga = gb = None
    if ta._rg:
        ga = xp.matmul(G, xp.swapaxes(B, -1, -2))
        ga = raw_sum_to(ga, (1,) + a.shape).reshape(a.shape) if an == 1 else \
            raw_sum_to(ga, a.shape)
    if tb._rg:
        gb = xp.matmul(xp.swapaxes(A, -1, -2), G)
        gb = raw_sum_to(gb, b.shape + (1,)).reshape(b.shape) if bn == 1 else \
            raw_sum_to(gb, b.shape)
    return ga, gb


def _fmt(a: Any) -> str:
    s = a.shape if a.ndim > 1 else (1,) + a.shape
    return f"{s[-2]}x{s[-1]}"


def mm(input: Tensor, mat2: Tensor) -> Tensor:
    if input._data.ndim != 2 or mat2._data.ndim != 2:
        raise RuntimeError("self must be a matrix" if input._data.ndim != 2 else
                           "mat2 must be a matrix")
    return matmul(input, mat2)


def bmm(input: Tensor, mat2: Tensor) -> Tensor:
    if input._data.ndim != 3 or mat2._data.ndim != 3:
        raise RuntimeError("batch1 must be a 3D tensor" if input._data.ndim != 3 else
                           "batch2 must be a 3D tensor")
    if input._data.shape[0] != mat2._data.shape[0]:
        raise RuntimeError("batch1 and batch2 must have same number of batches")
    return named(matmul(input, mat2), "BmmBackward0")


def mv(input: Tensor, vec: Tensor) -> Tensor:
    if input._data.ndim != 2 or vec._data.ndim != 1:
        raise RuntimeError("vector + matrix @ vector expected")
    return named(matmul(input, vec), "MvBackward0")


def dot(input: Tensor, other: Tensor) -> Tensor:
    if input._data.ndim != 1 or other._data.ndim != 1:
        raise RuntimeError(f"1D tensors expected, but got {input._data.ndim}D and "
                           f"{other._data.ndim}D tensors")
    if input._data.shape != other._data.shape:
        raise RuntimeError("inconsistent tensor size, expected tensor "
                           f"[{input._data.shape[0]}] and src [{other._data.shape[0]}] to have "
                           "the same number of elements, but got "
                           f"{input._data.shape[0]} and {other._data.shape[0]} elements "
                           "respectively")
    return named(matmul(input, other), "DotBackward0")


vdot = dot
inner_dot = dot


def inner(input: Tensor, other: Tensor) -> Tensor:
    if input._data.ndim == 0 or other._data.ndim == 0:
        return input * other
    return matmul(input, _mT(other) if other._data.ndim > 1 else other) if other._data.ndim <= 2 \
        else einsum("...i,...ji->...j", input, other)


def outer(input: Tensor, vec2: Tensor) -> Tensor:
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


ger = outer


def linear(input: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """input @ weight.T + bias (torch.nn.functional.linear)."""
    out = matmul(input, _mT(weight) if weight._data.ndim == 2 else weight)
    return out if bias is None else out + bias


def einsum(equation: str, *operands: Any) -> Tensor:
    """Einstein summation; the gradient of each operand is another einsum."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if _amp.ACTIVE:
        operands = _amp.lower("einsum", *operands)
    eq = equation.replace(" ", "")
    ins, arrow, out = eq.partition("->")
    terms = ins.split(",")
    if len(terms) != len(operands):
        raise RuntimeError("einsum(): more operands were provided than specified in the equation"
                           if len(operands) > len(terms) else
                           "einsum(): fewer operands were provided than specified in the equation")
    if not arrow:
        letters = [c for c in ins.replace(",", "").replace(".", "")]
        out = ("..." if "..." in ins else "") + "".join(
            sorted(c for c in set(letters) if letters.count(c) == 1))
    # Expand ellipses to explicit letters so backward equations are plain.
    ops = list(operands)
    if "..." in eq:
        free = [c for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in eq]
        nell = max(o._data.ndim - (len(t) - 3) for o, t in zip(ops, terms) if "..." in t)
        ell = "".join(free[:nell])
        terms = [t.replace("...", ell[nell - (o._data.ndim - (len(t) - 3)):]) if "..." in t else t
                 for o, t in zip(ops, terms)]
        out = out.replace("...", ell)
    first = ops[0]
    xp = xp_of(first)
    arrays = [o._data for o in ops]
    dts = {a.dtype for a in arrays}
    if len(dts) > 1:
        from engine.dtypes import result_type

        rt = result_type(*ops).np
        arrays = [a.astype(rt) for a in arrays]
    full = ",".join(terms) + "->" + out
    r = wrap(xp.asarray(xp.einsum(full, *arrays, optimize=len(arrays) > 2)))
    if STATE.enabled and any(o._rg for o in ops):
        def bw(g, _):
            grads = []
            for i, o in enumerate(ops):
                if not o._rg:
                    grads.append(None)
                    continue
                others = [ops[j] for j in range(len(ops)) if j != i]
                ot = [terms[j] for j in range(len(ops)) if j != i]
                target = terms[i]
                # letters of the operand missing from output and others are summed out: the
                # gradient is constant along them, restored by expanding.
                have = set(out) | set("".join(ot))
                uniq = "".join(dict.fromkeys(target))  # a diagonal (repeated letter) once
                tgt = "".join(c for c in uniq if c in have)
                gi = einsum(",".join([out] + ot) + "->" + tgt, g, *others)
                if tgt != uniq:
                    sizes = {c: n for c, n in zip(target, o._data.shape)}
                    gi = _expand_missing(gi, tgt, uniq, tuple(sizes[c] for c in uniq))
                if uniq != target:
                    gi = _onto_diagonals(gi, uniq, target, o._data.shape, full)
                grads.append(gi)
            return tuple(grads)
        attach(r, ops, bw, "EinsumBackward0", saved=tuple(ops))
    return r


def _onto_diagonals(gi: Tensor, uniq: str, target: str, shape: tuple, used: str) -> Tensor:
    """Scatter ``gi`` (indexed by the distinct letters ``uniq``) onto the diagonals of an
    operand written ``target`` with repeated letters, zeros elsewhere: the gradient of taking
    a diagonal. Each repeat is renamed and tied to its letter by an identity matrix, so the
    result is one more einsum (differentiable, for create_graph)."""
    from engine.ops.creation import eye

    pool = (c for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ" if c not in used)
    seen: set = set()
    renamed, ties, eyes = [], [], []
    for c, n in zip(target, shape):
        if c in seen:
            new = next(pool)
            renamed.append(new)
            ties.append(c + new)
            eyes.append(eye(n, dtype=gi.dtype, device=gi.device))
        else:
            seen.add(c)
            renamed.append(c)
    return einsum(",".join([uniq] + ties) + "->" + "".join(renamed), gi, *eyes)


def _expand_missing(gi: Tensor, have: str, target: str, shape: tuple) -> Tensor:
    shp = tuple(gi._data.shape[have.index(c)] if c in have else 1 for c in target)
    perm_src = [c for c in target if c in have]
    gi = gi.permute([have.index(c) for c in perm_src]) if perm_src != list(have) else gi
    return gi.reshape(shp).expand(shape)


def tensordot(a: Tensor, b: Tensor, dims: Any = 2) -> Tensor:
    letters = "abcdefghijklmnopqrstuvwxyz"
    na, nb = a._data.ndim, b._data.ndim
    if isinstance(dims, int):
        da, db = list(range(na - dims, na)), list(range(dims))
    else:
        da, db = list(dims[0]), list(dims[1])
    ta = list(letters[:na])
    tb = list(letters[na:na + nb])
    for i, j in zip(da, db):
        tb[j] = ta[i]
    out = [c for k, c in enumerate(ta) if k not in da] + [c for k, c in enumerate(tb) if k not in db]
    return einsum("".join(ta) + "," + "".join(tb) + "->" + "".join(out), a, b)


_ = (np, prep2)
