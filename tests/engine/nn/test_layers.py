"""Layers against their torch twins: outputs and gradients (float64 ~1e-10, float32 ~1e-5)."""
import numpy as np
import pytest

import engine
from engine import nn


@pytest.mark.parametrize("dtype,rtol,atol", [(np.float64, 1e-10, 1e-12), (np.float32, 1e-5, 1e-6)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(torch, oracle, rng, dtype, rtol, atol, bias):
    em = nn.Linear(5, 3, bias=bias)
    tm = torch.nn.Linear(5, 3, bias=bias)
    if dtype == np.float64:
        em.double(), tm.double()
    oracle.copy_weights(em, tm)
    oracle.compare(em, tm, rng.standard_normal((4, 5)).astype(dtype), rtol=rtol, atol=atol)
    oracle.compare(em, tm, rng.standard_normal((2, 3, 5)).astype(dtype), rtol=rtol, atol=atol)


def test_linear_init_distribution_and_repr(torch):
    engine.manual_seed(0)
    m = nn.Linear(400, 300)
    bound = 1 / np.sqrt(400)  # kaiming_uniform(a=sqrt(5)) gives the same bound as the bias
    w = np.asarray(m.weight._data)
    assert w.dtype == np.float32 and np.abs(w).max() <= bound and np.abs(w).max() > 0.99 * bound
    assert abs(w.std() - bound / np.sqrt(3)) < 1e-3
    assert np.abs(m.bias._data).max() <= bound
    assert repr(m) == repr(torch.nn.Linear(400, 300))
    engine.manual_seed(0)
    np.testing.assert_array_equal(nn.Linear(400, 300).weight._data, w)


def test_mlp_float64(torch, oracle, rng):
    em = nn.Sequential(nn.Flatten(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    tm = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(),
                             torch.nn.Linear(16, 4)).double()
    oracle.copy_weights(em, tm)
    oracle.compare(em, tm, rng.standard_normal((6, 3, 2, 2)))


@pytest.mark.parametrize("args", [(), (0,), (1, 2), (2, -1), (0, -1)])
def test_flatten(torch, oracle, rng, args):
    oracle.compare(nn.Flatten(*args), torch.nn.Flatten(*args), rng.standard_normal((2, 3, 4, 5)))


def test_unflatten(torch, oracle, rng):
    oracle.compare(nn.Unflatten(1, (3, 4)), torch.nn.Unflatten(1, (3, 4)), rng.standard_normal((2, 12, 5)))


def test_identity(torch, oracle, rng):
    oracle.compare(nn.Identity(3, foo=1), torch.nn.Identity(3, foo=1), rng.standard_normal((2, 3)))


def test_bilinear(torch, oracle, rng):
    em, tm = nn.Bilinear(3, 4, 5).double(), torch.nn.Bilinear(3, 4, 5).double()
    oracle.copy_weights(em, tm)
    oracle.compare(em, tm, rng.standard_normal((6, 3)), rng.standard_normal((6, 4)))


def test_functional_linear_double_backward_and_shapes(torch, rng):
    """The fused linear: 1-D and 4-D inputs, and create_graph through its backward."""
    from engine.nn import functional as F

    w, b = rng.standard_normal((3, 5)), rng.standard_normal(3)
    for shape in [(5,), (2, 3, 4, 5)]:
        x = rng.standard_normal(shape)
        ex, ew, eb = (engine.tensor(a, requires_grad=True) for a in (x, w, b))
        tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
        eo, to = F.linear(ex, ew, eb), torch.nn.functional.linear(tx, tw, tb)
        np.testing.assert_allclose(eo._data, to.detach().numpy(), rtol=1e-12)
        (eg,) = engine.autograd.grad(eo.pow(2).sum(), [ex], create_graph=True)
        (tg,) = torch.autograd.grad(to.pow(2).sum(), [tx], create_graph=True)
        np.testing.assert_allclose(eg._data, tg.detach().numpy(), rtol=1e-12)
        eg.pow(2).sum().backward()
        tg.pow(2).sum().backward()
        for e, t in ((ex, tx), (ew, tw), (eb, tb)):
            np.testing.assert_allclose(e.grad._data, t.grad.numpy(), rtol=1e-10, atol=1e-12)
