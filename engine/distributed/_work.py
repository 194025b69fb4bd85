"""Work handles and the per-group communication thread that runs collectives in issue order."""
from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["CommThread", "Work"]


class Work:
    """What an ``async_op=True`` collective returns (torch.distributed.Work)."""

    def __init__(self, op: str = "", result: Any = None) -> None:
        self.op = op
        self._done = threading.Event()
        self._exc: BaseException | None = None
        self._result = result
        self._callbacks: list[Callable[[Work], Any]] = []

    def _finish(self, exc: BaseException | None = None) -> None:
        self._exc = exc
        self._done.set()

    def is_completed(self) -> bool:
        return self._done.is_set()

    def is_success(self) -> bool:
        return self._done.is_set() and self._exc is None

    def exception(self) -> BaseException | None:
        return self._exc

    def wait(self, timeout: Any = None) -> bool:
        """Blocks until the op finished; re-raises its error (a timeout included)."""
        t = None if timeout is None else getattr(timeout, "total_seconds", lambda: timeout)()
        if not self._done.wait(t):
            raise RuntimeError(f"{self.op}: Work.wait timed out after {t}s")
        if self._exc is not None:
            raise self._exc
        return True

    def result(self) -> Any:
        self.wait()
        return self._result


class _DoneWork(Work):
    """A Work that finished when it was made (synchronous backends)."""

    def __init__(self, op: str = "", result: Any = None) -> None:
        super().__init__(op, result)
        self._done.set()


class CommThread:
    """One daemon thread per process group: ops run one at a time in the order they were issued.

    Issue order is the same on every rank (they run the same program), so a single FIFO
    keeps the ranks' collectives matched even when some are asynchronous.
    """

    def __init__(self, name: str) -> None:
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._broken: BaseException | None = None
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            fn, work = item
            if self._broken is not None:  # a failed collective leaves peers out of step
                work._finish(RuntimeError(f"{work.op}: process group is broken by an earlier error: {self._broken}"))
                continue
            try:
                fn()
                work._finish()
            except BaseException as e:  # noqa: BLE001 - handed to the waiter
                self._broken = e
                work._finish(e)

    def submit(self, op: str, fn: Callable[[], Any], result: Any = None) -> Work:
        work = Work(op, result)
        self._q.put((fn, work))
        return work

    def stop(self, timeout: float = 5.0) -> None:
        self._q.put(None)
        deadline = time.monotonic() + timeout
        self._thread.join(max(0.0, deadline - time.monotonic()))
