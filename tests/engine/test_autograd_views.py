"""In-place ops on views: torch's semantics (the base's history becomes CopySlices), against torch."""
import numpy as np
import pytest

import engine


def _run(lib, fn, *arrays):
    xs = [lib.tensor(a, requires_grad=True) for a in arrays]
    out = fn(lib, *xs)
    w = lib.tensor(np.linspace(0.5, 1.5, int(np.prod(out.shape))).reshape(tuple(out.shape)))
    (out * w).sum().backward()
    return out, [x.grad for x in xs]


def _slice_mul(m, a):
    b = a * 1
    b[0].mul_(2)
    return b


def _transposed_row_exp(m, a):
    b = a.clone()
    b.t()[1].exp_()
    return b * b


def _copy_into_zeros(m, a):
    z = m.zeros(4, 3, dtype=a.dtype)
    z[1:3].copy_(a[:2] * 2)
    return z.sin()


def _setitem_on_view(m, a):
    b = a + 0
    v = b[:, 1:]
    v[0] = a[1, 1:] * 3
    return b


def _view_of_view(m, a):
    b = a * 1
    b.reshape(12)[2:5].add_(a.reshape(12)[5:8])
    return b


def _narrow_then_use_view(m, a):
    b = a * 2
    v = b.narrow(1, 0, 2)
    v.tanh_()
    return v * b[:, :2]  # the view's new history and the base's agree


CASES = {"slice_mul": _slice_mul, "transposed_row_exp": _transposed_row_exp,
         "copy_into_zeros": _copy_into_zeros, "setitem_on_view": _setitem_on_view,
         "view_of_view": _view_of_view, "narrow_then_use_view": _narrow_then_use_view}


@pytest.mark.parametrize("name", sorted(CASES))
def test_inplace_on_view_matches_torch(torch, name):
    a = np.random.default_rng(1).uniform(-1, 1, (4, 3))
    eo, eg = _run(engine, CASES[name], a)
    to, tg = _run(torch, CASES[name], a)
    np.testing.assert_allclose(eo.detach().numpy(), to.detach().numpy(), rtol=1e-12)
    for e, t in zip(eg, tg):
        np.testing.assert_allclose(e.numpy(), t.numpy(), rtol=1e-12, atol=1e-14)


def test_base_takes_copyslices_and_bumps_version(torch):
    for lib in (engine, torch):
        a = lib.ones(2, 3, requires_grad=True)
        b = a * 1
        v = b[0]
        v.mul_(2)
        assert b.grad_fn.name().endswith("CopySlices")
        assert b._version == v._version == 1
        assert v._base is b


def test_view_of_leaf_inplace_raises(torch):
    for lib in (engine, torch):
        a = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="view of a leaf Variable"):
            a[0].mul_(2)


def test_view_inplace_under_no_grad_then_backward_raises():
    a = engine.ones(3, requires_grad=True)
    b = a.exp()  # saves its output
    with engine.no_grad():
        b[1:].mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        b.sum().backward()


def test_create_graph_through_copyslices(torch):
    def f(lib):
        a = lib.tensor([0.3, -0.7, 1.1], dtype=lib.float64, requires_grad=True)
        b = a * a
        b[1:].mul_(a[:2])
        (g,) = lib.autograd.grad(b.sum(), a, create_graph=True)
        (h,) = lib.autograd.grad(g.sum(), a)
        return g.detach().numpy(), h.numpy()
    for x, y in zip(f(engine), f(torch)):
        np.testing.assert_allclose(x, y, rtol=1e-12)


@pytest.mark.parametrize("via_view", [False, True])
def test_op_before_inplace_keeps_old_history(torch, via_view):
    """z used b before b was modified in place: z's gradient must flow through b's old
    history (graph edges capture the node, not the tensor), b's through the new one."""
    got = []
    for m in (engine, torch):
        a = m.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=m.float64, requires_grad=True)
        b = a * 1
        z = b + 1  # saves nothing, so no version error can hide a wrong route
        if via_view:
            b[0].mul_(3)
        else:
            b.mul_(3)
        (z * 2 + b).sum().backward()
        got.append(a.grad.numpy().copy())
    np.testing.assert_array_equal(got[0], got[1])
