"""Child processes started in their own session, stopped with their whole group."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.distributed.run import free_port

__all__ = ["Child", "free_port", "supervise", "wait_for_port"]


def wait_for_port(host: str, port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listened on {host}:{port} within {timeout}s")


@dataclass
class Child:
    """A named child process in its own process group (so Ctrl-C reaches only the parent,
    which stops children in order, and a child's own children die with it)."""

    name: str
    args: list[str]
    env: dict[str, str]
    stop_timeout: float = 20.0
    proc: subprocess.Popen | None = field(default=None, init=False)

    def start(self, stdout=None) -> Child:
        self.proc = subprocess.Popen(self.args, env=self.env, start_new_session=True, stdout=stdout,
                                     stderr=subprocess.STDOUT if stdout else None)
        return self

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                self.proc.wait(self.stop_timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                self.proc.wait()
        self._signal(signal.SIGKILL)  # leftovers in the group, if any

    def _signal(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def supervise(children: list[Child], stopping: Callable[[], bool], *, restart_delay_s: float = 2.0,
              poll_s: float = 0.5, report: Callable[[str], None] = print) -> None:
    """Keep every child running until ``stopping()``: one that exits (crashed, killed) is
    started again after ``restart_delay_s``; then stop them all (each worker checkpoints and
    requeues its job on SIGTERM)."""
    died: dict[int, float] = {}
    try:
        while not stopping():
            now = time.monotonic()
            for i, child in enumerate(children):
                if child.alive():
                    continue
                if i not in died:
                    report(f"{child.name} exited with {child.proc.returncode if child.proc else None}; restarting")
                    died[i] = now
                elif now - died[i] >= restart_delay_s:
                    del died[i]
                    child.start()
            time.sleep(poll_s)
    finally:
        for child in children:  # every worker starts checkpointing at once, then each is waited for
            if child.alive():
                child._signal(signal.SIGTERM)
        for child in children:
            child.stop()
