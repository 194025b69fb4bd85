"""``custom_fwd`` / ``custom_bwd``: autocast for custom autograd Functions, as torch.amp's.

``custom_fwd`` on a Function's ``forward`` records whether autocast was on (and its dtype);
with ``cast_inputs`` it instead runs the forward with autocast off on inputs cast to that
dtype. ``custom_bwd`` runs ``backward`` under the autocast state the forward saw, so the
backward's ops pick the same dtypes.
"""
from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from engine.amp.autocast_mode import autocast, get_autocast_dtype, is_autocast_enabled

__all__ = ["custom_bwd", "custom_fwd"]


def _cast(value: Any, device_type: str, dtype: Any) -> Any:
    """Floating tensors (not float64) on ``device_type`` in ``value``, cast to ``dtype``."""
    from engine.tensor import Tensor

    if isinstance(value, Tensor):
        ok = value.is_floating_point() and value.dtype.name != "float64" and value.device.type == device_type
        return value.to(dtype) if ok else value
    if isinstance(value, (str, bytes)):
        return value
    if isinstance(value, dict):
        return {k: _cast(v, device_type, dtype) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, device_type, dtype) for v in value)
    return value


def custom_fwd(fwd: Callable | None = None, *, device_type: str, cast_inputs: Any = None) -> Callable:
    if fwd is None:
        return functools.partial(custom_fwd, device_type=device_type, cast_inputs=cast_inputs)

    @functools.wraps(fwd)
    def decorate_fwd(*args: Any, **kwargs: Any) -> Any:
        ctx = args[0]
        ctx._dtype = get_autocast_dtype(device_type)
        if cast_inputs is None or not is_autocast_enabled(device_type):
            ctx._fwd_used_autocast = cast_inputs is None and is_autocast_enabled(device_type)
            return fwd(*args, **kwargs)
        ctx._fwd_used_autocast = False
        with autocast(device_type, enabled=False):
            return fwd(*_cast(args, device_type, cast_inputs), **_cast(kwargs, device_type, cast_inputs))
    return decorate_fwd


def custom_bwd(bwd: Callable | None = None, *, device_type: str) -> Callable:
    if bwd is None:
        return functools.partial(custom_bwd, device_type=device_type)

    @functools.wraps(bwd)
    def decorate_bwd(*args: Any, **kwargs: Any) -> Any:
        ctx = args[0]
        with autocast(device_type, dtype=ctx._dtype, enabled=ctx._fwd_used_autocast):
            return bwd(*args, **kwargs)
    return decorate_bwd
