"""Loss functions (torch.nn.functional), reduction 'none' | 'mean' | 'sum'.

Class-index targets are integer tensors that never need grad, so their masks and
gathers are computed on the raw arrays; the differentiable part uses Tensor ops.
Class weights are constants (no gradient flows into ``weight``), as in practice.
"""
from __future__ import annotations

from typing import Any

from engine.amp import _policy as _amp
from engine.backend import get_array_module
from engine.tensor import Tensor

__all__ = [
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cosine_embedding_loss",
    "cross_entropy",
    "gaussian_nll_loss",
    "hinge_embedding_loss",
    "huber_loss",
    "kl_div",
    "l1_loss",
    "margin_ranking_loss",
    "mse_loss",
    "multi_margin_loss",
    "nll_loss",
    "poisson_nll_loss",
    "smooth_l1_loss",
    "soft_margin_loss",
]


def _legacy_reduction(size_average: Any, reduce: Any, reduction: str) -> str:
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _wrap(array: Any) -> Tensor:
    return Tensor._wrap(array)


def _class_shape(weight: Tensor, ndim: int) -> Tensor:
    """``weight`` (C,) shaped to broadcast against an (N, C, d1, ...) input."""
    return weight.reshape((1, -1) + (1,) * (ndim - 2))


def nll_loss(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
             ignore_index: int = -100, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """Negative log likelihood of class indices: input (N, C, d1...) or (C,) of log-probs."""
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("nll_loss", input, target, weight)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if input.dim() == 1:  # unbatched
        out = nll_loss(input.unsqueeze(0), target.reshape(1), weight, None, ignore_index, None, reduction)
        return out.reshape(()) if reduction == "none" else out
    if input.dim() < 1:
        raise ValueError(f"Expected 1 or more dimensions (got {input.dim()})")
    t = target._data if isinstance(target, Tensor) else target
    if t.dtype.kind not in "iu":
        raise RuntimeError(f"expected scalar type Long but found {t.dtype}")
    if t.shape != input.shape[:1] + input.shape[2:]:
        raise ValueError(f"Expected target size {tuple(input.shape[:1] + input.shape[2:])}, got {tuple(t.shape)}")
    xp = get_array_module(t)
    n_classes = input.shape[1]
    valid = t != ignore_index
    safe = xp.where(valid, t, 0)
    if bool(((safe < 0) | (safe >= n_classes)).any()):
        raise IndexError(f"Target {int(safe[(safe < 0) | (safe >= n_classes)].ravel()[0])} is out of bounds.")
    dtype = input._data.dtype
    if weight is not None:
        w = weight._data.astype(dtype, copy=False)[safe] * valid
    else:
        w = valid.astype(dtype)
    picked = input.gather(1, _wrap(xp.expand_dims(safe, 1))).squeeze(1)
    loss = -(picked * _wrap(w))
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if reduction == "mean":
        return loss.sum() / _wrap(w.sum())
    raise ValueError(f"{reduction} is not a valid value for reduction")


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None, size_average: Any = None,
                  ignore_index: int = -100, reduce: Any = None, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Cross entropy of logits ``input`` (N, C, d1...) or (C,) against class indices or class
    probabilities (same shape as input), with torch's weight/ignore_index/label_smoothing rules."""
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("cross_entropy", input, target, weight)
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    class_dim = 0 if input.dim() == 1 else 1
    logp = input.log_softmax(class_dim)
    n_classes = input.shape[class_dim]
    if target.is_floating_point():  # class probabilities
        if target.shape != input.shape:
            raise ValueError("Expected probability targets of the same shape as input")
        if label_smoothing > 0:
            target = target * (1 - label_smoothing) + label_smoothing / n_classes
        if weight is not None:
            logp = logp * (weight if class_dim == 0 else _class_shape(weight, input.dim()))
        prod = logp * target
        if reduction == "none":
            return -prod.sum(class_dim)
        if reduction == "sum":
            return -prod.sum()
        if reduction == "mean":
            return -prod.sum() / (input.numel() / n_classes) if input.numel() else -prod.sum() * float("nan")
        raise ValueError(f"{reduction} is not a valid value for reduction")
    loss = nll_loss(logp, target, weight, None, ignore_index, None, reduction)
    if label_smoothing == 0.0:
        return loss
    t = target._data
    xp = get_array_module(t)
    ignore = t == ignore_index
    if weight is not None:
        wl = logp * (weight if class_dim == 0 else _class_shape(weight, input.dim()))
        smooth = -wl.sum(class_dim)
    else:
        smooth = -logp.sum(class_dim)
    keep = _wrap((~ignore).astype(input._data.dtype))
    smooth = smooth * keep
    if reduction == "mean":
        if weight is not None:
            denom = weight._data[xp.where(ignore, 0, t)][~ignore].sum()
        else:
            denom = (~ignore).sum()
        smooth = smooth.sum() / _wrap(xp.asarray(denom, dtype=input._data.dtype))
    elif reduction == "sum":
        smooth = smooth.sum()
    return loss * (1 - label_smoothing) + smooth * (label_smoothing / n_classes)


def mse_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
             reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("mse_loss", input, target, weight)
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
            reduction: str = "mean", weight: Tensor | None = None) -> Tensor:
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("l1_loss", input, target, weight)
    loss = (input - target).abs()
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def _where(cond: Any, a: Any, b: Any) -> Tensor:
    import engine

    return engine.where(cond, a, b)


def smooth_l1_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                   reduction: str = "mean", beta: float = 1.0) -> Tensor:
    """0.5 d^2 / beta where |d| < beta, else |d| - 0.5 beta (plain L1 when beta == 0)."""
    if _amp.ACTIVE:
        input, target = _amp.fp32("smooth_l1_loss", input, target)
    d = (input - target).abs()
    if beta == 0.0:
        loss = d
    else:
        loss = _where(d < beta, d * d * (0.5 / beta), d - 0.5 * beta)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def huber_loss(input: Tensor, target: Tensor, reduction: str = "mean", delta: float = 1.0,
               weight: Tensor | None = None) -> Tensor:
    """0.5 d^2 where |d| < delta, else delta (|d| - 0.5 delta)."""
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("huber_loss", input, target, weight)
    d = (input - target).abs()
    loss = _where(d < delta, d * d * 0.5, (d - 0.5 * delta) * delta)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,
                         size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """-(y log p + (1 - y) log(1 - p)), logs clamped at -100 as torch does."""
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("binary_cross_entropy", input, target, weight)
    if target.shape != input.shape:
        raise ValueError(f"Using a target size ({tuple(target.shape)}) that is different to the input "
                         f"size ({tuple(input.shape)}) is deprecated. Please ensure they have the same size.")
    log_p = input.log().clamp(min=-100.0)
    log_1mp = (-input + 1).log().clamp(min=-100.0)
    loss = -(target * log_p + (-target + 1) * log_1mp)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor, weight: Tensor | None = None,
                                     size_average: Any = None, reduce: Any = None,
                                     reduction: str = "mean", pos_weight: Tensor | None = None) -> Tensor:
    """Sigmoid + BCE in one stable expression: (1 - y) x + l * softplus(-x), l = 1 + (pw - 1) y."""
    if _amp.ACTIVE:
        input, target, weight, pos_weight = _amp.fp32(
            "binary_cross_entropy_with_logits", input, target, weight, pos_weight)
    if target.shape != input.shape:
        raise ValueError(f"Target size ({tuple(target.shape)}) must be the same as input size ({tuple(input.shape)})")
    # softplus(-x) = log(1 + exp(-x)) = log1p(exp(-|x|)) + max(-x, 0)
    sp_neg = (-input.abs()).exp().log1p() + (-input).clamp(min=0.0)
    if pos_weight is not None:
        log_weight = (pos_weight - 1) * target + 1
        loss = (-target + 1) * input + log_weight * sp_neg
    else:
        loss = (-target + 1) * input + sp_neg
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def kl_div(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
           reduction: str = "mean", log_target: bool = False) -> Tensor:
    """target * (log target - input) pointwise; 'batchmean' divides the sum by the batch size."""
    if _amp.ACTIVE:
        input, target = _amp.fp32("kl_div", input, target)
    if log_target:
        loss = target.exp() * (target - input)
    else:
        safe_log = _where(target > 0, target, 1.0).log()
        loss = _where(target > 0, target * (safe_log - input), 0.0 * input)
    if reduction == "batchmean":
        return loss.sum() / (input.shape[0] if input.dim() else 1)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def multi_margin_loss(input: Tensor, target: Tensor, p: int = 1, margin: float = 1.0,
                      weight: Tensor | None = None, size_average: Any = None, reduce: Any = None,
                      reduction: str = "mean") -> Tensor:
    """sum_{i != y} max(0, margin - x_y + x_i)^p / C, per sample."""
    if _amp.ACTIVE:
        input, target, weight = _amp.fp32("multi_margin_loss", input, target, weight)
    if p not in (1, 2):
        raise ValueError("only p == 1 and p == 2 supported")
    unbatched = input.dim() == 1
    x = input.unsqueeze(0) if unbatched else input
    t = target._data.reshape(-1)
    xp = get_array_module(t)
    n_classes = x.shape[1]
    x_y = x.gather(1, _wrap(t[:, None]))
    z = (x - x_y + margin).clamp(min=0.0)
    if p == 2:
        z = z * z
    if weight is not None:
        z = z * _wrap(weight._data[t][:, None].astype(input._data.dtype))
    not_y = _wrap((xp.arange(n_classes)[None, :] != t[:, None]).astype(input._data.dtype))
    loss = (z * not_y).sum(1) / n_classes
    if unbatched:
        loss = loss.reshape(())
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def hinge_embedding_loss(input: Tensor, target: Tensor, margin: float = 1.0, size_average: Any = None,
                         reduce: Any = None, reduction: str = "mean") -> Tensor:
    """x where y == 1, max(0, margin - x) where y == -1."""
    if _amp.ACTIVE:
        input, target = _amp.fp32("hinge_embedding_loss", input, target)
    margin_part = (-input + margin).clamp(min=0.0)
    zeros = input * 0
    loss = _where(target == 1, input, zeros) + _where(target == -1, margin_part, zeros)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def cosine_embedding_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                          size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """1 - cos(x1, x2) where y == 1, max(0, cos(x1, x2) - margin) where y == -1."""
    if _amp.ACTIVE:
        input1, input2, target = _amp.fp32("cosine_embedding_loss", input1, input2, target)
    eps = 1e-12
    dot = (input1 * input2).sum(-1)
    mag1 = (input1 * input1).sum(-1) + eps
    mag2 = (input2 * input2).sum(-1) + eps
    cos = dot / (mag1 * mag2).sqrt()
    zeros = cos * 0
    loss = _where(target == 1, -cos + 1, zeros) + _where(target == -1, (cos - margin).clamp(min=0.0), zeros)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def margin_ranking_loss(input1: Tensor, input2: Tensor, target: Tensor, margin: float = 0.0,
                        size_average: Any = None, reduce: Any = None, reduction: str = "mean") -> Tensor:
    """max(0, -y (x1 - x2) + margin)."""
    if _amp.ACTIVE:
        input1, input2, target = _amp.fp32("margin_ranking_loss", input1, input2, target)
    loss = (-target * (input1 - input2) + margin).clamp(min=0.0)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def soft_margin_loss(input: Tensor, target: Tensor, size_average: Any = None, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    if _amp.ACTIVE:
        input, target = _amp.fp32("soft_margin_loss", input, target)
    z = -target * input
    loss = (-z.abs()).exp().log1p() + z.clamp(min=0.0)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def poisson_nll_loss(input: Tensor, target: Tensor, log_input: bool = True, full: bool = False,
                     size_average: Any = None, eps: float = 1e-8, reduce: Any = None,
                     reduction: str = "mean") -> Tensor:
    if _amp.ACTIVE:
        input, target = _amp.fp32("poisson_nll_loss", input, target)
    if log_input:
        loss = input.exp() - target * input
    else:
        loss = input - target * (input + eps).log()
    if full:
        t = target
        stirling = t * t.log() - t + (t * (2 * 3.141592653589793)).log() * 0.5
        loss = loss + _where(t > 1, stirling, t * 0)
    return _reduce(loss, _legacy_reduction(size_average, reduce, reduction))


def gaussian_nll_loss(input: Tensor, target: Tensor, var: Tensor, full: bool = False,
                      eps: float = 1e-6, reduction: str = "mean") -> Tensor:
    import math

    var = var.clamp(min=eps)
    d = input - target
    loss = (var.log() + d * d / var) * 0.5
    if full:
        loss = loss + 0.5 * math.log(2 * math.pi)
    return _reduce(loss, reduction)
