"""A job's memory: the peak resident set of the process that trains it (reset when a job
starts, where the kernel allows), on a GPU the memory the engine's pool holds, and the cap a
supervised training child runs under (``RLIMIT_AS``: an allocation past it fails with
MemoryError instead of the kernel's OOM killer taking the worker down)."""
from __future__ import annotations

import os
import resource

_cap: dict[str, int] = {}  # what this process runs under: {"cap_bytes": ..., "estimate_bytes": ...}


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


def status_bytes(field: str, pid: int | str = "self") -> int | None:
    """A ``kB`` field of /proc/<pid>/status (VmHWM, VmRSS, VmSize, VmPeak) in bytes; None
    where there is no such process or field."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return None


def _peak_rss() -> int:
    peak = status_bytes("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def machine_memory_bytes() -> int:
    """Physical memory of the machine (MemTotal)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


# address space a thread reserves without using it: its stack and its malloc arena
THREAD_RESERVE_BYTES = 8 * 2**20 + 64 * 2**20


def cap_bytes(*, estimate: int, data_bytes: int, baseline: int, margin: float, overhead: int, ceiling: int,
              ranks: int = 1) -> int:
    """The address space a training child may use: what it already maps (``baseline``), the
    plan's estimate with a margin, room for the training copies of its data (the float32
    tensor and the split: three copies), a fixed overhead, and for a data-parallel job rank
    0's threads (the rendezvous store serves each rank on a thread of its own); never above
    ``ceiling`` (0: the machine's memory)."""
    threads = 2 * ranks if ranks > 1 else 0
    want = baseline + int(estimate * margin) + 3 * data_bytes + overhead + threads * THREAD_RESERVE_BYTES
    return min(want, ceiling or machine_memory_bytes())


def apply_cap(cap: int, estimate: int) -> None:
    """Cap this process's address space at ``cap`` bytes (children it starts inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = cap if hard == resource.RLIM_INFINITY else min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    _cap.update(cap_bytes=limit, estimate_bytes=estimate)


def cap_note() -> str:
    """How this process's memory compares with its cap, for an ``oom`` failure's message."""
    peak = _peak_rss()
    note = f"peak RSS {peak / 2**20:.0f} MiB"
    if _cap:
        note += f", memory cap {_cap['cap_bytes'] / 2**20:.0f} MiB of address space"
    return note


def kernel_oom_kills() -> int:
    """The kernel's count of processes its OOM killer ended (/proc/vmstat oom_kill): a child
    SIGKILLed while it rose was the OOM killer's, not an operator's."""
    try:
        with open("/proc/vmstat") as f:
            for line in f:
                if line.startswith("oom_kill "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0
