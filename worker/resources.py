"""A job's peak memory: the worker process's resident set (reset when a job starts, where
the kernel allows) and, on a GPU, the memory the engine's pool holds."""
from __future__ import annotations

import resource


def reset_peak() -> None:
    """Start measuring the peak RSS afresh (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass  # not Linux, or not allowed: the peak then covers the process's whole life


def peak_memory_bytes(device: str) -> dict[str, float]:
    """``peak_rss_bytes`` and, on a GPU, ``gpu_pool_bytes``."""
    out = {"peak_rss_bytes": float(_peak_rss())}
    if device.startswith("cuda"):
        import cupy

        out["gpu_pool_bytes"] = float(cupy.get_default_memory_pool().total_bytes())
    return out


def _peak_rss() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
