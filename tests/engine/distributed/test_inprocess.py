"""In-process checks: the stores, a world of one, and DDP's bucket launch during backward."""
import datetime
import threading
import time

import numpy as np
import pytest

import engine
import engine.distributed as dist
from engine import nn
from engine.distributed.run import free_port
from engine.nn import parallel


def test_tcpstore_set_get_add_wait_and_timeout():
    port = free_port()
    master = dist.TCPStore("127.0.0.1", port, is_master=True, timeout=datetime.timedelta(seconds=5))
    client = dist.TCPStore("127.0.0.1", port, timeout=1.0)
    try:
        client.set("k", b"v\x00\xff")
        assert master.get("k") == b"v\x00\xff"
        assert master.add("n", 2) == 2 and client.add("n", 3) == 5
        assert client.check(["k", "n"]) and not client.check(["k", "nope"])
        threading.Timer(0.2, lambda: master.set("late", "x")).start()
        client.wait(["late"])  # blocks until set from the other side
        assert client.get("late") == b"x"
        t0 = time.monotonic()
        with pytest.raises(RuntimeError, match="timed out"):
            client.get("never")
        assert time.monotonic() - t0 < 4
        assert client.delete_key("k") and not client.check(["k"])
    finally:
        client.close()
        master.close()


def test_hashstore_and_prefix():
    s = dist.HashStore(timeout=0.2)
    p = dist.PrefixStore("a", s)
    p.set("x", "1")
    assert s.get("a/x") == b"1" and p.add("c", 4) == 4
    with pytest.raises(RuntimeError):
        p.get("missing")


@pytest.fixture
def world_of_one():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1,
                            timeout=datetime.timedelta(seconds=10))
    yield
    dist.destroy_process_group()


def test_world_of_one(world_of_one):
    assert dist.is_initialized() and dist.get_rank() == 0 and dist.get_world_size() == 1
    with pytest.raises(ValueError, match="twice"):
        dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    t = engine.tensor([1.0, 2.0])
    w = dist.all_reduce(t, op=dist.ReduceOp.AVG, async_op=True)
    assert w.wait() and w.is_completed()
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])
    with pytest.raises(ValueError, match="AVG"):
        dist.all_reduce(np.ones(2, np.int64), op=dist.ReduceOp.AVG)
    with pytest.raises(ValueError, match="world_size=1"):
        dist.all_gather([np.zeros(2), np.zeros(2)], np.ones(2))
    dist.barrier()


def test_not_initialized():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="not been initialized"):
        dist.get_rank()


def test_ddp_launches_buckets_during_backward(world_of_one):
    """The last layer's bucket is reduced while backward is still in the first layer."""
    engine.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    ddp = parallel.DistributedDataParallel(model, bucket_cap_mb=0.01)
    red = ddp.reducer
    assert len(red.buckets) >= 3
    # reverse order: the first bucket holds the last layer's parameters
    assert red.params[red.buckets[0].indices[0]] is model[4].bias
    seen = {}
    x = engine.randn(8, 4)
    launched = []
    orig = dist.all_reduce

    def spy(*a, **k):
        launched.append(len(launched))
        return orig(*a, **k)
    dist.all_reduce = spy
    try:
        # a hook on the first Linear's output inside the DDP graph runs late in backward
        def on_output(m, i, o):
            o.register_hook(lambda g: seen.setdefault("launched_before_first_layer", len(launched)) and None)
        ddp.module[0].register_forward_hook(on_output)
        out = ddp(x)
        out.sum().backward()
    finally:
        dist.all_reduce = orig
    assert seen["launched_before_first_layer"] >= 1
    assert len(launched) == len(red.buckets)
    ref = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 2))
    ref.load_state_dict(model.state_dict())
    ref(x).sum().backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-6)


def test_ddp_state_dict_prefix_and_no_sync(world_of_one):
    model = nn.Linear(3, 2)
    ddp = parallel.DistributedDataParallel(model)
    assert list(ddp.state_dict()) == ["module.weight", "module.bias"]
    assert ddp.module is model
    x = engine.randn(5, 3, generator=engine.Generator().manual_seed(0))
    with ddp.no_sync():
        ddp(x).sum().backward()
    g1 = model.weight.grad.numpy().copy()
    ddp(x).sum().backward()
    np.testing.assert_allclose(model.weight.grad.numpy(), 2 * g1, rtol=1e-6)


def test_ddp_unused_parameter_without_flag_raises(world_of_one):
    class Two(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(2, 2)
            self.b = nn.Linear(2, 2)

        def forward(self, x):
            return self.a(x)

    ddp = parallel.DistributedDataParallel(Two(), bucket_cap_mb=25)
    with pytest.raises(RuntimeError, match="find_unused_parameters"):
        ddp(engine.randn(3, 2, generator=engine.Generator().manual_seed(0))).sum().backward()


def test_ddp_gradient_outside_forward_raises(world_of_one):
    model = nn.Linear(2, 2)
    ddp = parallel.DistributedDataParallel(model)
    x = engine.randn(3, 2, generator=engine.Generator().manual_seed(0))
    loss = ddp(x).sum() + (model.weight ** 2).sum()  # weight used directly too
    with pytest.raises(RuntimeError, match="outside the DDP forward"):
        loss.backward()
