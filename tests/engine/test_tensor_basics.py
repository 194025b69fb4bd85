"""Tensor creation, dtypes, conversion, attributes and RNG against torch."""
import json

import numpy as np
import pytest


def same(e, t):
    import engine

    assert tuple(e.shape) == tuple(t.shape)
    assert str(e.dtype).split(".")[1] == str(t.dtype).split(".")[1], (e.dtype, t.dtype)
    np.testing.assert_allclose(engine.backend.to_numpy(e._data), t.numpy(), rtol=1e-6)


@pytest.mark.parametrize("expr", [
    "lib.tensor([1, 2, 3])", "lib.tensor([1.0, 2])", "lib.tensor(True)",
    "lib.tensor([[1, 2], [3, 4]], dtype=lib.float64)",
    "lib.tensor(3.5)", "lib.tensor([])", "lib.tensor(np.arange(3, dtype=np.int32))",
    "lib.tensor(np.ones(2))", "lib.zeros(2, 3)", "lib.zeros((2, 3), dtype=lib.int64)", "lib.ones(4)",
    "lib.full((2, 2), 7)", "lib.full((2,), 1.5)", "lib.full((2,), True)", "lib.arange(5)",
    "lib.arange(1, 4, 0.5)", "lib.arange(0, -3, -1)", "lib.arange(5.0)", "lib.linspace(0, 1, 7)",
    "lib.linspace(-2, 5, 1)", "lib.eye(3)", "lib.eye(2, 4, dtype=lib.int64)",
    "lib.zeros_like(lib.ones(2, dtype=lib.int32))", "lib.ones_like(lib.ones(2, 3))",
    "lib.full_like(lib.ones(2), 3)", "lib.empty(2, 3).fill_(1.0)", "lib.tensor([[True, False]])",
    "lib.as_tensor([1, 2])", "lib.from_numpy(np.ones((2, 2), dtype=np.float32))",
    "lib.zeros(0, 3)", "lib.tensor([1, 2]).new_zeros(3)", "lib.tensor([1.5]).new_full((2,), 2)",
    "lib.arange(6).reshape(2, 3).T.contiguous()", "lib.tensor(2) * lib.tensor([1.5])",
])
def test_creation(torch, expr):
    import engine

    same(eval(expr, {"lib": engine, "np": np}), eval(expr, {"lib": torch, "np": np}))


def test_conversions(torch):
    import engine

    x = engine.tensor([[1.5, -2.0], [3.0, 4.25]])
    assert x.tolist() == [[1.5, -2.0], [3.0, 4.25]]
    assert x[0, 0].item() == 1.5 and isinstance(x.sum().item(), float)
    assert x.long().dtype == engine.int64 and x.long().tolist() == [[1, -2], [3, 4]]
    assert x.double().dtype == engine.float64 and x.half().dtype == engine.float16
    assert x.to(engine.int32).dtype == engine.int32 and x.int().dtype == engine.int32
    assert x.float() is x and x.cpu() is x and x.to("cpu") is x
    assert x.to(dtype=engine.float64, copy=True).dtype == engine.float64
    assert x.size() == (2, 2) and x.size(1) == 2 and x.dim() == 2 and x.ndim == 2
    assert x.numel() == 4 and len(x) == 2 and x.device == engine.device("cpu")
    assert str(x.device) == "cpu" and x.device.type == "cpu"
    assert x.numpy() is x._data
    y = engine.tensor([1.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="requires grad"):
        y.numpy()
    assert float(engine.tensor(2.5)) == 2.5 and int(engine.tensor(3)) == 3
    with pytest.raises(RuntimeError):
        engine.ones(2).item()
    with pytest.raises(RuntimeError):
        bool(engine.ones(2))
    z = engine.ones(3, requires_grad=True)
    w = z.double() * 2
    w.sum().backward()
    assert z.grad.dtype == engine.float32 and z.grad.tolist() == [2.0, 2.0, 2.0]
    assert repr(engine.tensor([1.0, 2.0])) == "tensor([1., 2.])"
    assert "grad_fn=<MulBackward0>" in repr(z * 2)


def test_devices():
    import engine

    d = engine.device("cuda:1")
    assert d.type == "cuda" and d.index == 1 and str(d) == "cuda:1"
    assert engine.device("cpu") == "cpu" and engine.device("cuda", 0) == engine.device("cuda:0")
    with pytest.raises(RuntimeError):
        engine.device("tpu")
    if not engine.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA|cupy"):
            engine.ones(2).cuda()


def test_get_array_module():
    import engine

    x = engine.ones(2)
    assert engine.backend.get_array_module(x) is np
    assert engine.backend.get_array_module(x._data, 1.0) is np
    assert engine.backend.to_numpy(x) is x._data


def test_dtypes_and_defaults():
    import engine

    assert engine.get_default_dtype() is engine.float32
    assert engine.float is engine.float32 and engine.long is engine.int64
    assert engine.bool is engine.dtypes.bool_ and repr(engine.float64) == "engine.float64"
    assert engine.float32.is_floating_point and not engine.int64.is_floating_point
    engine.set_default_dtype(engine.float64)
    try:
        assert engine.tensor([1.0]).dtype is engine.float64
        assert (engine.tensor([1, 2]) / 2).dtype is engine.float64
    finally:
        engine.set_default_dtype(engine.float32)
    assert engine.promote_types(engine.int64, engine.float16) is engine.float16


def test_manual_seed_and_generators(torch):
    import engine

    engine.manual_seed(123)
    a = (engine.randn(3, 4), engine.rand(5), engine.randint(0, 10, (6,)), engine.randperm(7))
    engine.manual_seed(123)
    b = (engine.randn(3, 4), engine.rand(5), engine.randint(0, 10, (6,)), engine.randperm(7))
    for x, y in zip(a, b):
        assert np.array_equal(x.numpy(), y.numpy())
    assert a[0].dtype == engine.float32 and a[2].dtype == engine.int64
    assert sorted(a[3].tolist()) == list(range(7))
    assert 0 <= a[1].min().item() and a[1].max().item() < 1
    g = engine.Generator().manual_seed(5)
    g2 = engine.Generator().manual_seed(5)
    assert np.array_equal(engine.randn(4, generator=g).numpy(), engine.randn(4, generator=g2).numpy())
    state = engine.get_rng_state()
    json.dumps(state)
    x1 = engine.randn(10)
    engine.set_rng_state(json.loads(json.dumps(state)))
    assert np.array_equal(engine.randn(10).numpy(), x1.numpy())
    p = engine.full((1000,), 0.3)
    bern = engine.bernoulli(p)
    assert set(np.unique(bern.numpy())) <= {0.0, 1.0} and 200 < bern.sum().item() < 400
    n = engine.normal(2.0, 3.0, (2000,))
    assert abs(n.mean().item() - 2.0) < 0.3 and abs(n.std().item() - 3.0) < 0.3
    n2 = engine.normal(engine.zeros(3), engine.ones(3))
    assert n2.shape == (3,)
    assert engine.randn(2, 3, dtype=engine.float64).dtype == engine.float64


def test_inplace_ops_no_grad(torch):
    import engine

    res = []
    for lib in (torch, engine):
        p = lib.tensor([1.0, 2.0, 3.0], requires_grad=True)
        g = lib.tensor([0.5, -1.0, 2.0])
        with lib.no_grad():
            p.add_(g, alpha=-0.1).mul_(0.9).addcmul_(g, g, value=0.5).addcdiv_(g, g.abs() + 1,
                                                                            value=-2)
            p.clamp_(-1.5, 2.5).lerp_(g, 0.3).div_(2).sub_(1)
            p.copy_(p * 2)
            p.sqrt()
        res.append(p.detach().numpy().copy())
        ints = lib.tensor([1, 2])
        ints.add_(3)
        with pytest.raises(RuntimeError):
            ints.add_(0.5)
        ints.zero_()
        assert ints.tolist() == [0, 0]
    np.testing.assert_allclose(res[1], res[0], rtol=1e-6)
