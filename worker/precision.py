"""A job's ``training.precision`` as the training loop uses it: an autocast region factory for
the forward and losses, and a GradScaler for backward and the optimizer step.

"32" is a no-op region and a disabled scaler (``scale`` is the identity, ``step`` is the
optimizer's), so a float32 job runs exactly as before. "16-mixed" is
``engine.autocast("cuda", float16)`` with ``engine.amp.GradScaler("cuda")`` on a GPU worker;
the planner refuses it for CPU jobs, and a CPU worker that gets one anyway fails it clearly
rather than training silently in float32. "bf16-mixed" is refused (no bfloat16 in the engine).
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import engine


class PrecisionUnavailable(RuntimeError):
    """The job's training.precision cannot run on this worker."""


def for_training(precision: str, device: Any) -> tuple[Callable[[], Any], engine.amp.GradScaler]:
    """(a zero-argument factory of the step's autocast context, the GradScaler) for ``precision``."""
    if precision == "32":
        return contextlib.nullcontext, engine.amp.GradScaler("cpu", enabled=False)
    if precision == "16-mixed":
        if engine.device(device).type != "cuda":
            raise PrecisionUnavailable("training.precision 16-mixed needs a GPU worker; this worker "
                                       "trains on the CPU")
        return (lambda: engine.autocast("cuda", dtype=engine.float16)), engine.amp.GradScaler("cuda")
    raise PrecisionUnavailable(f"training.precision {precision!r} is not supported by the engine "
                               "(it has no bfloat16); use 32 or 16-mixed")
