"""``engine.amp.GradScaler``: torch's dynamic loss scaling for float16 training.

``scale(loss)`` multiplies by the scale so small float16 gradients do not flush to zero;
``step(optimizer)`` unscales the gradients (unless ``unscale_`` already did), and skips the
optimizer's step when any gradient is inf or NaN; ``update()`` then backs the scale off
(``backoff_factor``) after a skipped step, or grows it (``growth_factor``) after
``growth_interval`` clean steps in a row. The arithmetic is torch's, in float32
(``_amp_update_scale_``, the inverse scale as float32(1 / float64(scale))), so the sequence of
scales and skipped steps equals torch's for the same gradients.
"""
from __future__ import annotations

import warnings
from collections import abc, defaultdict
from enum import Enum
from typing import Any

import numpy as np

from engine.backend import get_array_module

__all__ = ["GradScaler", "OptState"]


class OptState(Enum):
    READY = 0
    UNSCALED = 1
    STEPPED = 2


def _fresh_state() -> dict:
    return {"stage": OptState.READY, "found_inf_per_device": {}}


class GradScaler:
    """torch.amp.GradScaler(device="cuda", init_scale=2.**16, growth_factor=2.0,
    backoff_factor=0.5, growth_interval=2000, enabled=True)."""

    def __init__(self, device: str = "cuda", init_scale: float = 2.0**16, growth_factor: float = 2.0,
                 backoff_factor: float = 0.5, growth_interval: int = 2000, enabled: bool = True) -> None:
        self._device = str(device).split(":")[0]
        if self._device not in ("cpu", "cuda"):
            raise RuntimeError(f"GradScaler: unsupported device {device!r} (cpu or cuda)")
        if enabled and self._device == "cuda":
            from engine.backend import cuda_is_available

            if not cuda_is_available():
                warnings.warn("engine.amp.GradScaler is enabled, but CUDA is not available.  "
                              "Disabling.", stacklevel=2)
                enabled = False
        self._enabled = bool(enabled)
        if self._enabled:
            if growth_factor <= 1.0:
                raise ValueError("The growth factor must be > 1.0.")
            if backoff_factor >= 1.0:
                raise ValueError("The backoff factor must be < 1.0.")
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._init_growth_tracker = 0
        self._scale: Any = None  # float32 0-d engine Tensor on the outputs' device, made lazily
        self._growth_tracker: int | None = None
        self._per_optimizer_states: defaultdict = defaultdict(_fresh_state)

    # ----- scaling ---------------------------------------------------------------------
    def _lazy_init(self, like: Any) -> None:
        from engine.ops.creation import full

        self._scale = full((), self._init_scale, dtype="float32", device=like.device)
        self._growth_tracker = self._init_growth_tracker

    def _check(self, funcname: str) -> None:
        if self._scale is None:
            raise RuntimeError(f"Attempted {funcname} but _scale is None.  This may indicate your "
                               "script did not use scaler.scale(loss or outputs) earlier in the "
                               "iteration.")

    def scale(self, outputs: Any) -> Any:
        """``outputs`` (a Tensor or nested lists/tuples of them) times the current scale."""
        from engine.tensor import Tensor

        if not self._enabled:
            return outputs

        def apply(val: Any) -> Any:
            if isinstance(val, Tensor):
                if self._scale is None:
                    self._lazy_init(val)
                s = self._scale if self._scale.device == val.device else self._scale.to(val.device)
                return val * s
            if isinstance(val, abc.Iterable):
                it = map(apply, val)
                return type(val)(it) if isinstance(val, (list, tuple)) else it
            raise ValueError("outputs must be a Tensor or an iterable of Tensors")
        return apply(outputs)

    # ----- unscaling and stepping ------------------------------------------------------------
    def _unscale_grads(self, optimizer: Any, inv_scale: float, allow_fp16: bool) -> dict:
        """Multiply every gradient by ``inv_scale`` in place; per device, whether any was not
        finite (checked before unscaling, as torch's kernel does)."""
        from engine import fused

        found: dict = {}
        for group in optimizer.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad._data
                if not allow_fp16 and g.dtype == np.float16:
                    raise ValueError("Attempting to unscale FP16 gradients.")
                key = str(p.grad.device)
                xp = get_array_module(g)
                flag = found.get(key)
                if flag is None:
                    flag = found[key] = xp.zeros(1, dtype=np.float32)
                if not fused.unscale_check_(xp, g, inv_scale, flag):
                    if not bool(xp.isfinite(g).all()):
                        flag[...] = 1.0
                    g *= g.dtype.type(inv_scale)
        return found

    def unscale_(self, optimizer: Any) -> None:
        """Divide ``optimizer``'s gradients by the scale (e.g. before clipping them)."""
        if not self._enabled:
            return
        self._check("unscale_")
        st = self._per_optimizer_states[id(optimizer)]
        if st["stage"] is OptState.UNSCALED:
            raise RuntimeError("unscale_() has already been called on this optimizer since the "
                               "last update().")
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("unscale_() is being called after step().")
        inv_scale = float(np.float32(1.0 / np.float64(self.get_scale())))
        st["found_inf_per_device"] = self._unscale_grads(optimizer, inv_scale, False)
        st["stage"] = OptState.UNSCALED

    def step(self, optimizer: Any, *args: Any, **kwargs: Any) -> Any:
        """``optimizer.step()`` unless a gradient was inf/NaN (then the step is skipped)."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        if "closure" in kwargs:
            raise RuntimeError("Closure use is not currently supported if GradScaler is enabled.")
        self._check("step")
        st = self._per_optimizer_states[id(optimizer)]
        if st["stage"] is OptState.STEPPED:
            raise RuntimeError("step() has already been called since the last update().")
        if st["stage"] is OptState.READY:
            self.unscale_(optimizer)
        if len(st["found_inf_per_device"]) == 0:
            raise RuntimeError("No inf checks were recorded for this optimizer.")
        retval = None
        if not sum(float(v.item()) for v in st["found_inf_per_device"].values()):
            retval = optimizer.step(*args, **kwargs)
        st["stage"] = OptState.STEPPED
        return retval

    def update(self, new_scale: Any = None) -> None:
        """Back off or grow the scale from this iteration's inf checks (or set ``new_scale``)."""
        if not self._enabled:
            return
        self._check("update")
        if new_scale is not None:
            if isinstance(new_scale, float):
                value = np.float32(new_scale)
            else:
                if getattr(new_scale, "numel", lambda: 0)() != 1 or new_scale.requires_grad:
                    raise ValueError("new_scale should be a float or a 1-element Tensor with "
                                     "requires_grad=False.")
                value = np.float32(float(new_scale.item()))
        else:
            infs = [float(f.item()) for s in self._per_optimizer_states.values()
                    for f in s["found_inf_per_device"].values()]
            if not infs:
                raise RuntimeError("No inf checks were recorded prior to update.")
            value = np.float32(self.get_scale())
            if sum(infs):
                value = np.float32(np.float64(value) * self._backoff_factor)
                self._growth_tracker = 0
            else:
                successful = self._growth_tracker + 1
                if successful == self._growth_interval:
                    with np.errstate(over="ignore"):  # an overflow to inf is checked below
                        grown = np.float32(np.float64(value) * self._growth_factor)
                    if np.isfinite(grown):
                        value = grown
                    self._growth_tracker = 0
                else:
                    self._growth_tracker = successful
        self._scale._data[...] = value
        self._per_optimizer_states = defaultdict(_fresh_state)

    # ----- accessors and state -----------------------------------------------------------
    def get_scale(self) -> float:
        if not self._enabled:
            return 1.0
        return self._init_scale if self._scale is None else float(self._scale._data)

    def get_growth_factor(self) -> float:
        return self._growth_factor

    def set_growth_factor(self, new_factor: float) -> None:
        self._growth_factor = float(new_factor)

    def get_backoff_factor(self) -> float:
        return self._backoff_factor

    def set_backoff_factor(self, new_factor: float) -> None:
        self._backoff_factor = float(new_factor)

    def get_growth_interval(self) -> int:
        return self._growth_interval

    def set_growth_interval(self, new_interval: int) -> None:
        self._growth_interval = int(new_interval)

    def _get_growth_tracker(self) -> int:
        return self._init_growth_tracker if self._growth_tracker is None else self._growth_tracker

    def is_enabled(self) -> bool:
        return self._enabled

    def state_dict(self) -> dict:
        """scale, growth_factor, backoff_factor, growth_interval, _growth_tracker ({} if disabled)."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor, "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict: dict) -> None:
        if not self._enabled:
            return
        if len(state_dict) == 0:
            raise RuntimeError("The source state dict is empty, possibly because it was saved "
                               "from a disabled instance of GradScaler.")
        self._init_scale = float(state_dict["scale"])
        if self._scale is not None:
            self._scale._data[...] = np.float32(self._init_scale)
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        self._init_growth_tracker = int(state_dict["_growth_tracker"])
        if self._growth_tracker is not None:
            self._growth_tracker = self._init_growth_tracker
