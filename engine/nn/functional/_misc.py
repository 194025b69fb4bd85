"""dropout family, embedding, one_hot, pad, interpolate, pairwise distances, attention."""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.amp import _policy as _amp
from engine.backend import get_array_module
from engine.ops._parallel import split_rows
from engine.ops._util import attach, needs_grad, wrap
from engine.ops.shape import pad  # one implementation: F.pad is engine.pad
from engine.tensor import Tensor

__all__ = [
    "alpha_dropout",
    "cosine_similarity",
    "dropout",
    "dropout1d",
    "dropout2d",
    "dropout3d",
    "embedding",
    "interpolate",
    "one_hot",
    "pad",
    "pairwise_distance",
    "pixel_shuffle",
    "scaled_dot_product_attention",
]


MASK_CHUNK = 1 << 17  # mask elements drawn from one child stream


def _bernoulli_keep(shape: tuple, p: float, like: Any, generator: Any = None, scale: float = 1.0) -> Any:
    """A keep-mask, ``scale`` with probability 1 - p and 0 otherwise, in like's dtype and device.

    Uniforms are float32 (half the bytes and time of float64, and a 2^-24 grid is finer than any
    dropout probability needs), compared and scaled in place. Drawing them is most of a
    dropout's time (2-3 ns each: 1.7 ms for a 32x4x64x64 attention mask), so a mask of more
    than MASK_CHUNK elements is drawn in fixed chunks, each from its own PCG64 seeded from the
    engine generator, on the engine's threads: the same seed gives the same mask whatever the
    thread count."""
    from engine.nn.init import _np_generator

    gen = _np_generator(generator)
    mask = np.empty(shape, dtype=np.float64 if like.dtype == np.float64 else np.float32)  # scaled exactly
    flat = mask.reshape(-1)
    chunks = -(-flat.size // MASK_CHUNK)

    def fill(part: Any, src: np.random.Generator) -> None:
        u = part if part.dtype == np.float32 else np.empty(part.shape, dtype=np.float32)
        src.random(dtype=np.float32, out=u)
        np.greater_equal(u, p, out=part)
        if scale != 1.0:
            part *= scale

    if chunks <= 1:
        fill(flat, gen)
    else:
        seeds = gen.integers(0, 1 << 63, chunks)

        def run(lo: int, hi: int) -> None:
            for i in range(lo, hi):
                fill(flat[i * MASK_CHUNK:(i + 1) * MASK_CHUNK], np.random.Generator(np.random.PCG64(int(seeds[i]))))

        split_rows(run, chunks, flat.size * 4)  # drawing costs several passes' worth
    xp = get_array_module(like)
    return xp.asarray(mask, dtype=like.dtype)


def _check_p(p: float) -> None:
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def dropout(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zeroes elements with probability p and scales the rest by 1 / (1 - p) when training."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        return input * 0.0
    mask = _bernoulli_keep(tuple(input.shape), p, input._data, scale=1.0 / (1.0 - p))
    return input * Tensor._wrap(mask)


def _feature_dropout(input: Tensor, p: float, training: bool, batched_dim: int) -> Tensor:
    _check_p(p)
    if not training or p == 0.0:
        return input
    shape = tuple(input.shape)
    unbatched = input.dim() == batched_dim - 1
    lead = 1 if unbatched else 2
    mask_shape = shape[:lead] + (1,) * (len(shape) - lead)
    if p == 1.0:
        return input * 0.0
    mask = _bernoulli_keep(mask_shape, p, input._data, scale=1.0 / (1.0 - p))
    return input * Tensor._wrap(mask)


def dropout1d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, 3)


def dropout2d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    """Zeroes whole channels (N, C, H, W) with probability p."""
    return _feature_dropout(input, p, training, 4)


def dropout3d(input: Tensor, p: float = 0.5, training: bool = True, inplace: bool = False) -> Tensor:
    return _feature_dropout(input, p, training, 5)


def alpha_dropout(input: Tensor, p: float = 0.5, training: bool = False, inplace: bool = False) -> Tensor:
    """Dropout that keeps SELU's self-normalizing mean and variance."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    alpha_p = -1.7580993408473766
    keep = _bernoulli_keep(tuple(input.shape), p, input._data)
    a = ((1 - p) * (1 + p * alpha_p ** 2)) ** -0.5
    b = -a * alpha_p * p
    return (input * Tensor._wrap(keep) + Tensor._wrap((1 - keep) * alpha_p)) * a + b


def _embedding_renorm_(weight: Tensor, idx: Any, max_norm: float, norm_type: float) -> None:
    """torch's embedding_renorm_: in place and without grad, the looked-up rows whose norm exceeds
    max_norm are scaled to max_norm / (norm + 1e-7); the weight's version counter moves on."""
    w = weight._data
    xp = get_array_module(w)
    rows = xp.unique(idx.reshape(-1))
    sel = w[rows]
    norms = xp.linalg.norm(sel, ord=norm_type, axis=1) if norm_type != float("inf") else xp.abs(sel).max(axis=1)
    over = norms > max_norm
    if bool(over.any()):
        scale = (max_norm / (norms[over] + 1e-7)).astype(w.dtype)
        w[rows[over]] = sel[over] * scale[:, None]
        weight._vc[0] += 1


def embedding(input: Tensor, weight: Tensor, padding_idx: int | None = None, max_norm: float | None = None,
              norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False) -> Tensor:
    """Rows of ``weight`` at the integer ``input``; the padding_idx row gets no gradient. With
    ``max_norm`` the looked-up rows are first renormalized in place, as torch."""
    idx = input._data
    if idx.dtype.kind not in "iu":
        raise RuntimeError("Expected tensor for argument #1 'indices' to have an integer scalar type")
    w = weight._data
    xp = get_array_module(w)
    num = w.shape[0]
    if padding_idx is not None and padding_idx < 0:
        padding_idx += num
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= num):
        raise IndexError("index out of range in self")
    if max_norm is not None:
        _embedding_renorm_(weight, idx, float(max_norm), float(norm_type))
    out = wrap(w[idx])
    if needs_grad(weight):
        def backward(g: Tensor, _: Any) -> tuple:
            flat = idx.reshape(-1)
            gd = g._data.reshape(flat.shape[0], -1)
            if scale_grad_by_freq:
                counts = xp.bincount(flat, minlength=num)
                gd = gd / counts[flat][:, None]
            if padding_idx is not None:
                gd = gd * (flat != padding_idx)[:, None]
            dim = gd.shape[1]
            pos = (flat[:, None] * dim + xp.arange(dim)[None, :]).ravel()
            gw = xp.bincount(pos, weights=gd.ravel(), minlength=num * dim).reshape(num, dim)
            return (None, wrap(gw.astype(w.dtype, copy=False)))

        attach(out, (input, weight), backward, "EmbeddingBackward0")
    return out


def one_hot(tensor: Tensor, num_classes: int = -1) -> Tensor:
    """int64 one-hot encoding with a trailing class dim."""
    t = tensor._data
    if t.dtype.kind not in "iu":
        raise RuntimeError("one_hot is only applicable to index tensor of type LongTensor.")
    xp = get_array_module(t)
    if num_classes < 0:
        num_classes = int(t.max()) + 1 if t.size else 0
    if t.size and (int(t.min()) < 0 or int(t.max()) >= num_classes):
        raise RuntimeError("Class values must be smaller than num_classes.")
    return Tensor._wrap((t[..., None] == xp.arange(num_classes)).astype(xp.int64))


def _interp_matrix(in_size: int, out_size: int, mode: str, align_corners: bool | None,
                   scale: float | None) -> np.ndarray:
    """(out, in) interpolation weights along one axis, torch's coordinate rules."""
    m = np.zeros((out_size, in_size))
    rows = np.arange(out_size)
    if mode == "nearest":
        s = (1.0 / scale) if scale else in_size / out_size
        src = np.minimum(np.floor(rows * s).astype(np.int64), in_size - 1)
        m[rows, src] = 1.0
        return m
    if mode == "nearest-exact":
        s = (1.0 / scale) if scale else in_size / out_size
        src = np.minimum(np.floor((rows + 0.5) * s).astype(np.int64), in_size - 1)
        m[rows, src] = 1.0
        return m
    if mode == "area":  # adaptive average pooling windows [floor(i in / out), ceil((i + 1) in / out))
        start = (rows * in_size) // out_size
        end = -((-(rows + 1) * in_size) // out_size)
        pos = np.arange(in_size)
        return ((pos >= start[:, None]) & (pos < end[:, None])) / (end - start)[:, None]
    if align_corners:
        src = rows * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    else:
        s = (1.0 / scale) if scale else in_size / out_size
        src = (rows + 0.5) * s - 0.5
        if mode != "cubic":  # torch clamps negative source coordinates except for cubic
            src = np.maximum(src, 0.0)
    if mode == "cubic":  # Keys' cubic convolution, A = -0.75, taps clamped at the borders
        a = -0.75
        f = np.floor(src)
        t = src - f

        def near(x: np.ndarray) -> np.ndarray:
            return ((a + 2) * x - (a + 3)) * x * x + 1

        def far(x: np.ndarray) -> np.ndarray:
            return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

        for off, wgt in zip((-1, 0, 1, 2), (far(t + 1), near(t), near(1 - t), far(2 - t))):
            idx = np.clip(f.astype(np.int64) + off, 0, in_size - 1)
            np.add.at(m, (rows, idx), wgt)
        return m
    i0 = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    frac = src - i0
    np.add.at(m, (rows, i0), 1.0 - frac)
    np.add.at(m, (rows, i1), frac)
    return m


def interpolate(input: Tensor, size: Any = None, scale_factor: Any = None, mode: str = "nearest",
                align_corners: bool | None = None, recompute_scale_factor: bool | None = None,
                antialias: bool = False) -> Tensor:
    """Resizes the spatial dims with nearest, nearest-exact, linear, bilinear, trilinear, bicubic
    or area (adaptive average), each as one interpolation matrix per axis (separable matmuls)."""
    modes = ("nearest", "nearest-exact", "linear", "bilinear", "trilinear", "bicubic", "area")
    if mode not in modes:
        raise NotImplementedError(f"interpolate mode {mode!r} is not supported")
    if align_corners is not None and mode in ("nearest", "nearest-exact", "area"):
        raise ValueError("align_corners option can only be set with the interpolating modes: "
                         "linear | bilinear | bicubic | trilinear")
    if antialias:
        raise NotImplementedError("antialias is not supported")
    spatial = tuple(input.shape[2:])
    nd = len(spatial)
    if size is not None:
        sizes = tuple(size) if isinstance(size, (tuple, list)) else (size,) * nd
        scales = (None,) * nd
    else:
        sf = tuple(scale_factor) if isinstance(scale_factor, (tuple, list)) else (scale_factor,) * nd
        sizes = tuple(math.floor(s * f) for s, f in zip(spatial, sf))
        scales = (None,) * nd if recompute_scale_factor else sf
    lin_mode = {"bicubic": "cubic", "bilinear": "linear", "trilinear": "linear"}.get(mode, mode)
    xp = get_array_module(input._data)
    out = input
    for axis, (n_in, n_out, sc) in enumerate(zip(spatial, sizes, scales)):
        m = _interp_matrix(n_in, n_out, lin_mode, align_corners, sc)
        mt = Tensor._wrap(xp.asarray(m.T, dtype=input._data.dtype))
        dim = 2 + axis
        moved = out.movedim(dim, -1)
        out = moved.matmul(mt).movedim(-1, dim)
    return out


def cosine_similarity(x1: Tensor, x2: Tensor, dim: int = 1, eps: float = 1e-8) -> Tensor:
    if _amp.ACTIVE:
        x1, x2 = _amp.fp32("cosine_similarity", x1, x2)
    n1 = (x1 * x1).sum(dim).sqrt().clamp(min=eps)
    n2 = (x2 * x2).sum(dim).sqrt().clamp(min=eps)
    return (x1 * x2).sum(dim) / (n1 * n2)


def pairwise_distance(x1: Tensor, x2: Tensor, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False) -> Tensor:
    d = (x1 - x2 + eps).abs()
    return d.pow(p).sum(-1, keepdim=keepdim).pow(1.0 / p)


def pixel_shuffle(input: Tensor, upscale_factor: int) -> Tensor:
    n, c, h, w = input.shape[-4:]
    r = upscale_factor
    oc = c // (r * r)
    x = input.reshape(n, oc, r, r, h, w).permute(0, 1, 4, 2, 5, 3)
    return x.reshape(n, oc, h * r, w * r)


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                                 dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None,
                                 enable_gqa: bool = False) -> Tensor:
    """softmax(Q K^T * scale + mask) V; a bool mask marks the positions that take part."""
    if _amp.ACTIVE:
        query, key, value = _amp.lower("scaled_dot_product_attention", query, key, value)
    import engine

    lq, lk = query.shape[-2], key.shape[-2]
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    xp = get_array_module(query._data)
    scores = query.matmul(key.transpose(-2, -1)) * scale
    if is_causal:
        causal = xp.tril(xp.ones((lq, lk), dtype=bool))
        scores = scores.masked_fill(Tensor._wrap(~causal), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype is engine.bool_:
            scores = scores.masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            scores = scores + attn_mask
    attn = scores.softmax(-1)
    if dropout_p > 0.0:
        attn = dropout(attn, dropout_p, True)
    return attn.matmul(value)
