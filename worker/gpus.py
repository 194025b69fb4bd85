"""The GPUs of this host and which job holds which.

A host's worker processes share its GPUs: each job takes ``devices`` distinct GPUs (at most
the host's count; a larger job spans hosts, ``worker.nodes``) for as long as it runs. The
hold is an exclusive ``flock`` on one lock file per GPU, named by the GPU's physical id, so
it works between threads and processes alike, two ``trainyard worker`` commands with
overlapping ``--gpus`` still never share one, and a process that dies lets go at once (the
kernel drops its locks). A host-wide lock around the scan makes taking several GPUs one
atomic step: no two jobs each hold half of what both need.

No GPU here? Pass the device list (``Gpu`` values) and a lock directory; nothing below
touches cupy except ``visible()``'s default counter.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Allocation", "Allocator", "Gpu", "parse", "select", "visible"]


@dataclass(frozen=True)
class Gpu:
    """One GPU: ``index`` is the engine's ``cuda:<index>`` in this process, ``label`` its
    physical id (the CUDA_VISIBLE_DEVICES entry it came from), which names its lock."""

    index: int
    label: str


def parse(spec: str) -> list[int] | None:
    """``--gpus``: 'all' -> None (every visible GPU), 'none' or '' -> [], '0,1,3' -> [0, 1, 3].
    Raises ValueError naming the bad entry."""
    spec = spec.strip().lower()
    if spec == "all":
        return None
    if spec in ("", "none"):
        return []
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part.isdigit():
            raise ValueError(f"--gpus: {part!r} is not a GPU index (give 'all', 'none' or e.g. '0,1,3')")
        if int(part) in out:
            raise ValueError(f"--gpus: GPU {part} is listed twice")
        out.append(int(part))
    return out


def _cupy_count() -> int:
    from engine.backend import cuda_device_count

    return cuda_device_count()


def visible(count: Callable[[], int] = _cupy_count, environ: dict[str, str] | None = None) -> list[Gpu]:
    """The GPUs this process sees: cupy's device count, labelled by CUDA_VISIBLE_DEVICES.
    TRAINYARD_FAKE_GPUS=N (tests only, on machines without GPUs) claims N instead: such a
    worker joins the GPU queue and holds "GPUs" while its ranks compute on the CPU."""
    env = os.environ if environ is None else environ
    fake = env.get("TRAINYARD_FAKE_GPUS", "")
    n = int(fake) if fake.isdigit() else count()
    labels = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    return [Gpu(i, labels[i] if i < len(labels) else str(i)) for i in range(n)]


def select(spec: str, available: list[Gpu]) -> list[Gpu]:
    """The GPUs ``spec`` (``parse``) names among ``available``, by index; ValueError for one
    this host does not have."""
    wanted = parse(spec)
    if wanted is None:
        return list(available)
    by_index = {g.index: g for g in available}
    missing = [i for i in wanted if i not in by_index]
    if missing:
        raise ValueError(f"--gpus: this host has no GPU {missing[0]} (it sees {len(available)})")
    return [by_index[i] for i in wanted]


def visible_devices(spec: str, environ: dict[str, str] | None = None) -> str | None:
    """The CUDA_VISIBLE_DEVICES value that limits a child process to ``spec``'s GPUs (None:
    leave it as it is), mapped through an existing CUDA_VISIBLE_DEVICES."""
    wanted = parse(spec)
    if wanted is None:
        return None
    env = os.environ if environ is None else environ
    current = [v.strip() for v in env.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if current:
        if any(i >= len(current) for i in wanted):
            raise ValueError(f"--gpus {spec}: CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']} has "
                             f"{len(current)} GPUs")
        return ",".join(current[i] for i in wanted)
    return ",".join(str(i) for i in wanted)


def default_lock_dir() -> Path:
    return Path(tempfile.gettempdir()) / f"trainyard-gpu-locks-{os.getuid()}"


class Allocation:
    """GPUs one job holds until ``release`` (or the end of a ``with`` block)."""

    def __init__(self, gpus: list[Gpu], fds: list[int]):
        self.gpus, self._fds = gpus, fds

    @property
    def indices(self) -> list[int]:
        return [g.index for g in self.gpus]

    @property
    def labels(self) -> list[str]:
        return [g.label for g in self.gpus]

    def release(self) -> None:
        fds, self._fds = self._fds, []
        for fd in fds:
            os.close(fd)  # closing the descriptor drops its flock

    def __enter__(self) -> Allocation:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class Allocator:
    """Hands out distinct GPUs of ``gpus`` to jobs; every allocator (in any process of this
    host) with the same ``lock_dir`` sees the others' holds."""

    def __init__(self, gpus: list[Gpu], lock_dir: Path | None = None):
        self.gpus = list(gpus)
        self.lock_dir = Path(lock_dir or default_lock_dir())
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        self._thread_lock = threading.Lock()

    def _open(self, name: str) -> int:
        return os.open(self.lock_dir / name, os.O_RDWR | os.O_CREAT, 0o600)

    def acquire(self, n: int, holder: str = "") -> Allocation | None:
        """``n`` free GPUs held for ``holder`` (lowest indices first), or None if fewer than
        ``n`` are free now. ValueError if this host has fewer than ``n`` at all."""
        if n < 0 or n > len(self.gpus):
            raise ValueError(f"asked for {n} GPUs; this host has {len(self.gpus)}")
        if n == 0:
            return Allocation([], [])
        with self._thread_lock:
            scan = self._open("alloc.lock")
            try:
                fcntl.flock(scan, fcntl.LOCK_EX)  # one scanner at a time on this host
                taken: list[tuple[Gpu, int]] = []
                for gpu in self.gpus:
                    fd = self._open(f"gpu-{gpu.label}.lock")
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        os.close(fd)
                        continue
                    os.ftruncate(fd, 0)
                    os.write(fd, holder.encode())
                    taken.append((gpu, fd))
                    if len(taken) == n:
                        return Allocation([g for g, _ in taken], [f for _, f in taken])
                for _, fd in taken:
                    os.close(fd)
                return None
            finally:
                os.close(scan)  # drops the scan lock

    def busy(self) -> dict[str, str]:
        """GPU label -> its holder, for the GPUs some job holds now (any process)."""
        out: dict[str, str] = {}
        scan = self._open("alloc.lock")
        try:
            fcntl.flock(scan, fcntl.LOCK_EX)  # a probe must not make a concurrent acquire skip a GPU
            for gpu in self.gpus:
                fd = self._open(f"gpu-{gpu.label}.lock")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    out[gpu.label] = os.pread(fd, 256, 0).decode(errors="replace")
                finally:
                    os.close(fd)
        finally:
            os.close(scan)
        return out
