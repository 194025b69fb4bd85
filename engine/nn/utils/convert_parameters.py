"""parameters_to_vector / vector_to_parameters."""
from __future__ import annotations

from collections.abc import Iterable

from engine.tensor import Tensor

__all__ = ["parameters_to_vector", "vector_to_parameters"]


def parameters_to_vector(parameters: Iterable[Tensor]) -> Tensor:
    """All parameters flattened and concatenated (differentiable)."""
    import engine

    return engine.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec: Tensor, parameters: Iterable[Tensor]) -> None:
    """Copies slices of ``vec`` into the parameters' arrays (in order)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected Tensor, but got: {type(vec).__name__}")
    offset = 0
    data = vec._data
    for p in parameters:
        n = p._data.size
        p._data[...] = data[offset:offset + n].reshape(p._data.shape)
        offset += n
