"""Array-module dispatch and devices: numpy on the CPU, cupy on NVIDIA GPUs.

Ops never branch per device: they take ``xp = get_array_module(...)`` from their
inputs (as Chainer does) and call the same code on numpy or cupy arrays. cupy is
imported lazily, the first time a CUDA device is asked for or a non-numpy array
is seen, and only if it is installed.
"""
from __future__ import annotations

import ctypes
import importlib
import os
import sys
from typing import Any

import numpy as np

__all__ = [
    "Device",
    "array_device",
    "cuda_device_count",
    "cuda_is_available",
    "cupy_available",
    "device",
    "get_array_module",
    "move_to",
    "to_numpy",
]

_cupy: Any = None
_cupy_tried = False

_MALLOC_KEEP = 256 << 20  # bytes: arrays up to this size come from (and return to) the heap


def tune_malloc(keep_bytes: int = _MALLOC_KEEP) -> bool:
    """Keep freed large buffers in glibc's heap instead of giving them back to the kernel.

    glibc serves a big ``malloc`` with a fresh ``mmap`` and unmaps it on ``free``, so every
    new 4 MB activation or gradient page-faults 1000 zeroed pages: on the engine's 50-op
    chain bench that was ~54,000 minor faults and two thirds of the CPU time per step.
    Raising M_MMAP_THRESHOLD and M_TRIM_THRESHOLD lets the next array reuse warm memory
    (PyTorch users get the same effect from jemalloc/tcmalloc). The cost: the process keeps
    its peak heap. Runs once at import on glibc Linux; ``ENGINE_TUNE_MALLOC=0`` turns it off.
    Returns whether both settings took.
    """
    if not sys.platform.startswith("linux") or os.environ.get("ENGINE_TUNE_MALLOC", "1") == "0":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl or another libc: leave it alone
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, ctypes.c_int(keep_bytes)) == 1
    return bool(mallopt(m_trim_threshold, ctypes.c_int(keep_bytes)) == 1 and ok)


MALLOC_TUNED = tune_malloc()

_BLAS_TIMEOUT = "20"  # log2 of the CPU cycles an idle OpenBLAS thread spins: ~0.4 ms at 2.6 GHz


def _openblas_libs() -> list:
    """Paths of the OpenBLAS libraries loaded in this process (numpy's, and any other)."""
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line}
    except OSError:
        return []
    return sorted(p for p in paths if p.startswith("/"))


def quiet_blas_threads(timeout: str = _BLAS_TIMEOUT) -> bool:
    """Let OpenBLAS's idle worker threads sleep ~0.4 ms after a call instead of spinning 2^28 cycles.

    OpenBLAS (numpy's BLAS) keeps each worker thread spinning for 2^28 cycles, ~0.1 s, after
    every call, so a process that calls BLAS now and then (a training step between its
    elementwise ops, a data loader, an API answering predictions) keeps every core busy: a
    torch process beside it, or torch in the same process, loses its cores to the spinning
    (issue 17: torch's SimpleCNN step went from 14 to 40 ms next to the engine). This sets
    OPENBLAS_THREAD_TIMEOUT (inherited by child processes) and, as numpy loaded OpenBLAS
    already, makes the loaded library re-read it and restart its threads lazily (the path its
    own fork handler takes). A timeout the user set wins; ``ENGINE_TUNE_BLAS=0`` turns this off.
    Returns whether a loaded OpenBLAS now runs with the engine's timeout.
    """
    if os.environ.get("ENGINE_TUNE_BLAS", "1") == "0" or "OPENBLAS_THREAD_TIMEOUT" in os.environ:
        return False
    if not sys.platform.startswith("linux"):
        return False
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = timeout
    import threading

    if threading.active_count() > 1:  # another thread may be inside BLAS: children still inherit it
        return False
    done = False
    for path in _openblas_libs():
        try:
            lib = ctypes.CDLL(path)
            read_env, shutdown = lib.openblas_read_env, lib.blas_thread_shutdown_
        except (OSError, AttributeError):
            continue
        read_env()
        shutdown()  # the next threaded call starts the pool again with the new timeout
        done = True
    return done


BLAS_QUIETED = quiet_blas_threads()


class _BlasThreads:
    """Hold every loaded OpenBLAS (numpy's is symbol-prefixed) to one thread while the engine's
    own threads call it, and give it its threads back after. Nested and concurrent holds
    count: the first saves the libraries' thread counts, the last restores them."""

    NAMES = (("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
             ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
             ("openblas_get_num_threads", "openblas_set_num_threads"))

    def __init__(self) -> None:
        import threading

        self.pairs: list | None = None
        self._lock = threading.Lock()
        self._holds = 0
        self._saved: list = []
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._after_fork)

    def _after_fork(self) -> None:
        """A child forked during a hold (by another thread) starts unheld, with the counts back."""
        import threading

        self._lock = threading.Lock()
        if self._holds:
            self._holds = 0
            self._restore()

    def _restore(self) -> None:
        for (_, set_), n in zip(self.pairs or [], self._saved):
            set_(n)

    def _load(self) -> list:
        pairs = []
        for path in _openblas_libs():
            try:
                lib = ctypes.CDLL(path)
            except OSError:
                continue
            for get, set_ in self.NAMES:
                if hasattr(lib, get) and hasattr(lib, set_):
                    pairs.append((getattr(lib, get), getattr(lib, set_)))
                    break
        return pairs

    def hold_one(self) -> None:
        with self._lock:
            if self._holds == 0:
                if self.pairs is None:
                    self.pairs = self._load()
                self._saved = [get() for get, _ in self.pairs]
                for _, set_ in self.pairs:
                    set_(1)
            self._holds += 1

    def release(self) -> None:
        with self._lock:
            self._holds -= 1
            if self._holds == 0:
                self._restore()


blas_threads = _BlasThreads()


def _get_cupy() -> Any:
    """The cupy module, or None when it is not installed (tried once)."""
    global _cupy, _cupy_tried
    if not _cupy_tried:
        _cupy_tried = True
        try:
            _cupy = importlib.import_module("cupy")
        except Exception:  # ImportError, or a broken CUDA install
            _cupy = None
    return _cupy


def cupy_available() -> bool:
    return _get_cupy() is not None


def cuda_is_available() -> bool:
    """True when cupy is importable and sees at least one GPU."""
    return cuda_device_count() > 0


def cuda_device_count() -> int:
    cp = _get_cupy()
    if cp is None:
        return 0
    try:
        return int(cp.cuda.runtime.getDeviceCount())
    except Exception:
        return 0


class Device:
    """A device like ``torch.device``: ``Device("cpu")``, ``Device("cuda:1")``, ``Device("cuda", 0)``."""

    __slots__ = ("index", "type")

    def __new__(cls, spec: Any = "cpu", index: int | None = None) -> Device:
        if isinstance(spec, Device):
            return spec
        if isinstance(spec, int) and index is None:
            spec, index = "cuda", spec
        if not isinstance(spec, str):
            raise TypeError(f"device() expected a string, int or device, got {type(spec).__name__}")
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(
                f"Expected one of cpu, cuda device type at start of device string: {spec}"
            )
        if idx:
            if index is not None:
                raise RuntimeError(f"device index given twice: {spec!r} and {index}")
            if not idx.isdigit():
                raise RuntimeError(f"Invalid device string: '{spec}'")
            index = int(idx)
        key = (kind, index)
        cached = _DEVICES.get(key)
        if cached is not None:
            return cached
        self = object.__new__(cls)
        object.__setattr__(self, "type", kind)
        object.__setattr__(self, "index", index)
        _DEVICES[key] = self
        return self

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("Device is immutable")

    def __repr__(self) -> str:
        if self.index is None:
            return f"device(type='{self.type}')"
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self) -> str:
        return self.type if self.index is None else f"{self.type}:{self.index}"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, str):
            try:
                other = Device(other)
            except (RuntimeError, TypeError):
                return False
        if not isinstance(other, Device):
            return NotImplemented
        return self.type == other.type and self.index == other.index

    def __hash__(self) -> int:
        return hash((self.type, self.index))

    def __reduce__(self):  # pickling keeps the interning
        return (Device, (str(self),))


_DEVICES: dict = {}
device = Device
CPU = Device("cpu")


def get_array_module(*xs: Any) -> Any:
    """numpy, or cupy when any argument (an ndarray or an engine Tensor) lives on a GPU."""
    for x in xs:
        x = getattr(x, "_data", x)
        if type(x) is np.ndarray or x is None or isinstance(x, (int, float, bool, np.generic)):
            continue
        cp = _get_cupy()
        if cp is not None and isinstance(x, cp.ndarray):
            return cp
    return np


def xp_of(array: Any) -> Any:
    """The array module of one ndarray (the hot-path form of get_array_module)."""
    if type(array) is np.ndarray:
        return np
    return get_array_module(array)


def to_numpy(array: Any) -> np.ndarray:
    """A numpy array from a numpy or cupy array (copies device memory to the host)."""
    array = getattr(array, "_data", array)
    if isinstance(array, np.ndarray):
        return array
    cp = _get_cupy()
    if cp is not None and isinstance(array, cp.ndarray):
        return cp.asnumpy(array)
    return np.asarray(array)


def array_device(array: Any) -> Device:
    """The Device that holds an ndarray."""
    if type(array) is np.ndarray:
        return CPU
    cp = _get_cupy()
    if cp is not None and isinstance(array, cp.ndarray):
        return Device("cuda", int(array.device.id))
    return CPU


def move_to(array: Any, dev: Device) -> Any:
    """The array on device ``dev`` (the same object when it is already there)."""
    if dev.type == "cpu":
        return to_numpy(array)
    cp = _get_cupy()
    if cp is None:
        raise RuntimeError(
            "CUDA device requested but cupy is not installed (pip install 'trainyard[gpu]')"
        )
    if cuda_device_count() == 0:
        raise RuntimeError("CUDA device requested but no CUDA GPU is available")
    index = 0 if dev.index is None else dev.index
    if isinstance(array, cp.ndarray) and int(array.device.id) == index:
        return array
    with cp.cuda.Device(index):
        return cp.asarray(array)


def default_cuda_index() -> int:
    cp = _get_cupy()
    return int(cp.cuda.runtime.getDevice()) if cp is not None else 0
