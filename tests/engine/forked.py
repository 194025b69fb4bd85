"""Run a function in a forked child (as a DataLoader worker is) and return what it returned."""
from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


def in_forked_child(fn: Callable[[], Any], timeout: float) -> Any:
    """``fn()`` in a child made by fork; the child must exit 0 within ``timeout`` seconds (a
    hang, e.g. on a thread pool the fork did not copy, fails here)."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    proc = ctx.Process(target=lambda: q.put(fn()))
    proc.start()
    proc.join(timeout=timeout)
    if proc.is_alive():
        proc.kill()
    assert proc.exitcode == 0
    return q.get(timeout=5)
