"""Training time before running: a plan's FLOPs divided by a device's measured FLOP/s.

A training step costs about three forward passes (forward, and backward's two products per
layer); validation one. Workers report what finished jobs achieved
(``store.repositories.throughput``); until a device kind has measurements, a conservative
default stands in and the estimate says it is not calibrated."""
from __future__ import annotations

from typing import Any

BACKWARD_FACTOR = 3
DEFAULT_FLOPS_PER_S = {"cpu": 2e9, "cuda": 2e12}  # uncalibrated stand-ins: a small CPU worker, a GPU


def epoch_flops(flops_per_sample: int, train_samples: int, val_samples: int) -> int:
    return BACKWARD_FACTOR * flops_per_sample * train_samples + flops_per_sample * val_samples


def estimate(flops: float, rates: dict[str, tuple[float | None, int]], devices: int = 1) -> dict[str, Any]:
    """Per device kind: estimated seconds, the FLOP/s assumed (per device), whether measured
    jobs calibrated it and how many. ``rates``: device -> (median FLOP/s or None, count)."""
    out = {}
    for device, default in DEFAULT_FLOPS_PER_S.items():
        measured, count = rates.get(device, (None, 0))
        rate = measured or default
        out[device] = {"seconds": flops / (rate * max(devices, 1)), "flops_per_s": rate,
                       "calibrated": measured is not None, "measurements": count}
    return out
