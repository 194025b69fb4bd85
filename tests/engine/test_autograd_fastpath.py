"""The backward fast path: engine-owned gradient buffers never leak into user-visible tensors.

Backwards that record nothing return fresh arrays that the engine accumulates into in
place and hands to leaves without a copy; these tests pin down that no hook, retained
grad, captured input grad, root gradient or second leaf ever sees a buffer change.
"""
import numpy as np
import pytest

import engine


def _t(a, rg=True):
    return engine.tensor(np.asarray(a, dtype=np.float64), requires_grad=rg)


def test_shared_gradient_to_two_leaves_is_not_aliased():
    a, b = _t([1.0, 2.0]), _t([3.0, 4.0])
    ((a + b) * 2).sum().backward()  # add passes MulBackward's fresh buffer to both
    assert not np.shares_memory(a.grad.numpy(), b.grad.numpy())
    a.grad.numpy()[:] = 7
    assert b.grad.tolist() == [2.0, 2.0]


def test_root_gradient_is_never_written():
    a = _t([1.0, 2.0, 3.0])
    g = engine.tensor([1.0, 1.0, 1.0], dtype=engine.float64)
    for _ in range(2):  # MulBackward returns a fresh array; AddBackward passes g itself
        (a * 1 + a).backward(g)
    assert g.tolist() == [1.0, 1.0, 1.0]
    assert a.grad.tolist() == [4.0, 4.0, 4.0]


def test_hook_sees_a_gradient_that_does_not_change_later():
    a = _t([1.0, 2.0])
    seen = []
    y = a * 2
    y.register_hook(lambda g: seen.append(g))
    z = y * 3 + y.exp()  # y gets two contributions: summed before the hook runs
    z.sum().backward()
    expected = 3 + np.exp([2.0, 4.0])
    np.testing.assert_allclose(seen[0].numpy(), expected)
    np.testing.assert_allclose(a.grad.numpy(), 2 * expected)
    np.testing.assert_allclose(seen[0].numpy(), expected)  # still intact afterwards


def test_retained_grad_is_not_overwritten_by_accumulation():
    a = _t([0.5, -1.0])
    y = a.tanh()
    y.retain_grad()
    (y * 2 + y * 3).sum().backward()
    np.testing.assert_allclose(y.grad.numpy(), [5.0, 5.0])
    ref = 5 * (1 - np.tanh([0.5, -1.0]) ** 2)
    np.testing.assert_allclose(a.grad.numpy(), ref)


def test_leaf_hook_result_is_copied_not_owned():
    a = _t([1.0, 2.0])
    kept = []

    def hook(g):
        kept.append(g)
        return g
    a.register_hook(hook)
    (a * 3).sum().backward()
    (a * 3).sum().backward()
    assert kept[0].tolist() == [3.0, 3.0]  # the second backward accumulated elsewhere
    assert a.grad.tolist() == [6.0, 6.0]


def test_autograd_grad_results_are_independent():
    a = _t([1.0, 2.0])
    y = a.sin()
    g1, = engine.autograd.grad((y * y).sum(), a, retain_graph=True)
    g2, = engine.autograd.grad((y * y).sum(), a)
    assert not np.shares_memory(g1.numpy(), g2.numpy())
    np.testing.assert_allclose(g1.numpy(), g2.numpy())


def _chain(m, x):
    y = x
    ops = [lambda y: y * 1.01, lambda y: y + 0.1, lambda y: y.tanh(), lambda y: y * x,
           lambda y: y.sigmoid(), lambda y: y - x, lambda y: y.relu(), lambda y: y.exp(),
           lambda y: y / 1.5, lambda y: y.sin(), lambda y: y.cos(), lambda y: y.abs(),
           lambda y: -y, lambda y: y.square(), lambda y: (y * y + 1).sqrt(),
           lambda y: (y * y + 1).rsqrt(), lambda y: (y.abs() + 1).log(),
           lambda y: y.expm1(), lambda y: m.atan(y), lambda y: (y.abs() + 0.5).reciprocal(),
           lambda y: (y * 0.1).sinh() + (y * 0.1).cosh(), lambda y: y.tan() * 0.1,
           lambda y: 2 - y, lambda y: x / (y.abs() + 1)]
    for i in range(48):
        y = ops[i % len(ops)](y)
    return y


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_backward_chain_matches_torch(helper_test_op, dtype):
    """Every fast-path backward (and repeated uses of x, accumulated in place) vs torch."""
    helper_test_op(_chain, [(4, 5)], dtype=dtype, low=-1, high=1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fast_backward_broadcast_matches_torch(helper_test_op, dtype):
    """Fast-path gradients summed back over broadcast dims, cast back to each input's dtype."""
    helper_test_op(lambda m, a, b: ((a * b).tanh() - b / (a.abs() + 1) + (a + b).relu()).sigmoid(),
                   [(3, 1, 4), (2, 4)], dtype=dtype)


def test_fast_backward_matmul_leaf_grads_are_fresh(torch):
    gen = engine.Generator().manual_seed(0)
    a = engine.randn(3, 4, generator=gen, requires_grad=True)
    b = engine.randn(4, 2, generator=gen, requires_grad=True)
    g = engine.randn(3, 2, generator=gen)
    (a @ b).backward(g)
    assert a.grad.is_contiguous() and b.grad.is_contiguous()
    ta, tb = torch.tensor(a.detach().numpy(), requires_grad=True), \
        torch.tensor(b.detach().numpy(), requires_grad=True)
    (ta @ tb).backward(torch.tensor(g.numpy()))
    # float32 sums of k products differ by at most k * eps * sum(|terms|) between two correct
    # implementations: a tolerance per element, right also where the sum cancels to near zero
    an, bn, gn = a.detach().numpy(), b.detach().numpy(), g.numpy()
    eps = np.finfo(np.float32).eps
    for got, want, scale, k in ((a.grad.numpy(), ta.grad.numpy(), np.abs(gn) @ np.abs(bn).T, 2),
                                (b.grad.numpy(), tb.grad.numpy(), np.abs(an).T @ np.abs(gn), 3)):
        assert got.shape == want.shape
        np.testing.assert_array_less(np.abs(got - want), k * eps * scale + np.finfo(np.float32).tiny)


def test_relu_backward_is_bit_exact_where():
    """relu's fast backward masks bits: inf/NaN upstream gradients stay torch's where()."""
    x = _t([-1.0, 0.0, 2.0, -3.0, 4.0])
    y = x.relu()
    y.backward(engine.tensor([np.inf, np.nan, 5.0, -np.inf, -2.0], dtype=engine.float64))
    out = x.grad.numpy()
    assert out[0] == 0 and not np.signbit(out[0]) and out[1] == 0 and out[3] == 0
    assert out[2] == 5.0 and out[4] == -2.0


def test_threaded_ufuncs_are_bit_identical_and_keep_errstate():
    """Big contiguous exp/tanh/sin/cos/sigmoid split over threads give numpy's exact bits;
    overflow in a worker thread stays silent under the op's errstate (sigmoid of -1000)."""
    import warnings

    from engine.ops import _parallel

    x = np.linspace(-1000, 1000, _parallel.MIN_ELEMENTS * 2 + 3).astype(np.float32)
    t = engine.tensor(x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = engine.sigmoid(t).numpy()
    with np.errstate(over="ignore"):
        assert np.array_equal(s, 1 / (1 + np.exp(-x)))
    for name in ("exp", "tanh", "sin", "cos"):
        with np.errstate(over="ignore"):
            ref = getattr(np, name)(x)
            got = getattr(engine, name)(t).numpy()
        assert np.array_equal(got, ref, equal_nan=True), name
