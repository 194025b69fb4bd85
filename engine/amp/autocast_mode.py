"""``engine.autocast``: torch.autocast's context manager and decorator over the op policy.

Inside an enabled region, ops on the listed devices run in the low-precision dtype (matmul,
linear, convolutions...) or in float32 (losses, and on CUDA softmax, norms, exp/log/pow,
sum...); every other op runs in its inputs' dtype with the usual promotion. Backward runs
in the dtypes the forward chose: each cast is an autograd node that casts the gradient back.

Deliberate differences from torch: the engine has no bfloat16 (numpy has none, and the
engine's dtypes are numpy's), so ``dtype=bfloat16`` cannot be asked for; CPU autocast
therefore defaults to float16 where torch defaults to bfloat16.
"""
from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from typing import Any

from engine.amp import _policy
from engine.dtypes import float16, to_dtype

__all__ = ["autocast", "get_autocast_dtype", "is_autocast_available", "is_autocast_enabled",
           "set_autocast_dtype", "set_autocast_enabled"]

_SUPPORTED = {"cpu": (float16,), "cuda": (float16,)}


def is_autocast_available(device_type: str) -> bool:
    """Whether autocast is available for ``device_type`` (torch.amp.is_autocast_available)."""
    return device_type in _policy.DEVICE_TYPES


def _check_device(device_type: Any) -> str:
    if not isinstance(device_type, str):
        raise ValueError(f"Expected `device_type` of type `str`, got: `{type(device_type)}`")
    if device_type not in _policy.DEVICE_TYPES:
        raise RuntimeError(f"User specified an unsupported autocast device_type '{device_type}'")
    return device_type


def is_autocast_enabled(device_type: str | None = None) -> bool:
    """Whether autocast is on for ``device_type`` in this thread ("cuda" when not given)."""
    return _policy.state.enabled[_check_device(device_type or "cuda")]


def get_autocast_dtype(device_type: str) -> Any:
    return _policy.state.dtype[_check_device(device_type)]


def set_autocast_enabled(device_type: str, enabled: bool) -> None:
    _policy.set_enabled(_check_device(device_type), enabled)


def set_autocast_dtype(device_type: str, dtype: Any) -> None:
    _policy.state.dtype[_check_device(device_type)] = to_dtype(dtype)


class autocast:  # noqa: N801 - torch's name
    """Mixed precision for a region: ``with engine.autocast("cuda"):`` or ``@engine.autocast("cpu")``.

    Args:
        device_type: "cuda" or "cpu"; ops whose tensors live on that device are autocast.
        dtype: the low-precision dtype (float16; the engine has no bfloat16).
        enabled: False turns autocast off inside the region (also inside an enabled one).
        cache_enabled: cache the low-precision copies of weights inside the region.
    """

    def __init__(self, device_type: str, dtype: Any = None, enabled: bool = True,
                 cache_enabled: bool | None = None) -> None:
        self.device = _check_device(device_type)
        self.fast_dtype = float16 if dtype is None else _resolve_dtype(dtype)
        self._cache_enabled = True if cache_enabled is None else bool(cache_enabled)
        enabled = bool(enabled)
        if enabled and self.device == "cuda":
            from engine.backend import cuda_is_available

            if not cuda_is_available():
                warnings.warn("User provided device_type of 'cuda', but CUDA is not available. "
                              "Disabling", stacklevel=2)
                enabled = False
        if enabled and self.fast_dtype not in _SUPPORTED[self.device]:
            warnings.warn(f"In {self.device.upper()} autocast, but the target dtype "
                          f"{self.fast_dtype} is not supported. Disabling autocast.\n"
                          f"{self.device.upper()} Autocast only supports dtype of "
                          f"{', '.join(str(d) for d in _SUPPORTED[self.device])} currently.",
                          stacklevel=2)
            enabled = False
        self._enabled = enabled
        self._saved: list = []

    def __enter__(self) -> autocast:
        st = _policy.state
        self._saved.append((st.enabled[self.device], st.dtype[self.device], st.cache_enabled))
        st.nesting += 1
        st.dtype[self.device] = self.fast_dtype
        st.cache_enabled = self._cache_enabled
        _policy.set_enabled(self.device, self._enabled)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> bool:
        st = _policy.state
        enabled, dt, cache = self._saved.pop()
        st.nesting -= 1
        if st.nesting == 0:
            st.cache.clear()  # the weights' low-precision copies live one outermost region
        st.dtype[self.device] = dt
        st.cache_enabled = cache
        _policy.set_enabled(self.device, enabled)
        return False

    def __call__(self, func: Callable) -> Callable:
        args = (self.device, self.fast_dtype, self._enabled, self._cache_enabled)

        @functools.wraps(func)
        def wrapper(*a: Any, **k: Any) -> Any:
            with autocast(*args):  # a fresh region per call: safe across threads and recursion
                return func(*a, **k)
        return wrapper


def _resolve_dtype(dtype: Any) -> Any:
    if isinstance(dtype, str) and dtype.rsplit(".", 1)[-1] == "bfloat16":
        raise TypeError("engine has no bfloat16 dtype (numpy and the engine's arrays have none); "
                        "use dtype=engine.float16")
    return to_dtype(dtype)
