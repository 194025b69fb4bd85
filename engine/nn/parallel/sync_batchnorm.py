"""SyncBatchNorm (torch.nn.SyncBatchNorm): batch statistics over the whole global batch.

The per-channel sum and the sum of squared deviations are all-reduced (two passes,
as BatchNorm's own mean-then-variance, so a DDP run equals one process on the
union batch to rounding). The all-reduce is differentiable: its backward is the
all-reduce of the incoming gradient, which is exactly SyncBatchNorm's backward.
Without an initialized process group (or in eval mode) it is plain BatchNorm.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from engine import distributed as dist
from engine.autograd.function import Function
from engine.backend import xp_of
from engine.nn.module import Module
from engine.nn.normalization import _BatchNorm
from engine.tensor import Tensor

__all__ = ["SyncBatchNorm"]


class _AllReduceSum(Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        out = Tensor._wrap(x._data.copy())
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> Tensor:
        out = Tensor._wrap(g._data.copy())
        dist.all_reduce(out)
        return out


def _all_reduce_sum(x: Tensor) -> Tensor:
    return _AllReduceSum.apply(x)


class SyncBatchNorm(_BatchNorm):
    """BatchNorm over N-D input (N, C, ...) with statistics shared by every rank."""

    _expected_dims = (2, 3, 4, 5)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                 track_running_stats: bool = True, process_group: Any = None, device: Any = None,
                 dtype: Any = None) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, device, dtype)
        self.process_group = process_group

    def forward(self, input: Tensor) -> Tensor:
        self._check_input_dim(input)
        if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(input)
        momentum = 0.0 if self.momentum is None else self.momentum
        if self.track_running_stats:
            self.num_batches_tracked._data += 1
            if self.momentum is None:
                momentum = 1.0 / float(self.num_batches_tracked._data)
        dims = (0,) + tuple(range(2, input.dim()))
        shape = (1, -1) + (1,) * (input.dim() - 2)
        local_n = input.numel() // input.shape[1]
        count = xp_of(input._data).array([local_n], dtype=np.int64)
        dist.all_reduce(count)  # ranks may hold batches of different sizes
        n = float(count[0])
        mean = _all_reduce_sum(input.sum(dims)) / n
        centered = input - mean.reshape(shape)
        var = _all_reduce_sum((centered * centered).sum(dims)) / n
        out = centered / (var.reshape(shape) + self.eps).sqrt()
        if self.track_running_stats:
            rm, rv = self.running_mean._data, self.running_var._data
            rm *= 1 - momentum
            rm += momentum * mean._data.astype(rm.dtype, copy=False)
            rv *= 1 - momentum
            rv += momentum * (var._data * (n / (n - 1))).astype(rv.dtype, copy=False)
        if self.weight is not None:
            out = out * self.weight.reshape(shape)
        if self.bias is not None:
            out = out + self.bias.reshape(shape)
        return out

    @classmethod
    def convert_sync_batchnorm(cls, module: Module, process_group: Any = None) -> Module:
        """Replaces every BatchNorm*D in ``module`` by a SyncBatchNorm with the same state."""
        out = module
        if isinstance(module, _BatchNorm) and not isinstance(module, SyncBatchNorm):
            out = cls(module.num_features, module.eps, module.momentum, module.affine,
                      module.track_running_stats, process_group)
            if module.affine:
                out.weight = module.weight
                out.bias = module.bias
            out.running_mean = module.running_mean
            out.running_var = module.running_var
            out.num_batches_tracked = module.num_batches_tracked
            out.training = module.training
        for name, child in module.named_children():
            out.add_module(name, cls.convert_sync_batchnorm(child, process_group))
        return out
