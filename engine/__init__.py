"""engine: Trainyard's PyTorch-like deep-learning library on numpy (CPU) and cupy (GPU).

``import engine as torch`` runs ordinary PyTorch code for what engine covers:
tensors with torch's names, dtypes, promotion and broadcasting; reverse-mode
autograd; nn, optim, data utilities and serialization in their subpackages.
"""
from __future__ import annotations

import builtins as _builtins

from engine import autograd, backend, ops, random  # importing ops binds the Tensor methods
from engine.autograd import grad_mode as _grad_mode
from engine.autograd.grad_mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from engine.backend import Device, cuda_is_available, device
from engine.dtypes import (
    bool_,
    dtype,
    float16,
    float32,
    float64,
    get_default_dtype,
    int32,
    int64,
    promote_types,
    set_default_dtype,
)
from engine.ops import *
from engine.random import (
    Generator,
    bernoulli,
    get_rng_state,
    initial_seed,
    manual_seed,
    multinomial,
    normal,
    rand,
    rand_like,
    randint,
    randint_like,
    randn,
    randn_like,
    randperm,
    seed,
    set_rng_state,
)
from engine.tensor import Tensor, as_tensor, from_numpy, tensor

bool = bool_  # noqa: A001 - torch's name
half = float16
float = float32  # noqa: A001
double = float64
long = int64
int = int32  # noqa: A001
Size = tuple


def result_type(tensor1, tensor2) -> dtype:
    """torch.result_type for two operands (tensors or Python scalars)."""
    from engine.dtypes import result_type as _rt

    return _rt(tensor1, tensor2)


def is_tensor(obj) -> _builtins.bool:
    return isinstance(obj, Tensor)


def is_floating_point(t: Tensor) -> _builtins.bool:
    return t.is_floating_point()


def numel(t: Tensor) -> _builtins.int:
    return t.numel()


def can_cast(from_: dtype, to: dtype) -> _builtins.bool:
    return from_.category <= to.category


class _Cuda:
    """engine.cuda: availability and device count (cupy-backed)."""

    @staticmethod
    def is_available() -> _builtins.bool:
        return backend.cuda_is_available()

    @staticmethod
    def device_count() -> _builtins.int:
        return backend.cuda_device_count()

    @staticmethod
    def manual_seed(seed: _builtins.int) -> None:  # noqa: F811 - torch's parameter name
        manual_seed(seed)

    manual_seed_all = manual_seed

    @staticmethod
    def synchronize(device=None) -> None:  # noqa: F811 - torch's parameter name
        cp = backend._get_cupy()
        if cp is not None and backend.cuda_device_count():
            cp.cuda.Device().synchronize()

    @staticmethod
    def current_device() -> _builtins.int:
        return backend.default_cuda_index()

    @staticmethod
    def set_device(index) -> None:
        cp = backend._get_cupy()
        if cp is not None:
            cp.cuda.Device(Device(index).index if not isinstance(index, _builtins.int)
                           else index).use()


cuda = _Cuda()

__version__ = "0.1.0"
_ = _grad_mode

from engine import amp, backends, nn, optim, utils  # noqa: E402
from engine.amp import autocast  # noqa: E402
from engine.backends import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: E402
from engine.serialization import load, save  # noqa: E402

cuda.amp = amp.cuda_amp  # torch.cuda.amp.autocast / GradScaler
