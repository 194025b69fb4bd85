"""Hypothesis property tests against torch: broadcasting shapes, type promotion, reduction
shape rules and basic/advanced indexing."""
import numpy as np
import pytest

import engine

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402 - after the importorskip
from hypothesis import strategies as st  # noqa: E402

SET = settings(max_examples=60, deadline=None, derandomize=True)
DTYPES = ["float32", "float64", "int32", "int64", "bool"]


@st.composite
def broadcastable(draw):
    nd = draw(st.integers(0, 4))
    base = draw(st.lists(st.integers(1, 4), min_size=nd, max_size=nd))
    def variant():
        k = draw(st.integers(0, nd))
        dims = base[nd - k:]
        return tuple(1 if draw(st.booleans()) else d for d in dims)
    return variant(), variant()


def _arr(shape, dtype, seed=0):
    r = np.random.default_rng(seed)
    if dtype == "bool":
        return r.random(shape) > 0.5
    if dtype.startswith("int"):
        return r.integers(1, 5, size=shape).astype(dtype)
    return r.uniform(0.5, 2.0, size=shape).astype(dtype)


@SET
@given(broadcastable(), st.sampled_from(DTYPES), st.sampled_from(DTYPES),
       st.sampled_from(["add", "mul", "div", "maximum", "lt"]))
def test_broadcast_and_promotion(torch, shapes, da, db, op):
    (sa, sb) = shapes
    a, b = _arr(sa, da, 1), _arr(sb, db, 2)
    f = {"add": lambda m, x, y: x + y if x.dtype != m.bool or y.dtype != m.bool else x | y,
         "mul": lambda m, x, y: x * y, "div": lambda m, x, y: x / y,
         "maximum": lambda m, x, y: m.maximum(x, y), "lt": lambda m, x, y: x < y}[op]
    t = f(torch, torch.tensor(a), torch.tensor(b))
    e = f(engine, engine.tensor(a), engine.tensor(b))
    assert e.shape == tuple(t.shape)
    assert e.dtype.name == str(t.dtype).split(".")[1]
    np.testing.assert_allclose(e.numpy().astype(np.float64), t.numpy().astype(np.float64),
                               rtol=1e-6)


@SET
@given(st.sampled_from(DTYPES), st.sampled_from([1, 2.5, True, -3]),
       st.sampled_from([(), (3,), (2, 1)]), st.booleans())
def test_scalar_promotion(torch, dtype, scalar, shape, reverse):
    a = _arr(shape, dtype)
    def f(m):
        x = m.tensor(a)
        if x.dtype == m.bool and isinstance(scalar, bool):
            return x & scalar
        return (scalar * x) if reverse else (x * scalar)
    t, e = f(torch), f(engine)
    assert e.dtype.name == str(t.dtype).split(".")[1], (dtype, scalar)
    np.testing.assert_allclose(e.numpy().astype(np.float64), t.numpy().astype(np.float64))


@st.composite
def shape_and_dims(draw):
    shape = tuple(draw(st.lists(st.integers(0, 4), min_size=0, max_size=4)))
    nd = len(shape)
    if nd == 0:
        dims = draw(st.sampled_from([None, 0, -1, ()]))
    else:
        dims = draw(st.one_of(st.none(), st.integers(-nd, nd - 1),
                              st.lists(st.integers(0, nd - 1), unique=True, max_size=nd)
                              .map(tuple)))
    return shape, dims, draw(st.booleans())


@SET
@given(shape_and_dims(), st.sampled_from(["sum", "mean", "amax", "prod", "var", "logsumexp"]))
def test_reduction_shapes(torch, sdk, op):
    shape, dims, keepdim = sdk
    a = _arr(shape, "float64")
    def f(m):
        x = m.tensor(a)
        if op == "logsumexp":
            return m.logsumexp(x, dims if dims not in (None, ()) else tuple(range(x.ndim)), keepdim)
        fn = getattr(x, op)
        return fn() if dims is None else fn(dims, keepdim=keepdim)
    try:
        t = f(torch)
    except (RuntimeError, IndexError, TypeError) as err:
        with pytest.raises(type(err)):
            f(engine)
        return
    e = f(engine)
    assert e.shape == tuple(t.shape) and e.dtype.name == str(t.dtype).split(".")[1]
    np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-10, equal_nan=True)


@st.composite
def index_case(draw):
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    key = []
    used = 0
    for n in shape:
        kind = draw(st.sampled_from(["int", "slice", "full", "none", "tensor"]))
        if kind == "int":
            key.append(draw(st.integers(-n, n - 1)))
        elif kind == "slice":
            a = draw(st.integers(-n, n))
            b = draw(st.integers(-n, n))
            key.append(slice(a, b, draw(st.sampled_from([None, 1, 2]))))
        elif kind == "full":
            key.append(slice(None))
        elif kind == "none":
            key.append(None)
            key.append(slice(None))
        else:
            key.append(("t", tuple(draw(st.lists(st.integers(-n, n - 1), min_size=1, max_size=3)))))
        used += 1
    if draw(st.booleans()):
        key.insert(draw(st.integers(0, len(key))), Ellipsis)
        if key.count(Ellipsis) > 1:
            key.remove(Ellipsis)
    return shape, key


@SET
@given(index_case())
def test_indexing_matches_torch(torch, case):
    shape, key = case
    a = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    tensors = [k for k in key if isinstance(k, tuple)]
    if len(tensors) > 1 and len({len(k[1]) for k in tensors}) > 1:
        return  # mismatched advanced index lengths: both raise, covered elsewhere

    def conv(m):
        return tuple(m.tensor(list(k[1])) if isinstance(k, tuple) else k for k in key)

    tx = torch.tensor(a, requires_grad=True)
    ex = engine.tensor(a, requires_grad=True)
    try:
        t = tx[conv(torch)]
    except (IndexError, RuntimeError, ValueError):
        with pytest.raises((IndexError, RuntimeError, ValueError)):
            ex[conv(engine)]
        return
    e = ex[conv(engine)]
    assert e.shape == tuple(t.shape)
    np.testing.assert_array_equal(e.detach().numpy(), t.detach().numpy())
    w = np.random.default_rng(0).normal(size=tuple(t.shape))
    (t * torch.tensor(w)).sum().backward()
    (e * engine.tensor(w)).sum().backward()
    np.testing.assert_allclose(ex.grad.numpy(), tx.grad.numpy(), rtol=1e-12)
