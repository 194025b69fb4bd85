"""Module.state_dict / load_state_dict as a mixin of Module: torch's keys, order, errors and
strictness, loading from engine tensors, numpy arrays or CPU torch tensors."""
from __future__ import annotations

from collections import OrderedDict, namedtuple
from typing import Any

import numpy as np

from engine.backend import get_array_module, to_numpy
from engine.nn.parameter import Parameter
from engine.tensor import Tensor

__all__ = ["StateDictMixin"]

_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _as_array_like(value: Any, like: Any) -> Any:
    """``value`` (engine Tensor, numpy/cupy array or anything np.asarray takes, such as a
    CPU torch tensor) as an array on ``like``'s device."""
    value = getattr(value, "_data", value)
    xp = get_array_module(like)
    if xp is np:
        return to_numpy(value)
    return xp.asarray(value)


class StateDictMixin:
    """state_dict/load_state_dict for Module (uses its _parameters, _buffers, _modules)."""

    def state_dict(self, *args: Any, destination: dict | None = None, prefix: str = "",
                   keep_vars: bool = False) -> dict[str, Tensor]:
        """Parameters and persistent buffers under torch's dotted keys. Values share memory with
        the module (detached) unless ``keep_vars``."""
        if args:  # torch's deprecated positional form: (destination, prefix, keep_vars)
            destination = args[0]
            if len(args) > 1:
                prefix = args[1]
            if len(args) > 2:
                keep_vars = args[2]
        if destination is None:
            destination = OrderedDict()
        self._save_to_state_dict(destination, prefix, keep_vars)
        for name, module in self._modules.items():
            if module is not None:
                module.state_dict(destination=destination, prefix=prefix + name + ".", keep_vars=keep_vars)
        return destination

    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        for name, p in self._parameters.items():
            if p is not None:
                destination[prefix + name] = p if keep_vars else Tensor._wrap(p._data)
        for name, b in self._buffers.items():
            if b is not None and name not in self._non_persistent_buffers_set:
                destination[prefix + name] = b if keep_vars else Tensor._wrap(b._data)

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> _IncompatibleKeys:
        """Copies tensors from ``state_dict`` (engine tensors, numpy arrays or CPU torch tensors)
        into this module's parameters and buffers. Shape mismatches always raise; missing and
        unexpected keys raise when ``strict``. Returns (missing_keys, unexpected_keys)."""
        if not hasattr(state_dict, "keys") or not hasattr(state_dict, "__getitem__"):
            raise TypeError(f"Expected state_dict to be dict-like, got {type(state_dict)}.")
        missing: list[str] = []
        errors: list[str] = []
        expected: set = set()
        for prefix_dot, module in self.named_modules(remove_duplicate=False):
            prefix = prefix_dot + "." if prefix_dot else ""
            module._load_from_state_dict(state_dict, prefix, assign, missing, errors, expected)
        unexpected = [k for k in state_dict.keys() if k not in expected]  # noqa: SIM118 (dict-likes)
        if strict:
            if unexpected:
                keys = ", ".join(f'"{k}"' for k in unexpected)
                errors.insert(0, f"Unexpected key(s) in state_dict: {keys}. ")
            if missing:
                keys = ", ".join(f'"{k}"' for k in missing)
                errors.insert(0, f"Missing key(s) in state_dict: {keys}. ")
        if errors:
            details = "\n\t".join(errors)
            raise RuntimeError(f"Error(s) in loading state_dict for {self._get_name()}:\n\t{details}")
        return _IncompatibleKeys(missing, unexpected)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, assign: bool, missing: list,
                              errors: list, expected: set) -> None:
        persistent = {k: v for k, v in self._buffers.items() if k not in self._non_persistent_buffers_set}
        local = {**{k: v for k, v in self._parameters.items() if v is not None},
                 **{k: v for k, v in persistent.items() if v is not None}}
        for name, target in local.items():
            key = prefix + name
            expected.add(key)
            if key not in state_dict:
                missing.append(key)
                continue
            value = state_dict[key]
            src_shape = tuple(getattr(value, "shape", np.shape(value)))
            if src_shape != tuple(target._data.shape):
                errors.append(
                    f"size mismatch for {key}: copying a param with shape {list(src_shape)} from checkpoint, "
                    f"the shape in current model is {list(target._data.shape)}."
                )
                continue
            try:
                array = _as_array_like(value, target._data)
                if assign:
                    new = array.astype(target._data.dtype, copy=False)
                    if isinstance(target, Parameter):
                        target._data = new
                    else:
                        self._buffers[name] = Tensor._wrap(new)
                else:
                    xp = get_array_module(target._data)
                    xp.copyto(target._data, array, casting="unsafe")
            except Exception as ex:  # noqa: BLE001 - reported like torch does
                errors.append(f'While copying the parameter named "{key}", whose dimensions in the model are '
                              f"{list(target._data.shape)} and whose dimensions in the checkpoint are "
                              f"{list(src_shape)}, an exception occurred : {ex.args}.")
