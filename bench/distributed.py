"""Distributed benchmark: collective bandwidth and DDP step time vs one process.

CPU (default): all_reduce of ``--mb`` MB float32 across ``--world`` ranks on the
gloo/cpu backend, in GB/s (algorithm bandwidth = bytes / time, bus bandwidth =
algbw * 2(n-1)/n), beside the machine's memcpy bandwidth measured in the same run;
then a DDP training step (MLP) on each rank vs a single process at the same
per-rank batch.

``--device cuda``: the same over NCCL with one rank per GPU present (world size 1
on a one-GPU machine still runs the NCCL path), sizes 1 MB .. ``--mb``.

    python bench/distributed.py [--device cuda] [--world 2] [--mb 100] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")  # every process, single and ranks, on one BLAS thread

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def memcpy_gbs(mb: float, repeat: int) -> float:
    a = np.ones(int(mb * 2**20) // 4, np.float32)
    b = np.empty_like(a)
    np.copyto(b, a)
    ts = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        np.copyto(b, a)
        ts.append(time.perf_counter() - t0)
    return a.nbytes / min(ts) / 1e9


def _model(device: str):
    import engine
    from engine import nn

    engine.manual_seed(0)
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10)).to(device)


def _steps(model, device: str, batch: int, steps: int) -> list[float]:
    import engine
    from engine.nn import functional as F

    opt = engine.optim.SGD(model.parameters(), lr=0.01)
    g = np.random.default_rng(0)
    x = engine.tensor(g.standard_normal((batch, 784)).astype(np.float32), device=device)
    y = engine.tensor(g.integers(0, 10, batch), device=device)
    ts = []
    for _ in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        if device == "cuda":
            import cupy

            cupy.cuda.get_current_stream().synchronize()
        ts.append(time.perf_counter() - t0)
    return ts[2:]


def rank_main(rank: int, args: argparse.Namespace, outdir: str) -> None:
    import engine
    import engine.distributed as dist
    from engine.nn import parallel

    device = args.device
    if device == "cuda":
        import cupy

        cupy.cuda.Device(rank).use()
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    world = dist.get_world_size()
    res: dict = {"rank": rank, "world": world, "all_reduce": []}
    sizes = [args.mb] if device == "cpu" else [1, 16, args.mb]
    for mb in sizes:
        n = int(mb * 2**20) // 4
        a = engine.ones(n, device=device)
        dist.all_reduce(a)  # warm-up: page faults, NCCL channels
        ts = []
        for _ in range(args.repeat):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(a)
            if device == "cuda":
                import cupy

                cupy.cuda.get_current_stream().synchronize()
            ts.append(time.perf_counter() - t0)
        t = float(np.median(ts))
        alg = n * 4 / t / 1e9
        res["all_reduce"].append({"mb": mb, "seconds_median": t, "seconds_min": min(ts), "algbw_GBs": alg,
                                  "busbw_GBs": alg * 2 * (world - 1) / world})
    model = parallel.DistributedDataParallel(_model(device))
    ts = _steps(model, device, args.batch, args.steps)
    res["ddp_step_ms_median"] = float(np.median(ts)) * 1e3
    with open(os.path.join(outdir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)
    dist.destroy_process_group()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--world", type=int, default=2, help="CPU ranks (cuda: one per GPU)")
    p.add_argument("--mb", type=float, default=100.0)
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--batch", type=int, default=64, help="per-rank batch of the DDP step")
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    from engine.distributed.run import spawn

    world = args.world
    if args.device == "cuda":
        import cupy

        world = cupy.cuda.runtime.getDeviceCount()
    out: dict = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                             "cpus": os.cpu_count(), "python": platform.python_version(),
                             "numpy": np.__version__, "loadavg": os.getloadavg()},
                 "args": vars(args)}
    if args.device == "cpu":
        out["memcpy_GBs"] = memcpy_gbs(args.mb, args.repeat)
    else:
        import cupy

        out["machine"]["gpu"] = cupy.cuda.runtime.getDeviceProperties(0)["name"].decode()
        from cupy.cuda import nccl

        out["machine"]["nccl"] = nccl.get_version()
    single = _steps(_model(args.device), args.device, args.batch, args.steps)
    out["single_step_ms_median"] = float(np.median(single)) * 1e3
    with tempfile.TemporaryDirectory() as d:
        spawn(rank_main, (args, d), nprocs=world, timeout=600)
        ranks = []
        for r in range(world):
            with open(os.path.join(d, f"rank{r}.json")) as f:
                ranks.append(json.load(f))
    out["all_reduce"] = ranks[0]["all_reduce"]
    out["ddp_step_ms_median_per_rank"] = [r["ddp_step_ms_median"] for r in ranks]
    out["machine"]["loadavg_after"] = os.getloadavg()
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
