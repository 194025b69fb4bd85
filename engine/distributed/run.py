"""The launcher, like torchrun: ``python -m engine.distributed.run --nproc-per-node N script.py [args]``.

Starts N rank processes with RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE,
MASTER_ADDR and MASTER_PORT set, each in its own process group so its children go
with it. The first rank to fail (non-zero exit or a signal) stops the others:
SIGTERM to each group, SIGKILL after ``--grace`` seconds; the launcher exits with
that rank's code, leaving no process behind. Several machines: run the launcher
on each with ``--nnodes``, ``--node-rank`` and the same ``--master-addr/--master-port``.

For a worker there is the same supervision as a library: ``start(cmd, nproc_per_node)``
returns ``Ranks`` (``wait``, ``terminate``, ``pids``), and ``spawn(fn, args, nprocs)``
runs a picklable function per rank, like torch.multiprocessing.spawn.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["Ranks", "free_port", "main", "spawn", "start"]


def free_port() -> int:
    """A TCP port free on this machine now (for a standalone, one-machine job)."""
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def rank_env(rank: int, local_rank: int, world_size: int, local_world_size: int, master_addr: str,
             master_port: int) -> dict[str, str]:
    return {"RANK": str(rank), "LOCAL_RANK": str(local_rank), "WORLD_SIZE": str(world_size),
            "LOCAL_WORLD_SIZE": str(local_world_size), "MASTER_ADDR": master_addr,
            "MASTER_PORT": str(master_port), "GROUP_RANK": str(rank // max(local_world_size, 1))}


def _killpg(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class Ranks:
    """The rank processes of this machine; the first failure stops the rest."""

    def __init__(self, procs: list[Any], grace: float = 3.0) -> None:
        self.procs = procs
        self.grace = grace
        self.failed_rank: int | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def _code(self, p: Any) -> int | None:
        return p.poll() if hasattr(p, "poll") else p.exitcode

    def wait(self, timeout: float | None = None, poll: float = 0.05) -> int:
        """Blocks until every rank exited or one failed; returns 0 or the failure's exit code
        (128 + signal for a killed rank). Raises TimeoutError after ``timeout`` (ranks keep running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            codes = [self._code(p) for p in self.procs]
            for r, c in enumerate(codes):
                if c is not None and c != 0:
                    self.failed_rank = r
                    self.terminate()
                    return c if c > 0 else 128 - c
            if all(c == 0 for c in codes):
                self.terminate()  # reap stragglers in the ranks' process groups
                return 0
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"ranks still running after {timeout}s")
            time.sleep(poll)

    def terminate(self) -> None:
        """SIGTERM every rank's process group, SIGKILL what is left after ``grace`` seconds."""
        for p in self.procs:
            _killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.grace
        while time.monotonic() < deadline and any(self._code(p) is None for p in self.procs):
            time.sleep(0.02)
        for p in self.procs:
            _killpg(p.pid, signal.SIGKILL)
        for p in self.procs:
            if hasattr(p, "wait") and not hasattr(p, "join"):
                p.wait()
            else:
                p.join()


def start(cmd: Sequence[str], nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
          master_addr: str = "127.0.0.1", master_port: int | None = None, env: dict | None = None,
          grace: float = 3.0, **popen: Any) -> Ranks:
    """Starts ``cmd`` once per local rank (each in a new session) with the rank environment."""
    port = free_port() if master_port is None else master_port
    world = nproc_per_node * nnodes
    procs = []
    for lr in range(nproc_per_node):
        e = dict(os.environ if env is None else env)
        if nproc_per_node > 1:  # as torchrun: one BLAS/OpenMP thread per rank unless told otherwise
            e.setdefault("OMP_NUM_THREADS", "1")
        e.update(rank_env(node_rank * nproc_per_node + lr, lr, world, nproc_per_node, master_addr, port))
        procs.append(subprocess.Popen(list(cmd), env=e, start_new_session=True, **popen))
    return Ranks(procs, grace)


def _spawned(fn: Callable, rank: int, args: tuple, env: dict) -> None:
    os.setpgrp()  # its own group, so terminate() takes its children too
    os.environ.update(env)
    fn(rank, *args)


def spawn(fn: Callable, args: tuple = (), nprocs: int = 1, join: bool = True, timeout: float | None = None,
          master_port: int | None = None, start_method: str = "spawn", grace: float = 3.0) -> Ranks | None:
    """Runs ``fn(rank, *args)`` in ``nprocs`` processes with the rank environment set
    (and OMP_NUM_THREADS=1 when several and it is unset, as the launcher does).

    With ``join`` it waits and raises RuntimeError naming the first failed rank (all
    ranks stopped); otherwise it returns the ``Ranks`` to wait on.
    """
    ctx = mp.get_context(start_method)
    port = free_port() if master_port is None else master_port
    procs = []
    threads = {"OMP_NUM_THREADS": "1"} if nprocs > 1 and "OMP_NUM_THREADS" not in os.environ else {}
    os.environ.update(threads)  # a spawned child imports numpy before fn runs: set it while starting
    try:
        for r in range(nprocs):
            env = rank_env(r, r, nprocs, nprocs, "127.0.0.1", port)
            p = ctx.Process(target=_spawned, args=(fn, r, args, env), daemon=False)
            p.start()
            procs.append(p)
    finally:
        for k in threads:
            os.environ.pop(k, None)
    ranks = Ranks(procs, grace)
    if not join:
        return ranks
    try:
        code = ranks.wait(timeout)
    except TimeoutError:
        ranks.terminate()
        raise
    if code != 0:
        raise RuntimeError(f"rank {ranks.failed_rank} failed with exit code {code}")
    return None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m engine.distributed.run", description=__doc__.split("\n")[0])
    p.add_argument("--nproc-per-node", "--nproc_per_node", type=int, default=1)
    p.add_argument("--nnodes", type=int, default=1)
    p.add_argument("--node-rank", "--node_rank", type=int, default=0)
    p.add_argument("--master-addr", "--master_addr", default="127.0.0.1")
    p.add_argument("--master-port", "--master_port", type=int, default=None,
                   help="default: a free port (one machine) or 29500 (several)")
    p.add_argument("--standalone", action="store_true", help="one machine, free port (the default)")
    p.add_argument("--grace", type=float, default=3.0, help="seconds between SIGTERM and SIGKILL")
    p.add_argument("-m", "--module", action="store_true", help="run the script as a module (python -m)")
    p.add_argument("script")
    p.add_argument("script_args", nargs=argparse.REMAINDER)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    a = _parser().parse_args(argv)
    port = a.master_port if a.master_port is not None else (29500 if a.nnodes > 1 else None)
    cmd = [sys.executable, "-u", *(["-m"] if a.module else []), a.script, *a.script_args]
    ranks = start(cmd, a.nproc_per_node, a.nnodes, a.node_rank, a.master_addr, port, grace=a.grace)

    def stop(signum: int, _frame: Any) -> None:
        ranks.terminate()
        sys.exit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = ranks.wait()
    if code != 0:
        print(f"engine.distributed.run: local rank {ranks.failed_rank} failed (exit code {code}); "
              "stopped the other ranks", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
