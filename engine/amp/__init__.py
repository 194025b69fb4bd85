"""engine.amp: automatic mixed precision, as torch.amp.

``autocast`` runs each op in the dtype torch's autocast would (low precision for matmuls and
convolutions, float32 for losses and, on CUDA, reductions and transcendental ops);
``GradScaler`` scales the loss so float16 gradients keep their small values, and skips
steps whose gradients overflowed. The op lists are in ``engine.amp._policy``.
"""
from engine.amp.autocast_mode import (
    autocast,
    get_autocast_dtype,
    is_autocast_available,
    is_autocast_enabled,
    set_autocast_dtype,
    set_autocast_enabled,
)
from engine.amp.grad_scaler import GradScaler

__all__ = ["GradScaler", "autocast", "get_autocast_dtype", "is_autocast_available",
           "is_autocast_enabled", "set_autocast_dtype", "set_autocast_enabled"]
