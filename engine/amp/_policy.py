"""Autocast's state and op policy: which ops run in the low-precision dtype, which in float32.

The ops call in here at their entry points (``if _amp.ACTIVE: x, w = _amp.lower("linear", x, w)``),
so with no autocast region open anywhere the cost is one module-attribute read. The lists are
torch's: CUDA from the autocast op reference (``autocast_mode.h``: lower_precision_fp and fp32),
CPU as torch 2.x's CPU autocast behaves (tests/engine/test_amp.py checks both against torch on
the CPU). An op is chosen by the device of its first tensor argument: numpy arrays are "cpu",
cupy arrays "cuda". Only floating tensors other than float64 are cast (torch's eligibility).

Casts of leaf tensors that require grad (the weights) to the low-precision dtype are cached
until the outermost autocast region exits, as torch does: an LSTM's recurrent weight is cast
once per forward, not once per step, and every use shares one autograd node.

Known deviations from torch (the engine's ops are composed differently): ``mv`` and ``dot``
run through matmul, so they take matmul's low precision (torch's CPU list keeps them in the
input dtype, CUDA promotes ``dot``); the engine's GRU is built from linear ops, so it runs in
the low precision on the CPU too (torch's CPU GRU kernel stays float32).
"""
from __future__ import annotations

import threading
from typing import Any

import numpy as np

from engine.autograd.grad_mode import STATE as _GRAD
from engine.dtypes import float16, float32

__all__ = ["ACTIVE", "FP32", "LOWER", "fp32", "lower", "state"]

DEVICE_TYPES = ("cpu", "cuda")

_CONV = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}
_MATMUL = {"matmul", "mm", "bmm", "baddbmm", "addmm", "addbmm", "linear", "einsum", "prelu",
           "scaled_dot_product_attention", "lstm"}
_LOSSES = {"cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
           "binary_cross_entropy_with_logits", "kl_div", "poisson_nll_loss", "soft_margin_loss",
           "multi_margin_loss", "hinge_embedding_loss", "margin_ranking_loss",
           "cosine_embedding_loss", "multilabel_margin_loss", "triplet_margin_loss"}

# Ops that autocast to the low-precision dtype.
LOWER = {
    "cpu": frozenset(_CONV | _MATMUL),
    "cuda": frozenset(_CONV | _MATMUL | {"mv", "addmv", "addr", "chain_matmul", "multi_dot",
                                         "lstm_cell", "gru_cell", "rnn_tanh_cell",
                                         "rnn_relu_cell"}),
}
# Ops that autocast to float32.
FP32 = {
    "cpu": frozenset(_LOSSES | {"prod", "binary_cross_entropy"}),
    "cuda": frozenset(_LOSSES | {
        "pow", "rtruediv", "acos", "asin", "cosh", "sinh", "tan", "erfinv", "exp", "expm1",
        "log", "log10", "log1p", "log2", "reciprocal", "rsqrt", "softplus", "layer_norm",
        "group_norm", "norm", "normalize", "cosine_similarity", "softmax", "log_softmax",
        "softmin", "sum", "prod", "cumsum", "cumprod", "logsumexp", "dist", "cdist", "pdist",
        "renorm"}),
}
# Ops torch refuses under CUDA autocast (their float16 backward is unsafe).
_UNSAFE = {"cuda": frozenset({"binary_cross_entropy"})}

ACTIVE = False  # True while any thread has an enabled autocast region (the ops' fast check)
_open = 0  # threads with an enabled region
_lock = threading.Lock()


class _State(threading.local):
    """Per thread, as torch's autocast state: enabled flag and dtype per device type."""

    def __init__(self) -> None:
        self.enabled = {"cpu": False, "cuda": False}
        self.dtype = {"cpu": float16, "cuda": float16}
        self.cache_enabled = True
        self.nesting = 0
        self.cache: dict = {}


state = _State()


def any_enabled() -> bool:
    return state.enabled["cpu"] or state.enabled["cuda"]


def set_enabled(device_type: str, enabled: bool) -> None:
    """Set one device type's flag for this thread and keep ``ACTIVE`` true while any is on."""
    global ACTIVE, _open
    before = any_enabled()
    state.enabled[device_type] = bool(enabled)
    after = any_enabled()
    if before != after:
        with _lock:
            _open += 1 if after else -1
            ACTIVE = _open > 0


def _device_type(tensors: tuple) -> str | None:
    for t in tensors:
        d = getattr(t, "_data", None)
        if d is not None:
            return "cpu" if type(d) is np.ndarray else "cuda"
    return None


def _cast(t: Any, dt: Any) -> Any:
    d = getattr(t, "_data", None)
    if d is None or d.dtype.kind != "f" or d.dtype == np.float64 or d.dtype == dt.np:
        return t
    cacheable = (dt is not float32 and d.dtype == np.float32 and state.cache_enabled
                 and _GRAD.enabled and t.requires_grad and t.is_leaf)
    if cacheable:
        hit = state.cache.get(id(t))
        if hit is not None and hit[0] is t:
            return hit[1]
    out = t.to(dt)
    if cacheable:
        state.cache[id(t)] = (t, out)  # the source is kept alive, so its id is not reused
    return out


def lower(op: str, *tensors: Any) -> tuple:
    """The arguments cast to the autocast dtype when ``op`` autocasts to it on their device."""
    dev = _device_type(tensors)
    if dev is None or not state.enabled[dev] or op not in LOWER[dev]:
        return tensors
    dt = state.dtype[dev]
    return tuple(_cast(t, dt) for t in tensors)


def fp32(op: str, *tensors: Any) -> tuple:
    """The arguments cast to float32 when ``op`` autocasts to float32 on their device."""
    dev = _device_type(tensors)
    if dev is None or not state.enabled[dev]:
        return tensors
    if op in _UNSAFE.get(dev, ()):
        raise RuntimeError(
            f"torch.nn.functional.{op} and torch.nn.BCELoss are unsafe to autocast.\n"
            "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
            "In this case, combine the two layers using "
            "torch.nn.functional.binary_cross_entropy_with_logits\nor torch.nn.BCEWithLogitsLoss.  "
            "binary_cross_entropy_with_logits and BCEWithLogits are\nsafe to autocast.")
    if op not in FP32[dev]:
        return tensors
    return tuple(_cast(t, float32) for t in tensors)


def fp32_one(op: str, t: Any) -> Any:
    """``fp32`` for a single argument (the unary ops' form)."""
    return fp32(op, t)[0]


def half_with_float(input: Any, *params: Any) -> bool:
    """A float16 input with float32 parameters: the normalizations then compute in float32 and
    return float16, as torch's kernels do (what autocast leaves a BatchNorm after a conv)."""
    d = getattr(input, "_data", None)
    if d is None or d.dtype != np.float16:
        return False
    given = [p._data.dtype for p in params if p is not None]
    return bool(given) and all(dt == np.float32 for dt in given)
