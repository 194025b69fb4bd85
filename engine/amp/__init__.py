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
from engine.amp.custom import custom_bwd, custom_fwd
from engine.amp.grad_scaler import GradScaler

__all__ = ["GradScaler", "autocast", "custom_bwd", "custom_fwd", "get_autocast_dtype", "is_autocast_available",
           "is_autocast_enabled", "set_autocast_dtype", "set_autocast_enabled"]


class _CudaAmp:
    """``engine.cuda.amp``: torch.cuda.amp's older spellings, for code written against them."""

    @staticmethod
    def autocast(enabled: bool = True, dtype=None, cache_enabled: bool = True) -> autocast:
        return autocast("cuda", dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    @staticmethod
    def GradScaler(init_scale: float = 2.0**16, growth_factor: float = 2.0,  # noqa: N802 - torch's name
                   backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> GradScaler:
        return GradScaler("cuda", init_scale, growth_factor, backoff_factor, growth_interval, enabled)


cuda_amp = _CudaAmp()
