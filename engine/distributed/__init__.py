"""engine.distributed: process groups and collectives with torch.distributed's names and semantics.

Backends: ``"gloo"`` (alias ``"cpu"``: processes of one machine, shared memory) and
``"nccl"`` (cupy.cuda.nccl, one GPU per rank, across machines). Rendezvous through
``env://`` (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE), ``tcp://host:port`` or an
explicit ``store``. Every collective honours the group's timeout and raises
RuntimeError naming the op and the rank instead of hanging. Only the default
(world) group exists; ``group`` arguments must be None or ``group.WORLD``.
"""
from __future__ import annotations

import datetime
import os
import urllib.parse
from typing import Any

import numpy as np

from engine.backend import xp_of
from engine.distributed._work import CommThread, Work, _DoneWork
from engine.distributed.store import HashStore, PrefixStore, Store, TCPStore

__all__ = [
    "Backend", "HashStore", "PrefixStore", "ReduceOp", "Store", "TCPStore", "Work",
    "all_gather", "all_gather_into_tensor", "all_reduce", "barrier", "broadcast",
    "destroy_process_group", "gather", "get_backend", "get_rank", "get_world_size",
    "init_process_group", "is_available", "is_initialized", "is_nccl_available", "reduce",
    "reduce_scatter", "reduce_scatter_tensor", "scatter",
]

default_pg_timeout = datetime.timedelta(minutes=30)


class ReduceOp:
    """Reduction operators (torch.distributed.ReduceOp)."""

    SUM = "sum"
    AVG = "avg"
    PRODUCT = "product"
    MAX = "max"
    MIN = "min"


class Backend:
    GLOO = "gloo"
    NCCL = "nccl"


class _World:
    """The default group (``group.WORLD``)."""


class group:
    WORLD = _World()


class _State:
    pg: Any = None
    comm: CommThread | None = None
    store: Store | None = None
    rank = -1
    world_size = -1
    backend = ""


_S = _State()


def is_available() -> bool:
    return True


def is_nccl_available() -> bool:
    try:
        from cupy.cuda import nccl  # noqa: F401
    except Exception:  # noqa: BLE001 - no cupy, no driver: no NCCL
        return False
    return True


def is_initialized() -> bool:
    return _S.pg is not None


def _require() -> None:
    if _S.pg is None:
        raise RuntimeError("Default process group has not been initialized, please make sure to call "
                           "init_process_group.")


def get_rank(group: Any = None) -> int:
    _require()
    return _S.rank


def get_world_size(group: Any = None) -> int:
    _require()
    return _S.world_size


def get_backend(group: Any = None) -> str:
    _require()
    return _S.backend


def _rendezvous(init_method: str, rank: int, world_size: int, timeout: float) -> tuple[Store, int, int]:
    url = urllib.parse.urlparse(init_method)
    if url.scheme == "env":
        env = os.environ
        rank = int(env["RANK"]) if rank < 0 else rank
        world_size = int(env["WORLD_SIZE"]) if world_size < 0 else world_size
        host = env.get("MASTER_ADDR")
        port = env.get("MASTER_PORT")
        if host is None or port is None:
            raise ValueError("env:// rendezvous needs MASTER_ADDR and MASTER_PORT")
        port = int(port)
    elif url.scheme == "tcp":
        host, port = url.hostname, url.port
        q = urllib.parse.parse_qs(url.query)
        rank = int(q["rank"][0]) if rank < 0 and "rank" in q else rank
        world_size = int(q["world_size"][0]) if world_size < 0 and "world_size" in q else world_size
    else:
        raise ValueError(f"unsupported init_method {init_method!r} (env:// or tcp://host:port)")
    if rank < 0 or world_size < 1 or rank >= world_size:
        raise ValueError(f"invalid rank {rank} / world_size {world_size}")
    store = TCPStore(host, port, world_size, is_master=rank == 0, timeout=timeout)
    return store, rank, world_size


def init_process_group(backend: str | None = None, init_method: str | None = None,
                       timeout: datetime.timedelta | None = None, world_size: int = -1, rank: int = -1,
                       store: Store | None = None, group_name: str = "", pg_options: Any = None,
                       device_id: Any = None) -> None:
    """Joins the default process group (torch.distributed.init_process_group).

    ``backend``: "gloo"/"cpu" or "nccl" (default: nccl when cupy sees a GPU, else gloo).
    ``init_method``: "env://" (default) or "tcp://host:port"; or pass ``store`` with
    ``rank`` and ``world_size``. ``timeout`` bounds rendezvous and every collective.
    """
    if _S.pg is not None:
        raise ValueError("trying to initialize the default process group twice!")
    t = (timeout or default_pg_timeout).total_seconds() if not isinstance(timeout, (int, float)) else float(timeout)
    if backend is None:
        backend = "nccl" if _has_gpu() else "gloo"
    backend = backend.lower()
    if store is None:
        store, rank, world_size = _rendezvous(init_method or "env://", rank, world_size, t)
    elif rank < 0 or world_size < 1:
        raise ValueError("rank and world_size are required with a store")
    gen = store.add("__pg_generation", 1) if rank == 0 else None
    if rank == 0:
        store.set("__pg_current", str(gen))
    gen = int(store.get("__pg_current")) if gen is None else gen
    pstore = PrefixStore(f"pg{gen}", store)
    if backend in ("gloo", "cpu"):
        from engine.distributed.cpu_backend import ProcessGroupCPU

        pg = ProcessGroupCPU(pstore, rank, world_size, t)
        backend = "gloo"
    elif backend == "nccl":
        from engine.distributed.nccl_backend import ProcessGroupNCCL

        pg = ProcessGroupNCCL(pstore, rank, world_size, t, device_id)
    else:
        raise ValueError(f"unknown backend {backend!r} (gloo, cpu or nccl)")
    _S.pg, _S.store, _S.rank, _S.world_size, _S.backend = pg, store, rank, world_size, backend
    _S.comm = CommThread(f"engine-dist-rank{rank}") if backend == "gloo" else None
    barrier()  # every rank is through the rendezvous


def _has_gpu() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:  # noqa: BLE001 - no cupy, no driver: no NCCL
        return False


def destroy_process_group(group: Any = None) -> None:
    """Leaves the default group, closing sockets, shared memory and the store (rank 0's server)."""
    if _S.pg is None:
        return
    if _S.comm is not None:
        _S.comm.stop()
    _S.pg.close()
    if isinstance(_S.store, TCPStore):
        _S.store.close()
    _S.pg = _S.comm = _S.store = None
    _S.rank = _S.world_size = -1
    _S.backend = ""


# ---------------------------------------------------------------- collectives
def _arr(t: Any) -> np.ndarray:
    return t._data if hasattr(t, "_data") else t


def _run(op: str, fn: Any, async_op: bool, group: Any = None) -> Work | None:
    _require()
    if group is not None and group is not _World and not isinstance(group, _World):
        raise NotImplementedError("only the default group is supported")
    if _S.comm is None:  # nccl: enqueued on the current stream by fn
        w = fn()
        if async_op:
            return w if isinstance(w, Work) else _DoneWork(op)
        if isinstance(w, Work):
            w.wait()
        return None
    work = _S.comm.submit(op, fn)
    if async_op:
        return work
    work.wait()
    return None


def _flat(a: np.ndarray, op: str) -> tuple[np.ndarray, Any]:
    """A contiguous 1-D view of ``a`` (or a copy plus the write-back)."""
    if type(a) is not np.ndarray and _S.backend == "gloo":
        raise RuntimeError(f"{op}: the gloo/cpu backend needs CPU tensors")
    if a.flags.c_contiguous:
        return a.reshape(-1), None
    c = np.ascontiguousarray(a).reshape(-1)
    return c, lambda: a.__setitem__(..., c.reshape(a.shape))


def _contig1d(a: Any) -> Any:
    return xp_of(a).ascontiguousarray(a).reshape(-1)


def _check_op(op: str, a: np.ndarray, name: str) -> None:
    if op not in ("sum", "avg", "product", "max", "min"):
        raise ValueError(f"{name}: unknown ReduceOp {op!r}")
    if op == "avg" and a.dtype.kind not in "fc":
        raise ValueError(f"{name}: ReduceOp.AVG needs a floating tensor, got {a.dtype}")


def all_reduce(tensor: Any, op: str = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> Work | None:
    """Reduces ``tensor`` across ranks in place; every rank gets the same result."""
    a = _arr(tensor)
    _check_op(op, a, "all_reduce")
    if _S.comm is None:
        return _run("all_reduce", lambda: _S.pg.all_reduce(a, op), async_op, group)
    flat, back = _flat(a, "all_reduce")

    def fn() -> None:
        _S.pg.all_reduce(flat, op)
        if back:
            back()
    return _run("all_reduce", fn, async_op, group)


def broadcast(tensor: Any, src: int, group: Any = None, async_op: bool = False) -> Work | None:
    """Copies rank ``src``'s tensor into every rank's ``tensor``."""
    a = _arr(tensor)
    if _S.comm is None:
        return _run("broadcast", lambda: _S.pg.broadcast(a, src), async_op, group)
    flat, back = _flat(a, "broadcast")

    def fn() -> None:
        _S.pg.broadcast(flat, src)
        if back:
            back()
    return _run("broadcast", fn, async_op, group)


def reduce(tensor: Any, dst: int, op: str = ReduceOp.SUM, group: Any = None, async_op: bool = False) -> Work | None:
    """Reduces into rank ``dst``'s ``tensor``; the others' tensors are left unchanged."""
    a = _arr(tensor)
    _check_op(op, a, "reduce")
    if _S.comm is None:
        return _run("reduce", lambda: _S.pg.reduce(a, dst, op), async_op, group)
    tmp = np.ascontiguousarray(a).reshape(-1).copy()

    def fn() -> None:
        _S.pg.all_reduce(tmp, op)
        if _S.rank == dst:
            a[...] = tmp.reshape(a.shape)
    return _run("reduce", fn, async_op, group)


def _check_list(lst: list, n: int, like: np.ndarray, op: str) -> list[np.ndarray]:
    if len(lst) != n:
        raise ValueError(f"{op}: the list needs world_size={n} tensors, got {len(lst)}")
    out = [_arr(t) for t in lst]
    for o in out:
        if o.size != like.size or o.dtype != like.dtype:
            raise ValueError(f"{op}: every tensor must have {like.size} elements of {like.dtype}")
    return out


def _gather_like(op: str, outs: list[np.ndarray] | None, a: np.ndarray, dst: int | None, async_op: bool,
                 group: Any) -> Work | None:
    flat = np.ascontiguousarray(a).reshape(-1)
    tmp = None if outs is None else [np.empty(a.size, a.dtype) for _ in outs]

    def fn() -> None:
        _S.pg.all_gather(tmp, flat, dst, op)
        if tmp is not None and (dst is None or dst == _S.rank):
            for o, t in zip(outs, tmp):
                o[...] = t.reshape(o.shape)
    return _run(op, fn, async_op, group)


def all_gather(tensor_list: list, tensor: Any, group: Any = None, async_op: bool = False) -> Work | None:
    """``tensor_list[j]`` = rank j's ``tensor``, on every rank."""
    a = _arr(tensor)
    outs = _check_list(tensor_list, get_world_size(), a, "all_gather")
    if _S.comm is None:
        return _run("all_gather", lambda: _S.pg.all_gather(outs, a), async_op, group)
    return _gather_like("all_gather", outs, a, None, async_op, group)


def all_gather_into_tensor(output_tensor: Any, input_tensor: Any, group: Any = None,
                           async_op: bool = False) -> Work | None:
    """Rank j's input goes to the j-th 1/world_size block of ``output_tensor`` (dim 0)."""
    out, a = _arr(output_tensor), _arr(input_tensor)
    w = get_world_size()
    if out.size != w * a.size or out.dtype != a.dtype:
        raise ValueError(f"all_gather_into_tensor: output needs {w}x{a.size} elements of {a.dtype}")
    if _S.comm is None:
        return _run("all_gather_into_tensor", lambda: _S.pg.all_gather_into(out, a), async_op, group)
    rows = [r for r in out.reshape(w, -1)] if out.flags.c_contiguous else None
    if rows is None:
        raise ValueError("all_gather_into_tensor: output must be contiguous")
    return _gather_like("all_gather_into_tensor", rows, a, None, async_op, group)


def gather(tensor: Any, gather_list: list | None = None, dst: int = 0, group: Any = None,
           async_op: bool = False) -> Work | None:
    """Rank ``dst`` receives every rank's ``tensor`` in ``gather_list``."""
    a = _arr(tensor)
    outs = _check_list(gather_list, get_world_size(), a, "gather") if get_rank() == dst else None
    if _S.comm is None:
        return _run("gather", lambda: _S.pg.gather(outs, a, dst), async_op, group)
    return _gather_like("gather", outs, a, dst, async_op, group)


def scatter(tensor: Any, scatter_list: list | None = None, src: int = 0, group: Any = None,
            async_op: bool = False) -> Work | None:
    """Rank j's ``tensor`` receives ``scatter_list[j]`` of rank ``src``."""
    a = _arr(tensor)
    ins = None
    if get_rank() == src:
        ins = [_contig1d(x) for x in _check_list(scatter_list, get_world_size(), a, "scatter")]
    if _S.comm is None:
        return _run("scatter", lambda: _S.pg.scatter(a, ins, src), async_op, group)
    flat, back = _flat(a, "scatter")

    def fn() -> None:
        _S.pg.scatter(flat, ins, src)
        if back:
            back()
    return _run("scatter", fn, async_op, group)


def reduce_scatter(output: Any, input_list: list, op: str = ReduceOp.SUM, group: Any = None,
                   async_op: bool = False) -> Work | None:
    """``output`` on rank j = the reduction over ranks of their ``input_list[j]``."""
    out = _arr(output)
    _check_op(op, out, "reduce_scatter")
    ins = [_contig1d(x) for x in _check_list(input_list, get_world_size(), out, "reduce_scatter")]
    if _S.comm is None:
        return _run("reduce_scatter", lambda: _S.pg.reduce_scatter(out, ins, op), async_op, group)
    flat, back = _flat(out, "reduce_scatter")

    def fn() -> None:
        _S.pg.reduce_scatter(flat, ins, op)
        if back:
            back()
    return _run("reduce_scatter", fn, async_op, group)


def reduce_scatter_tensor(output: Any, input: Any, op: str = ReduceOp.SUM, group: Any = None,
                          async_op: bool = False) -> Work | None:
    """Like reduce_scatter with the inputs as the world_size blocks of ``input`` (dim 0)."""
    out, a = _arr(output), _arr(input)
    w = get_world_size()
    if a.size != w * out.size or out.dtype != a.dtype:
        raise ValueError(f"reduce_scatter_tensor: input needs {w}x{out.size} elements of {out.dtype}")
    return reduce_scatter(output, list(a.reshape(w, -1)), op, group, async_op)


def barrier(group: Any = None, async_op: bool = False, device_ids: Any = None) -> Work | None:
    """Returns once every rank has called barrier (RuntimeError after the timeout)."""
    return _run("barrier", lambda: _S.pg.barrier_("barrier"), async_op, group)
