"""optim.Optimizer: param groups, per-parameter state and torch's state_dict layout.

Subclasses implement ``step`` as whole-array updates on ``p._data`` (numpy or cupy),
one vectorized expression per parameter; gradients never build a graph.
"""
from __future__ import annotations

import copy
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from engine.backend import get_array_module, to_numpy
from engine.ops._parallel import split_rows
from engine.tensor import Tensor, zero_grads

__all__ = ["Optimizer", "required"]


class _RequiredParameter:
    def __repr__(self) -> str:
        return "<required parameter>"


required = _RequiredParameter()


class Optimizer:
    """Base class: ``Optimizer(params, defaults)`` where params is an iterable of tensors,
    of (name, tensor) pairs, or of dicts (param groups with per-group options)."""

    def __init__(self, params: Iterable[Any], defaults: dict[str, Any]) -> None:
        self.defaults = defaults
        self.state: dict = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError("params argument given to the optimizer should be an iterable of Tensors "
                            f"or dicts, but got {type(params).__name__}")
        param_groups = list(params)
        if len(param_groups) == 0:
            raise ValueError("optimizer got an empty parameter list")
        if not isinstance(param_groups[0], dict):
            param_groups = [{"params": param_groups}]
        for group in param_groups:
            self.add_param_group(group)

    def __getstate__(self) -> dict:
        return {"defaults": self.defaults, "state": self.state, "param_groups": self.param_groups}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)

    def __repr__(self) -> str:
        s = self.__class__.__name__ + " ("
        for i, group in enumerate(self.param_groups):
            s += f"\nParameter Group {i}"
            for key in sorted(group):
                if key not in ("params", "param_names"):
                    s += f"\n    {key}: {group[key]}"
        return s + "\n)"

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Adds a group of parameters with its own options (the rest from defaults)."""
        if not isinstance(param_group, dict):
            raise TypeError(f"param_group must be a dict, but got {type(param_group).__name__}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            param_group["params"] = [params]
        elif isinstance(params, set):
            raise TypeError("optimizer parameters need to be organized in ordered collections, but "
                            "the ordering of tensors in sets will change between runs. Please use a list instead.")
        else:
            param_group["params"] = list(params)
        extracted = []
        names = []
        for p in param_group["params"]:
            if isinstance(p, tuple) and len(p) == 2:
                names.append(p[0])
                extracted.append(p[1])
            else:
                extracted.append(p)
        if names:
            if len(names) != len(extracted):
                raise ValueError("all optimizer params should be with/without names")
            param_group["param_names"] = names
        param_group["params"] = extracted
        for p in extracted:
            if not isinstance(p, Tensor):
                raise TypeError("optimizer can only optimize Tensors, but one of the params is " + type(p).__name__)
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf Tensor")
        for name, default in self.defaults.items():
            if default is required and name not in param_group:
                raise ValueError(f"parameter group didn't specify a value of required optimization parameter {name}")
            param_group.setdefault(name, default)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if any(id(p) in seen for p in extracted):
            raise ValueError("some parameters appear in more than one parameter group")
        if len({id(p) for p in extracted}) != len(extracted):
            import warnings

            warnings.warn("optimizer contains a parameter group with duplicate parameters", stacklevel=3)
        self.param_groups.append(param_group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Resets the gradients of all optimized parameters: to None, or to zeros in place."""
        zero_grads((p for group in self.param_groups for p in group["params"]), set_to_none)

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        raise NotImplementedError

    def _closure_loss(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        from engine.autograd.grad_mode import enable_grad

        with enable_grad():
            return closure()

    # ------------------------------------------------------------------ state_dict
    def state_dict(self) -> dict[str, Any]:
        """{'state': {index: {...}}, 'param_groups': [{..., 'params': [indices]}]} as torch."""
        index: dict = {}
        start = 0
        groups = []
        for group in self.param_groups:
            for p in group["params"]:
                if id(p) not in index:
                    index[id(p)] = start
                    start += 1
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index[id(p)] for p in group["params"]]
            groups.append(packed)
        state = {}
        for p, s in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: (Tensor._wrap(v._data) if isinstance(v, Tensor) else v)
                                       for k, v in s.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restores state saved by ``state_dict`` (also torch's, or via engine.load). State
        tensors are copied to each parameter's device; floating ones take its dtype, except
        'step', which stays as saved (torch's rule)."""
        groups = self.param_groups
        saved_groups = state_dict["param_groups"]
        if len(groups) != len(saved_groups):
            raise ValueError("loaded state dict has a different number of parameter groups")
        if any(len(g["params"]) != len(s["params"]) for g, s in zip(groups, saved_groups)):
            raise ValueError("loaded state dict contains a parameter group that doesn't match the size of "
                             "optimizer's group")
        id_map = {}
        for g, s in zip(groups, saved_groups):
            for old, p in zip(s["params"], g["params"]):
                id_map[int(old)] = p
        self.state = defaultdict(dict)
        for k, v in state_dict["state"].items():
            k = int(k)
            if k not in id_map:
                continue
            p = id_map[k]
            self.state[p] = {name: self._cast_state(p, name, value) for name, value in v.items()}
        new_groups = []
        for g, s in zip(groups, saved_groups):
            ng = {k: copy.deepcopy(v) for k, v in s.items() if k != "params"}
            if "betas" in ng and isinstance(ng["betas"], list):
                ng["betas"] = tuple(ng["betas"])
            ng["params"] = g["params"]
            if "param_names" in g and "param_names" not in ng:
                ng["param_names"] = g["param_names"]
            new_groups.append(ng)
        self.param_groups = new_groups

    @staticmethod
    def _cast_state(p: Tensor, name: str, value: Any) -> Any:
        if not isinstance(value, Tensor) and not hasattr(value, "__array__"):
            return value  # numbers, None, strings
        host = to_numpy(getattr(value, "_data", value))
        if name == "step":  # stays a host scalar in its saved dtype, as torch keeps it
            return Tensor._wrap(np.array(host))
        dtype = p._data.dtype if host.dtype.kind == "f" else host.dtype
        arr = host.astype(dtype, copy=True)
        xp = get_array_module(p._data)
        return Tensor._wrap(arr if xp is np else xp.asarray(arr))

    def _scratch(self, p: Any) -> Any:
        """A reusable work array shaped like ``p`` (kept out of ``state``, so out of state_dict)."""
        cache = self.__dict__.setdefault("_work", {})
        key = (p.shape, p.dtype.str, type(p))
        buf = cache.get(key)
        if buf is None:
            buf = cache[key] = get_array_module(p).empty_like(p)
        return buf


def _zero_step() -> Tensor:
    """torch's 'step' state entry: a float32 host scalar."""
    return Tensor._wrap(np.zeros((), dtype=np.float32))


def _zeros_like(p: Tensor) -> Tensor:
    xp = get_array_module(p._data)
    return Tensor._wrap(xp.zeros_like(p._data))


def _params_with_grad(group: dict) -> list:
    """The group's parameters that have a gradient (sparse gradients are not supported)."""
    return [p for p in group["params"] if p.grad is not None]


def _bump(p: Tensor) -> None:
    """Marks an in-place update, so autograd detects a stale saved tensor as torch does."""
    bump = getattr(p, "_bump", None)
    if bump is not None:
        bump()


# ---------------------------------------------------------------- blocked elementwise updates
_BLOCK = 1 << 17  # elements per block: 512 KiB of float32 per operand


def _foreach_blocked(kernel: Callable[..., None], *arrays: Any) -> None:
    """Runs ``kernel(*views)`` over aligned blocks of same-shaped arrays, so a many-op update
    reads and writes each element about once from memory (the fused pass torch's foreach
    kernels make) and blocks spread over the engine's threads (``split_rows``). Elementwise
    kernels give the same bits as one whole-array call; cupy arrays and small or strided ones
    take that call."""
    a0 = arrays[0]
    n = a0.size
    if get_array_module(a0) is not np or n < 4 * _BLOCK or not all(a.flags.c_contiguous for a in arrays):
        kernel(*arrays)
        return
    flats = [a.reshape(-1) for a in arrays]

    def run(lo: int, hi: int) -> None:  # blocks lo..hi
        for s in range(lo * _BLOCK, min(hi * _BLOCK, n), _BLOCK):
            e = min(s + _BLOCK, n)
            kernel(*(f[s:e] for f in flats))

    split_rows(run, -(-n // _BLOCK), n * len(arrays))
