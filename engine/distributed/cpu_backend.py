"""The CPU backend ("gloo"/"cpu"): ranks are processes on one machine.

Data moves through one shared-memory segment per rank (double-buffered halves of
``ENGINE_DIST_CPU_BUFFER_MB``, default 16 MiB); ranks synchronise through a full
mesh of localhost sockets (a barrier is one byte to and from every peer). An
all-reduce is a chunked reduce-scatter + all-gather: each rank reduces its
1/world_size slice of a chunk across every segment in rank order, so all ranks
get bitwise-equal results. A dead peer closes its sockets, which every other rank
sees at once; a slow one makes the op raise after the group's timeout.

The segments are unlinked as soon as every rank has mapped them, so a killed
rank leaves nothing in /dev/shm.
"""
from __future__ import annotations

import mmap
import os
import secrets
import socket
import tempfile
import time

import numpy as np

from engine.distributed.store import Store

__all__ = ["ProcessGroupCPU"]

_REDUCE = {"sum": np.add, "avg": np.add, "product": np.multiply, "max": np.maximum, "min": np.minimum}


_SHM_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else tempfile.gettempdir()


def _map(path: str, size: int, create: bool = False) -> mmap.mmap:
    """Maps a shared file (in /dev/shm: memory); no resource tracker process involved."""
    fd = os.open(path, os.O_RDWR | (os.O_CREAT | os.O_EXCL if create else 0), 0o600)
    try:
        if create:
            os.ftruncate(fd, size)
        return mmap.mmap(fd, size)
    finally:
        os.close(fd)


def _slices(n: int, parts: int) -> list[tuple[int, int]]:
    base, extra = divmod(n, parts)
    out, s = [], 0
    for i in range(parts):
        e = s + base + (1 if i < extra else 0)
        out.append((s, e))
        s = e
    return out


class ProcessGroupCPU:
    """Collectives over numpy arrays between ``world_size`` processes of one machine."""

    name = "gloo"

    def __init__(self, store: Store, rank: int, world_size: int, timeout: float) -> None:
        self.rank, self.world_size, self.timeout = rank, world_size, timeout
        mb = float(os.environ.get("ENGINE_DIST_CPU_BUFFER_MB", "16"))
        self.half = max(64, int(mb * (1 << 20)) // 2 // 64 * 64)
        self._half_idx = 0
        self._path = os.path.join(_SHM_DIR, f"engine-dist-{os.getpid()}-{secrets.token_hex(6)}")
        self.peers: dict[int, socket.socket] = {}
        self._segs: list[mmap.mmap] = [_map(self._path, 2 * self.half, create=True)]
        self._bufs: list[np.ndarray] = []
        try:
            self._connect(store)
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------------ setup
    def _connect(self, store: Store) -> None:
        r, w = self.rank, self.world_size
        host = socket.gethostname()
        lsock = socket.create_server(("127.0.0.1", 0), backlog=w)
        try:
            store.set(f"cpu/{r}", f"{host}|{lsock.getsockname()[1]}|{self._path}")
            info = [store.get(f"cpu/{j}").decode().split("|") for j in range(w)]
            hosts = {i[0] for i in info}
            if len(hosts) > 1:
                raise RuntimeError(f"the CPU backend runs ranks of one machine; got hosts {sorted(hosts)} "
                                   "(use backend='nccl' across machines)")
            deadline = time.monotonic() + self.timeout
            for j in range(r):  # connect to the lower ranks, accept the higher ones
                s = socket.create_connection(("127.0.0.1", int(info[j][1])), timeout=self.timeout)
                s.sendall(r.to_bytes(4, "big"))
                self.peers[j] = s
            lsock.settimeout(self.timeout)
            while len(self.peers) < w - 1:
                lsock.settimeout(max(0.01, deadline - time.monotonic()))
                try:
                    s, _ = lsock.accept()
                except TimeoutError as e:
                    raise RuntimeError(f"init_process_group: rank {r} timed out waiting for peers to connect") from e
                s.settimeout(self.timeout)
                self.peers[int.from_bytes(self._recv_exact(s, 4, "init", -1), "big")] = s
        finally:
            lsock.close()
        for s in self.peers.values():
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        own = self._segs[0]
        self._segs = [own if j == r else _map(info[j][2], 2 * self.half) for j in range(w)]
        self._bufs = [np.frombuffer(m, np.uint8) for m in self._segs]
        self.barrier_("init")
        self._unlink()  # every rank has it mapped: the name can go now

    # ------------------------------------------------------------- primitives
    def _recv_exact(self, s: socket.socket, n: int, op: str, peer: int) -> bytes:
        buf = b""
        while len(buf) < n:
            try:
                k = s.recv(n - len(buf))
            except TimeoutError as e:
                raise RuntimeError(f"{op}: rank {self.rank} timed out after {self.timeout:.1f}s "
                                   f"waiting for rank {peer}") from e
            except OSError as e:
                raise RuntimeError(f"{op}: rank {self.rank} lost its connection to rank {peer}: {e}") from e
            if not k:
                raise RuntimeError(f"{op}: rank {self.rank} lost its connection to rank {peer} (peer exited)")
            buf += k
        return buf

    def barrier_(self, op: str = "barrier") -> None:
        """Returns once every rank has reached the same barrier; raises on timeout or a dead peer."""
        for j, s in self.peers.items():
            try:
                s.sendall(b"b")
            except OSError as e:
                raise RuntimeError(f"{op}: rank {self.rank} lost its connection to rank {j}: {e}") from e
        deadline = time.monotonic() + self.timeout
        for j, s in self.peers.items():
            s.settimeout(max(0.001, deadline - time.monotonic()))
            self._recv_exact(s, 1, op, j)

    def _view(self, j: int, dtype: np.dtype, n: int) -> np.ndarray:
        off = self._half_idx * self.half
        return self._bufs[j][off:off + n * dtype.itemsize].view(dtype)

    def _next_half(self) -> None:
        self._half_idx ^= 1

    def _chunk(self, itemsize: int, parts: int = 1) -> int:
        return max(1, self.half // (itemsize * parts))

    # ------------------------------------------------------------ collectives
    def all_reduce(self, flat: np.ndarray, op: str) -> None:
        red = _REDUCE[op]
        w, r = self.world_size, self.rank
        step = self._chunk(flat.itemsize)
        for s in range(0, flat.size, step):
            e = min(flat.size, s + step)
            m = e - s
            mine = self._view(r, flat.dtype, m)
            mine[...] = flat[s:e]
            self.barrier_("all_reduce")
            a, b = _slices(m, w)[r]
            acc = mine[a:b]  # my slice of my own segment: only I touch it until the next barrier
            views = [self._view(j, flat.dtype, m)[a:b] for j in range(w)]
            if r >= 2:  # acc overwrites my input before it is added: keep a copy
                views[r] = views[r].copy()
            if w > 1:  # in rank order, so every rank's result is bitwise the same
                red(views[0], views[1], out=acc)
                for v in views[2:]:
                    red(acc, v, out=acc)
            if op == "avg":
                acc /= w
            self.barrier_("all_reduce")
            for j, (a, b) in enumerate(_slices(m, w)):
                flat[s + a:s + b] = self._view(j, flat.dtype, m)[a:b]
            self._next_half()
        if flat.size == 0:
            self.barrier_("all_reduce")

    def broadcast(self, flat: np.ndarray, src: int) -> None:
        step = self._chunk(flat.itemsize)
        for s in range(0, max(flat.size, 1), step):
            e = min(flat.size, s + step)
            if self.rank == src:
                self._view(src, flat.dtype, e - s)[...] = flat[s:e]
            self.barrier_("broadcast")
            if self.rank != src:
                flat[s:e] = self._view(src, flat.dtype, e - s)
            self._next_half()

    def all_gather(self, outs: list[np.ndarray] | None, flat: np.ndarray, dst: int | None = None,
                   op: str = "all_gather") -> None:
        """Every rank's ``flat`` into ``outs[j]`` on every rank (or only on ``dst``: gather)."""
        step = self._chunk(flat.itemsize)
        for s in range(0, max(flat.size, 1), step):
            e = min(flat.size, s + step)
            self._view(self.rank, flat.dtype, e - s)[...] = flat[s:e]
            self.barrier_(op)
            if outs is not None and (dst is None or dst == self.rank):
                for j, o in enumerate(outs):
                    o[s:e] = self._view(j, flat.dtype, e - s)
            self._next_half()

    def reduce_scatter(self, out: np.ndarray, ins: list[np.ndarray], op: str) -> None:
        red = _REDUCE[op]
        w, r = self.world_size, self.rank
        step = self._chunk(out.itemsize, w)
        for s in range(0, max(out.size, 1), step):
            e = min(out.size, s + step)
            m = e - s
            for j in range(w):
                self._view(r, out.dtype, w * m)[j * m:(j + 1) * m] = ins[j][s:e]
            self.barrier_("reduce_scatter")
            acc = self._view(0, out.dtype, w * m)[r * m:(r + 1) * m].copy()
            for j in range(1, w):
                red(acc, self._view(j, out.dtype, w * m)[r * m:(r + 1) * m], out=acc)
            if op == "avg":
                acc /= w
            out[s:e] = acc
            self._next_half()

    def scatter(self, out: np.ndarray, ins: list[np.ndarray] | None, src: int) -> None:
        w, r = self.world_size, self.rank
        step = self._chunk(out.itemsize, w)
        for s in range(0, max(out.size, 1), step):
            e = min(out.size, s + step)
            m = e - s
            if r == src:
                for j in range(w):
                    self._view(r, out.dtype, w * m)[j * m:(j + 1) * m] = ins[j][s:e]
            self.barrier_("scatter")
            out[s:e] = self._view(src, out.dtype, w * m)[r * m:(r + 1) * m]
            self._next_half()

    # --------------------------------------------------------------- teardown
    def close(self) -> None:
        for s in self.peers.values():
            try:
                s.close()
            except OSError:
                pass
        self.peers = {}
        self._bufs = []
        for seg in self._segs:
            try:
                seg.close()
            except (OSError, BufferError):
                pass
        self._segs = []
        self._unlink()

    def _unlink(self) -> None:
        try:
            os.unlink(self._path)
        except OSError:
            pass
