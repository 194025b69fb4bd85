"""default_collate / default_convert: torch's rules for turning samples into a batch."""
from __future__ import annotations

import collections.abc
from typing import Any

import numpy as np

from engine.backend import get_array_module
from engine.tensor import Tensor

__all__ = ["default_collate", "default_convert"]

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}")


def _tensor(data: Any, dtype: Any = None) -> Tensor:
    from engine.tensor import tensor

    return tensor(data, dtype=dtype)


def _numeric_numpy(x: Any) -> bool:
    return isinstance(x, (np.ndarray, np.generic)) and x.dtype.kind in "biuf"


def default_collate(batch: list) -> Any:
    """Stacks tensors/arrays, turns numbers into tensors (float -> float64, int -> int64),
    recurses into dicts, namedtuples and sequences (tuples come back as lists), keeps strings."""
    elem = batch[0]
    if isinstance(elem, Tensor):
        shape = elem.shape
        if any(b.shape != shape for b in batch):
            raise RuntimeError("stack expects each tensor to be equal size, but got "
                               f"{list(shape)} and {list(next(b.shape for b in batch if b.shape != shape))}")
        xp = get_array_module(elem._data)
        return Tensor._wrap(xp.stack([b._data for b in batch]))
    if isinstance(elem, (np.ndarray, np.generic)) and not isinstance(elem, (np.str_, np.bytes_)):
        if not _numeric_numpy(elem):
            raise TypeError(_ERR.format(elem.dtype))
        return _tensor(np.stack([np.asarray(b) for b in batch]))
    if isinstance(elem, bool):
        return _tensor(batch)
    if isinstance(elem, float):
        return _tensor(batch, dtype="float64")
    if isinstance(elem, int):
        return _tensor(batch, dtype="int64")
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, collections.abc.Mapping):
        collated = {key: default_collate([d[key] for d in batch]) for key in elem}
        try:
            return type(elem)(collated)
        except TypeError:
            return collated
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # namedtuple
        return type(elem)(*(default_collate(list(samples)) for samples in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if not all(len(e) == size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        transposed = [default_collate(list(samples)) for samples in zip(*batch)]
        if isinstance(elem, tuple):
            return transposed
        try:
            return type(elem)(transposed)
        except TypeError:
            return transposed
    raise TypeError(_ERR.format(type(elem)))


def default_convert(data: Any) -> Any:
    """Without batching: numpy arrays become tensors; containers are converted recursively."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, (np.ndarray, np.generic)) and _numeric_numpy(data):
        return _tensor(data)
    if isinstance(data, collections.abc.Mapping):
        converted = {k: default_convert(v) for k, v in data.items()}
        try:
            return type(data)(converted)
        except TypeError:
            return converted
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        try:
            return type(data)([default_convert(d) for d in data])
        except TypeError:
            return [default_convert(d) for d in data]
    return data
