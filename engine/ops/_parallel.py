"""Large elementwise ufuncs split over a small thread pool (numpy releases the GIL in its loops).

numpy runs one ufunc on one core; for compute-bound functions (exp, tanh, sin, cos) on
big contiguous arrays, chunks on ``os.cpu_count()`` threads finish proportionally sooner.
Results are bit-identical: an elementwise ufunc computes each element alone, whatever
the chunking. Small, strided or non-numpy (cupy) arrays take the plain call.
``ENGINE_NUM_THREADS`` caps the pool (1 turns splitting off).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from engine.backend import blas_threads

__all__ = ["num_threads", "unary_ufunc"]

MIN_ELEMENTS = 1 << 18  # below this, thread hand-off costs more than it saves
_pool: ThreadPoolExecutor | None = None


def num_threads() -> int:
    """Threads an elementwise op may use (ENGINE_NUM_THREADS, else the CPU count)."""
    env = os.environ.get("ENGINE_NUM_THREADS")
    return max(1, int(env)) if env else max(1, os.cpu_count() or 1)


_N = num_threads()


_pool_pid = 0


def _get_pool() -> ThreadPoolExecutor:
    """The engine's pool, made anew in a forked child (which inherits the pool object but not
    its threads: work submitted there would never run)."""
    global _pool, _pool_pid
    if _pool is None or _pool_pid != os.getpid():
        _pool = ThreadPoolExecutor(max_workers=_N - 1, thread_name_prefix="engine-ufunc")
        _pool_pid = os.getpid()
    return _pool


def _call(ufunc: Any, x: Any, out: Any, err: dict) -> None:
    with np.errstate(**err):
        ufunc(x, out=out)


def unary_ufunc(ufunc: Any, x: Any, out: Any = None) -> Any:
    """``ufunc(x, out=out)``, split into chunks over the pool when ``x`` is large and contiguous."""
    if (_N < 2 or type(x) is not np.ndarray or x.size < MIN_ELEMENTS
            or not x.flags.c_contiguous or (out is not None and not out.flags.c_contiguous)):
        return ufunc(x, out=out) if out is not None else ufunc(x)
    if out is None:
        out = np.empty_like(x)
    xf, of = x.reshape(-1), out.reshape(-1)
    n = xf.size
    step = -(-n // _N)
    pool = _get_pool()
    err = np.geterr()  # np.errstate is per thread: carry the caller's into the workers
    futures = [pool.submit(_call, ufunc, xf[i:i + step], of[i:i + step], err)
               for i in range(step, n, step)]
    ufunc(xf[:step], out=of[:step])  # the caller's share
    for f in futures:
        f.result()
    return out


def split_rows(fn: Any, n: int, size: int, blas: bool = False) -> None:
    """Run ``fn(lo, hi)`` over [0, n) in up to ``num_threads()`` contiguous parts at once (the
    caller takes the first) when ``size``, the elements the whole call touches, is large enough;
    else ``fn(0, n)``. ``fn`` must write disjoint outputs per part and spend its time in numpy
    calls that release the GIL (copies, ufunc loops, GEMMs).

    ``blas``: the parts call BLAS. OpenBLAS then runs on one thread for the duration: two
    threads each asking OpenBLAS's pool for every core queue behind each other (a chunked
    ResNet conv took 14 ms on 2 threads that way, 5 ms on one)."""
    if _N < 2 or n < 2 or size < 4 * MIN_ELEMENTS:
        fn(0, n)
        return
    parts = min(_N, n)
    step = -(-n // parts)
    pool = _get_pool()
    if blas:
        blas_threads.hold_one()
    try:
        futures = [pool.submit(fn, lo, min(lo + step, n)) for lo in range(step, n, step)]
        try:
            fn(0, step)
        finally:
            for f in futures:
                f.result()
    finally:
        if blas:
            blas_threads.release()
