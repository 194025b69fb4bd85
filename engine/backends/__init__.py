"""``engine.backends``: torch.backends' precision switches for the cupy path.

``engine.backends.cuda.matmul.allow_tf32`` (default False, as torch since 1.12) lets cuBLAS
run float32 GEMMs on TF32 tensor cores (10-bit mantissa inputs, float32 accumulation); it is
applied to cupy's compute type for float32 the moment it is set. The engine's convolutions
are GEMMs over im2col columns, so they follow this switch too: ``cudnn.allow_tf32`` (torch's
default True, which turns TF32 on for torch's cuDNN convolutions) is kept for code that sets
it but changes nothing here, a difference from torch in fp32 convolution speed and rounding.
``set_float32_matmul_precision("high")`` is ``allow_tf32 = True``, ``"highest"`` is False.
No effect on numpy.
"""
from __future__ import annotations

import numpy as np

__all__ = ["cuda", "cudnn", "get_float32_matmul_precision", "set_float32_matmul_precision"]

_COMPUTE_TYPE_DEFAULT, _COMPUTE_TYPE_TF32 = 1, 7  # cupy._core._routines_linalg's enum


def _apply(tf32: bool) -> None:
    """Set cupy's float32 GEMM compute type (no-op without cupy or without a GPU)."""
    from engine import backend

    if backend.cuda_device_count() == 0:
        return
    try:
        from cupy._core import _routines_linalg as rl
    except ImportError:  # pragma: no cover - a cupy without the switch
        return
    want = getattr(rl, "COMPUTE_TYPE_TF32", _COMPUTE_TYPE_TF32) if tf32 else \
        getattr(rl, "COMPUTE_TYPE_DEFAULT", _COMPUTE_TYPE_DEFAULT)
    if rl.get_compute_type(np.float32) != want:
        rl.set_compute_type(np.float32, want)


class _Matmul:
    def __init__(self) -> None:
        self._allow_tf32 = False

    @property
    def allow_tf32(self) -> bool:
        return self._allow_tf32

    @allow_tf32.setter
    def allow_tf32(self, value: bool) -> None:
        self._allow_tf32 = bool(value)
        _apply(self._allow_tf32)


class _Cuda:
    def __init__(self) -> None:
        self.matmul = _Matmul()


class _Cudnn:
    """torch.backends.cudnn's flags, kept for code that sets them (the engine has no cuDNN)."""

    def __init__(self) -> None:
        self.allow_tf32 = True
        self.enabled = True
        self.benchmark = False
        self.deterministic = False


cuda = _Cuda()
cudnn = _Cudnn()


def set_float32_matmul_precision(precision: str) -> None:
    if precision not in ("highest", "high", "medium"):
        raise RuntimeError(f"Invalid precision: {precision!r} (highest, high or medium)")
    cuda.matmul.allow_tf32 = precision != "highest"


def get_float32_matmul_precision() -> str:
    return "high" if cuda.matmul.allow_tf32 else "highest"

