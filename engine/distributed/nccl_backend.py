"""The "nccl" backend: cupy.cuda.nccl, one GPU per rank, ops enqueued on the current stream.

Rendezvous shares NCCL's unique id through the store; NCCL then connects the ranks
itself (NVLink, PCIe, InfiniBand or TCP), so this backend spans machines. A
collective returns a ``Work`` whose ``wait`` polls an event recorded after the op
and aborts the communicator with RuntimeError once the group's timeout passes.
"""
from __future__ import annotations

import time
from typing import Any

from engine.distributed._work import Work
from engine.distributed.store import Store

__all__ = ["ProcessGroupNCCL"]


def _nccl() -> Any:
    from cupy.cuda import nccl

    return nccl


_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32", "float64": "NCCL_FLOAT64",
           "int8": "NCCL_INT8", "uint8": "NCCL_UINT8", "int32": "NCCL_INT32", "uint32": "NCCL_UINT32",
           "int64": "NCCL_INT64", "uint64": "NCCL_UINT64", "bool": "NCCL_UINT8"}
_OPS = {"sum": ("NCCL_SUM", 0), "product": ("NCCL_PROD", 1), "max": ("NCCL_MAX", 2), "min": ("NCCL_MIN", 3),
        "avg": ("NCCL_AVG", 4)}


class NCCLWork(Work):
    """Completes when the GPU passes the event recorded after the collective."""

    def __init__(self, op: str, pg: ProcessGroupNCCL) -> None:
        super().__init__(op)
        import cupy

        self.pg = pg
        self.event = cupy.cuda.Event(block=False, disable_timing=True)
        self.event.record(cupy.cuda.get_current_stream())

    def is_completed(self) -> bool:
        return self.event.done

    def wait(self, timeout: Any = None) -> bool:
        limit = self.pg.timeout if timeout is None else getattr(timeout, "total_seconds", lambda: timeout)()
        deadline = time.monotonic() + limit
        sleep = 1e-5
        while not self.event.done:
            if time.monotonic() > deadline:
                self.pg.abort()
                raise RuntimeError(f"{self.op}: rank {self.pg.rank} timed out after {limit:.1f}s (NCCL communicator "
                                   "aborted)")
            time.sleep(sleep)
            sleep = min(sleep * 2, 1e-3)
        self._done.set()
        return True


class ProcessGroupNCCL:
    """Collectives over cupy arrays; the array's device must be this rank's GPU."""

    name = "nccl"

    def __init__(self, store: Store, rank: int, world_size: int, timeout: float, device_id: Any = None) -> None:
        import cupy

        nccl = _nccl()
        self.rank, self.world_size, self.timeout = rank, world_size, timeout
        if device_id is not None:
            cupy.cuda.Device(int(getattr(device_id, "index", device_id) or 0)).use()
        if rank == 0:
            uid = nccl.get_unique_id()
            raw = bytes(uid) if isinstance(uid, (bytes, bytearray)) else bytes(b & 0xFF for b in uid)
            store.set("nccl_uid", raw)
        raw = store.get("nccl_uid")
        try:  # cupy 13+ takes the id as bytes
            self.comm = nccl.NcclCommunicator(world_size, raw, rank)
        except TypeError:  # older cupy: a tuple of C chars
            self.comm = nccl.NcclCommunicator(world_size, tuple(b - 256 if b > 127 else b for b in raw), rank)
        self._barrier_buf = cupy.zeros(1, dtype=cupy.float32)

    # ----------------------------------------------------------------- helpers
    @staticmethod
    def _dt(a: Any) -> int:
        name = _DTYPES.get(a.dtype.name)
        if name is None:
            raise TypeError(f"nccl: unsupported dtype {a.dtype}")
        return getattr(_nccl(), name)

    @staticmethod
    def _op(op: str) -> int:
        name, code = _OPS[op]
        return getattr(_nccl(), name, code)

    @staticmethod
    def _stream() -> int:
        import cupy

        return cupy.cuda.get_current_stream().ptr

    @staticmethod
    def _contig(a: Any) -> Any:
        if not a.flags.c_contiguous:
            raise ValueError("nccl: tensors must be contiguous")
        return a

    # ------------------------------------------------------------- collectives
    def all_reduce(self, a: Any, op: str) -> Work:
        self._contig(a)
        if op == "avg" and not hasattr(_nccl(), "NCCL_AVG"):
            self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._dt(a), self._op("sum"), self._stream())
            a /= self.world_size
        else:
            self.comm.allReduce(a.data.ptr, a.data.ptr, a.size, self._dt(a), self._op(op), self._stream())
        return NCCLWork("all_reduce", self)

    def broadcast(self, a: Any, src: int) -> Work:
        self._contig(a)
        self.comm.broadcast(a.data.ptr, a.data.ptr, a.size, self._dt(a), src, self._stream())
        return NCCLWork("broadcast", self)

    def reduce(self, a: Any, dst: int, op: str) -> Work:
        import cupy

        self._contig(a)
        out = a if self.rank == dst else cupy.empty_like(a)
        if op == "avg":
            self.comm.reduce(a.data.ptr, out.data.ptr, a.size, self._dt(a), self._op("sum"), dst, self._stream())
            if self.rank == dst:
                a /= self.world_size
        else:
            self.comm.reduce(a.data.ptr, out.data.ptr, a.size, self._dt(a), self._op(op), dst, self._stream())
        return NCCLWork("reduce", self)

    def all_gather_into(self, out: Any, a: Any) -> Work:
        self._contig(out)
        a = self._contig(a)
        self.comm.allGather(a.data.ptr, out.data.ptr, a.size, self._dt(a), self._stream())
        return NCCLWork("all_gather", self)

    def all_gather(self, outs: list, a: Any) -> Work:
        import cupy

        flat = cupy.empty((self.world_size, a.size), dtype=a.dtype)
        self.all_gather_into(flat, cupy.ascontiguousarray(a))
        for o, row in zip(outs, flat):
            o[...] = row.reshape(o.shape)
        return NCCLWork("all_gather", self)

    def reduce_scatter(self, out: Any, ins: list, op: str) -> Work:
        import cupy

        flat = cupy.concatenate([cupy.ascontiguousarray(x).reshape(-1) for x in ins])
        self._contig(out)
        self.comm.reduceScatter(flat.data.ptr, out.data.ptr, out.size, self._dt(out), self._op(op), self._stream())
        return NCCLWork("reduce_scatter", self)

    def gather(self, outs: list | None, a: Any, dst: int) -> Work:
        import cupy

        nccl, s = _nccl(), self._stream()
        a = cupy.ascontiguousarray(a)
        nccl.groupStart()
        if self.rank == dst:
            for j, o in enumerate(outs):
                if j == dst:
                    o[...] = a.reshape(o.shape)
                else:
                    self.comm.recv(self._contig(o).data.ptr, o.size, self._dt(o), j, s)
        else:
            self.comm.send(a.data.ptr, a.size, self._dt(a), dst, s)
        nccl.groupEnd()
        return NCCLWork("gather", self)

    def scatter(self, out: Any, ins: list | None, src: int) -> Work:
        import cupy

        nccl, s = _nccl(), self._stream()
        self._contig(out)
        nccl.groupStart()
        if self.rank == src:
            for j, x in enumerate(ins):
                x = cupy.ascontiguousarray(x)
                if j == src:
                    out[...] = x.reshape(out.shape)
                else:
                    self.comm.send(x.data.ptr, x.size, self._dt(x), j, s)
        else:
            self.comm.recv(out.data.ptr, out.size, self._dt(out), src, s)
        nccl.groupEnd()
        return NCCLWork("scatter", self)

    def barrier_(self, op: str = "barrier") -> None:
        self.comm.allReduce(self._barrier_buf.data.ptr, self._barrier_buf.data.ptr, 1,
                            self._dt(self._barrier_buf), self._op("sum"), self._stream())
        w = NCCLWork(op, self)
        w.wait()

    def abort(self) -> None:
        if self.comm is not None:
            try:
                self.comm.abort()
            finally:
                self.comm = None

    def close(self) -> None:
        if self.comm is not None:
            self.comm.destroy()
            self.comm = None
