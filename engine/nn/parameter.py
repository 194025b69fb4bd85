"""nn.Parameter: a Tensor that a Module registers as a learnable weight."""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from engine.tensor import Tensor

__all__ = ["Buffer", "Parameter"]


class Parameter(Tensor):
    """A leaf Tensor that requires grad by default and is registered when set on a Module.

    It shares the array of ``data`` (no copy), like ``torch.nn.Parameter``.
    """

    def __new__(cls, data: Any = None, requires_grad: bool = True) -> Parameter:
        if data is None:
            data = Tensor._wrap(np.empty((0,), dtype=np.float32))
        elif not isinstance(data, Tensor):
            data = Tensor._wrap(np.asarray(data))
        return Tensor._make_subclass(cls, data, requires_grad)

    def __init__(self, data: Any = None, requires_grad: bool = True) -> None:
        pass  # all set up in __new__; Tensor.__init__ must not run again

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()

    def __deepcopy__(self, memo: dict) -> Parameter:
        if id(self) in memo:
            return memo[id(self)]
        result = Parameter(Tensor._wrap(self._data.copy()), self.requires_grad)
        memo[id(self)] = result
        if self.grad is not None:
            result.grad = copy.deepcopy(self.grad, memo)
        return result


class Buffer:
    """Marks a tensor to be registered as a buffer when assigned to a Module (torch.nn.Buffer)."""

    def __init__(self, data: Tensor, *, persistent: bool = True) -> None:
        self.data = data
        self.persistent = persistent
