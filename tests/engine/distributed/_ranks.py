"""Rank programs for the distributed tests, run by the launcher: ``_ranks.py CASE OUTDIR [ARGS]``.

Each rank checks what it can itself (collectives against numpy on every rank's
inputs, which are deterministic) and saves what the parent test compares
(trained weights) to OUTDIR/rank{R}.npz. A failed check exits non-zero.
"""
import datetime
import os
import signal
import subprocess
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _models

import engine
import engine.distributed as dist
from engine.nn import parallel

RANK = int(os.environ["RANK"])
WORLD = int(os.environ["WORLD_SIZE"])
OUT = sys.argv[2]


def init(timeout: float = 30.0) -> None:
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout))
    assert dist.is_initialized() and dist.get_rank() == RANK and dist.get_world_size() == WORLD


def inputs(r: int, n: int, dtype: str, seed: int) -> np.ndarray:
    g = np.random.default_rng([seed, r, n])
    if np.dtype(dtype).kind == "f":
        return g.uniform(0.5, 1.5, n).astype(dtype)
    return g.integers(-5, 6, n).astype(dtype)


OPS = {"sum": lambda xs: _fold(np.add, xs), "avg": lambda xs: _fold(np.add, xs) / len(xs),
       "max": lambda xs: _fold(np.maximum, xs), "min": lambda xs: _fold(np.minimum, xs),
       "product": lambda xs: _fold(np.multiply, xs)}


def _fold(f, xs):
    acc = xs[0].copy()
    for x in xs[1:]:
        acc = f(acc, x).astype(acc.dtype)
    return acc


def collectives() -> None:
    init()
    checked = 0
    for dtype in ["float32", "float64", "int32", "int64"]:
        for n in [1, 7, 1000, 5000]:  # 5000 floats overflow the test's 16 KiB buffer: chunked
            seed = checked
            xs = [inputs(r, n, dtype, seed) for r in range(WORLD)]
            for op in ["sum", "avg", "max", "min", "product"]:
                if op == "avg" and dtype.startswith("int"):
                    continue
                t = engine.tensor(xs[RANK].copy())
                work = dist.all_reduce(t, op=op, async_op=(n == 7))
                if work is not None:
                    assert work.wait()
                np.testing.assert_array_equal(t.numpy(), OPS[op](xs), err_msg=f"all_reduce {op} {dtype} {n}")
                a = xs[RANK].copy()  # reduce: only dst changes
                dist.reduce(a, dst=WORLD - 1, op=op)
                np.testing.assert_array_equal(a, OPS[op](xs) if RANK == WORLD - 1 else xs[RANK])
            for src in range(WORLD):
                b = engine.tensor(xs[RANK].copy())
                dist.broadcast(b, src)
                np.testing.assert_array_equal(b.numpy(), xs[src])
            outs = [engine.zeros(n, dtype=getattr(engine, dtype)) for _ in range(WORLD)]
            dist.all_gather(outs, engine.tensor(xs[RANK]))
            for r in range(WORLD):
                np.testing.assert_array_equal(outs[r].numpy(), xs[r])
            big = np.zeros((WORLD, n), dtype)
            dist.all_gather_into_tensor(big, xs[RANK])
            np.testing.assert_array_equal(big, np.stack(xs))
            gl = [np.zeros(n, dtype) for _ in range(WORLD)] if RANK == 0 else None
            dist.gather(xs[RANK], gl, dst=0)
            if RANK == 0:
                np.testing.assert_array_equal(np.stack(gl), np.stack(xs))
            # reduce_scatter: rank r's list entry j is inputs(r, n, seed + 1 + j)
            lists = [[inputs(r, n, dtype, seed + 1 + j) for j in range(WORLD)] for r in range(WORLD)]
            for op in ["sum", "max"]:
                o = np.zeros(n, dtype)
                w = dist.reduce_scatter(o, lists[RANK], op=op, async_op=True)
                w.wait()
                np.testing.assert_array_equal(o, OPS[op]([lists[r][RANK] for r in range(WORLD)]))
                o2 = np.zeros(n, dtype)
                dist.reduce_scatter_tensor(o2, np.concatenate(lists[RANK]), op=op)
                np.testing.assert_array_equal(o2, o)
            s = np.zeros(n, dtype)
            dist.scatter(s, [x * (j + 1) for j, x in enumerate(xs)] if RANK == 1 else None, src=1)
            np.testing.assert_array_equal(s, xs[RANK] * (RANK + 1))
            nc = np.arange(2 * n, dtype=dtype).reshape(2, n)[:, ::2]  # non-contiguous in place
            ref = nc.copy()
            dist.all_reduce(nc)
            np.testing.assert_array_equal(nc, ref * WORLD)
            checked += 1
    dist.barrier()
    dist.destroy_process_group()
    print(f"rank {RANK}: {checked} size/dtype cases ok", flush=True)


def ddp() -> None:
    """Trains _models.CASES[name] data-parallel on this rank's shard; saves the weights."""
    name, dtype = sys.argv[3], sys.argv[4]
    init()
    model = _models.build(name, dtype, seed=100 + RANK)  # differs per rank: DDP broadcasts rank 0's
    if "bn" in name:
        model = parallel.SyncBatchNorm.convert_sync_batchnorm(model)
    ddp_model = parallel.DistributedDataParallel(model, bucket_cap_mb=0.001,
                                                 find_unused_parameters="unused" in name)
    assert next(iter(ddp_model.state_dict())).startswith("module.")
    opt = engine.optim.SGD(ddp_model.parameters(), lr=0.05, momentum=0.9)
    accum = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    for step in range(_models.STEPS):
        x, y = _models.batch(name, dtype, step, WORLD, accum)
        micro = _models.shard(x, y, RANK, WORLD, accum)
        opt.zero_grad()
        for k, (xm, ym) in enumerate(micro):
            if k < accum - 1:
                with ddp_model.no_sync():
                    (_models.loss(ddp_model(xm), ym) / accum).backward()
            else:
                (_models.loss(ddp_model(xm), ym) / accum).backward()
        opt.step()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(OUT, f"rank{RANK}.npz"), **state)
    dist.destroy_process_group()


def timeout() -> None:
    init(timeout=2.0)
    if RANK == 0:
        t0 = time.monotonic()
        try:
            dist.all_reduce(np.ones(4))
        except RuntimeError as e:
            took = time.monotonic() - t0
            assert "all_reduce" in str(e) and "rank 0" in str(e), e
            assert 1.5 < took < 6, took
            print(f"rank 0 raised after {took:.1f}s: {e}", flush=True)
            os._exit(0)
        raise AssertionError("all_reduce did not time out")
    time.sleep(4)
    os._exit(0)


def killed() -> None:
    init(timeout=60.0)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    with open(os.path.join(OUT, f"pids{RANK}"), "w") as f:
        f.write(f"{os.getpid()} {child.pid}")
    x = np.ones(1000)
    for i in range(1_000_000):
        if RANK == 1 and i == 20 and "--no-kill" not in sys.argv:
            os.kill(os.getpid(), signal.SIGKILL)
        dist.all_reduce(x)
        if RANK != 1 and i >= 20:
            time.sleep(0.01)


def nccl() -> None:
    """NCCL collectives across this machine's GPUs, one per rank, against numpy."""
    import cupy

    cupy.cuda.Device(int(os.environ["LOCAL_RANK"])).use()
    dist.init_process_group("nccl", timeout=datetime.timedelta(seconds=120))
    for dtype in ["float32", "float64", "int64"]:
        for n in [1, 1000, 1 << 20]:
            xs = [inputs(r, n, dtype, 0) for r in range(WORLD)]
            for op in ["sum", "max", "min"]:
                t = engine.tensor(xs[RANK], device="cuda")
                dist.all_reduce(t, op=op)
                np.testing.assert_allclose(t.numpy(force=True), OPS[op](xs), rtol=1e-6)
            b = engine.tensor(xs[RANK], device="cuda")
            dist.broadcast(b, WORLD - 1)
            np.testing.assert_array_equal(b.numpy(force=True), xs[WORLD - 1])
            out = engine.zeros(WORLD * n, dtype=getattr(engine, dtype), device="cuda")
            dist.all_gather_into_tensor(out, engine.tensor(xs[RANK], device="cuda"))
            np.testing.assert_array_equal(out.numpy(force=True), np.concatenate(xs))
    dist.destroy_process_group()


if __name__ == "__main__":
    {"collectives": collectives, "nccl": nccl, "ddp": ddp, "timeout": timeout, "killed": killed}[sys.argv[1]]()
