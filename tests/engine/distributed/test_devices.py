"""The same collectives and DDP on every device: gloo on "cpu", NCCL on "cuda" (marked gpu).

A world of one still runs the NCCL path end to end (communicator, stream, events);
with two or more GPUs the NCCL collectives also run across ranks via the launcher.
"""
import datetime
import os
import subprocess
import sys

import numpy as np
import pytest

import engine
import engine.distributed as dist
from engine import nn
from engine.nn import parallel

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(HERE)))


@pytest.fixture
def group(device):
    backend = "nccl" if device == "cuda" else "gloo"
    dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=60))
    yield device
    dist.destroy_process_group()


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64"])
def test_collectives_world_of_one(group, dtype):
    x = np.arange(1, 1001).astype(dtype)
    for op in ["sum", "max", "min", "product", "avg"]:
        if op == "avg" and dtype == "int64":
            continue
        t = engine.tensor(x[:10], device=group)
        w = dist.all_reduce(t, op=op, async_op=True)
        w.wait()
        np.testing.assert_array_equal(t.numpy(force=True), x[:10])
    t = engine.tensor(x, device=group)
    dist.broadcast(t, 0)
    out = engine.zeros(1000, dtype=getattr(engine, dtype), device=group)
    dist.all_gather_into_tensor(out, t)
    np.testing.assert_array_equal(out.numpy(force=True), x)
    rs = engine.zeros(1000, dtype=getattr(engine, dtype), device=group)
    dist.reduce_scatter_tensor(rs, t)
    np.testing.assert_array_equal(rs.numpy(force=True), x)
    dist.barrier()


def test_ddp_equals_single_device(group):
    engine.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2)).double().to(group)
    ref = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2)).double().to(group)
    ref.load_state_dict(model.state_dict())
    ddp = parallel.DistributedDataParallel(model, bucket_cap_mb=0.0005)
    opts = [engine.optim.SGD(m.parameters(), lr=0.1, momentum=0.9) for m in (ddp, ref)]
    g = np.random.default_rng(0)
    for _ in range(5):
        x = engine.tensor(g.standard_normal((8, 5)), device=group)
        for m, opt in zip((ddp, ref), opts):
            opt.zero_grad()
            (m(x) ** 2).mean().backward()
            opt.step()
    for a, b in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(a.numpy(force=True), b.numpy(force=True), rtol=1e-12, atol=1e-12)


@pytest.mark.gpu
def test_nccl_across_gpus(tmp_path):
    cupy = pytest.importorskip("cupy")
    n = cupy.cuda.runtime.getDeviceCount()
    if n < 2:
        pytest.skip("one GPU: the world-of-one tests cover the NCCL path")
    env = dict(os.environ, PYTHONPATH=ROOT)
    p = subprocess.run([sys.executable, "-m", "engine.distributed.run", "--nproc-per-node", str(n),
                        os.path.join(HERE, "_ranks.py"), "nccl", str(tmp_path)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 0, p.stdout + p.stderr
