"""Autograd semantics against torch: leaves, accumulation, hooks, grad modes, freed graphs,
version counters, higher-order gradients, custom Functions, in-place ops in the graph."""
import numpy as np
import pytest


def pair(torch, data, requires_grad=True, dtype="float64"):
    import engine

    return (torch.tensor(data, dtype=getattr(torch, dtype), requires_grad=requires_grad),
            engine.tensor(data, dtype=getattr(engine, dtype), requires_grad=requires_grad))


def close(a, b, rtol=1e-10):
    import engine

    a = a.detach().numpy() if isinstance(a, engine.Tensor) else a
    b = b.detach().numpy() if hasattr(b, "detach") else b
    np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-12)


def test_accumulation_and_leaf_rules(torch):
    import engine

    for lib in (torch, engine):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        y = x * 3
        assert x.is_leaf and not y.is_leaf and y.requires_grad and y.grad_fn is not None
        (y * y).sum().backward()
        with pytest.warns(UserWarning) if lib is torch else _nullctx():
            assert y.grad is None
        (x * x).sum().backward()
        close(x.grad, np.array([18 + 2, 36 + 4]))
        x.grad = None
        z = x.detach()
        assert not z.requires_grad and z.is_leaf
        with pytest.raises(RuntimeError):
            y.requires_grad = False
        with pytest.raises(RuntimeError):
            lib.tensor([1, 2]).requires_grad_()


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


def test_retain_grad_and_hooks(torch):
    import engine

    res = []
    for lib in (torch, engine):
        x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True)
        y = x.exp()
        y.retain_grad()
        seen = []
        h = y.register_hook(lambda g, seen=seen: seen.append(g.clone()) or g * 2)
        x.register_hook(lambda g: g + 1)
        (y * x).sum().backward()
        h.remove()
        res.append((x.grad.detach().numpy().copy(), y.grad.detach().numpy().copy(),
                    seen[0].detach().numpy().copy()))
    for a, b in zip(*res):
        close(a, b, rtol=1e-6)


def test_grad_modes(torch):
    import engine

    x = engine.ones(2, requires_grad=True)
    with engine.no_grad():
        assert not (x * 2).requires_grad
        with engine.enable_grad():
            assert (x * 2).requires_grad
        assert not engine.is_grad_enabled()
    assert engine.is_grad_enabled()
    with engine.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    engine.set_grad_enabled(False)
    assert not engine.is_grad_enabled()
    engine.set_grad_enabled(True)
    with engine.inference_mode():
        assert not (x * 2).requires_grad
        assert engine.is_inference_mode_enabled()

    @engine.no_grad()
    def f(t):
        return t * 2

    @engine.inference_mode()
    def f2(t):
        return t * 2

    @engine.set_grad_enabled(False)
    def f3(t):
        return t * 2

    @engine.enable_grad()
    def f4(t):
        return t * 2

    assert engine.is_grad_enabled()
    assert not f(x).requires_grad and not f2(x).requires_grad and not f3(x).requires_grad
    assert engine.is_grad_enabled()
    with engine.no_grad():
        assert f4(x).requires_grad

    @engine.no_grad()
    def gen():
        yield (x * 2).requires_grad
        yield engine.is_grad_enabled()

    assert list(gen()) == [False, False] and engine.is_grad_enabled()


def test_freed_graph_raises(torch):
    import engine

    x = engine.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp().sum()
    y.backward(retain_graph=True)
    y.backward()
    close(x.grad, 2 * np.exp([1.0, 2.0]), rtol=1e-6)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        y.backward()


def test_backward_errors(torch):
    import engine

    for lib in (torch, engine):
        x = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="scalar outputs"):
            (x * 2).backward()
        with pytest.raises(RuntimeError, match="does not require grad"):
            lib.ones(3).sum().backward()


def test_backward_with_gradient_argument(torch):
    tx, ex = pair(torch, [[1.0, 2.0], [3.0, 4.0]])
    for lib, x in ((torch, tx), (None, ex)):
        y = x.sin() * x
        y.backward(gradient=(torch if lib else __import__("engine")).tensor(
            [[1.0, 0.5], [2.0, -1.0]], dtype=x.dtype))
    close(ex.grad, tx.grad)


def test_deep_chain_is_iterative():
    import engine

    x = engine.tensor(2.0, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0 + 0.0
    y.backward()
    assert x.grad.item() == 1.0


def test_wide_diamond_graph(torch):
    tx, ex = pair(torch, [0.5, -1.5])
    outs = []
    for x in (tx, ex):
        a = x.tanh()
        b = a * x + a.exp()
        c = (b * a).sum() + b.sum() * a.sum()
        c.backward()
        outs.append(x.grad)
    close(outs[1], outs[0])


def test_version_counter_error(torch):
    import engine

    for lib in (torch, engine):
        a = lib.tensor([1.0, 2.0], requires_grad=True)
        b = a * 2
        c = b.exp()
        c.add_(1)  # exp saved its output
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            c.sum().backward()
        b2 = a * 2
        d = b2 * b2
        b2.mul_(3)
        with pytest.raises(RuntimeError, match="inplace"):
            d.sum().backward()


def test_leaf_inplace_raises(torch):
    import engine

    for lib in (torch, engine):
        w = lib.ones(3, requires_grad=True)
        with pytest.raises(RuntimeError, match="leaf Variable"):
            w.add_(1)
        with lib.no_grad():
            w.add_(1).mul_(2)
        assert w.requires_grad and w.is_leaf
        close(w.detach(), np.full(3, 4.0))


def test_inplace_in_graph(torch):
    res = []
    for lib_name in ("torch", "engine"):
        lib = torch if lib_name == "torch" else __import__("engine")
        x = lib.tensor([1.0, -2.0, 3.0], requires_grad=True, dtype=lib.float64)
        y = x * 2
        y.mul_(x)
        y.add_(x, alpha=0.5)
        y[1] = x[0] * 4
        y.clamp_(min=-1.0)
        z = lib.zeros(3, dtype=lib.float64)
        z.copy_(y * 3)
        z.sum().backward()
        res.append(x.grad.numpy().copy())
    close(res[1], res[0])


def test_autograd_grad_higher_order(torch):
    import engine

    tx, ex = pair(torch, [0.3, -1.2, 2.0])
    out = []
    for lib, x in ((torch, tx), (engine, ex)):
        y = (x ** 3 * x.sin()).sum() + x.tanh().prod() + x.sigmoid().logsumexp(0)
        (g,) = lib.autograd.grad(y, x, create_graph=True)
        (h,) = lib.autograd.grad(g.sum(), x, create_graph=True)
        (h3,) = lib.autograd.grad((h * h).sum(), x)
        out.append((g.detach().numpy(), h.detach().numpy(), h3.numpy()))
    for a, b in zip(*out):
        close(a, b, rtol=1e-9)


@pytest.mark.parametrize("fn", [
    lambda m, x, w: (x @ w).relu().pow(2).mean(),
    lambda m, x, w: m.softmax(x @ w, -1).log().sum(),
    lambda m, x, w: m.log_softmax(x @ w, 1)[:, 0].sum() + (x.std(0) * w[:, 0]).sum(),
    lambda m, x, w: (x.unsqueeze(-1) * w).sum((0, 1)).norm() + m.maximum(x, x.T @ w[:, :3]).var(),
])
def test_hessian_vector_products(torch, fn):
    import engine

    rng = np.random.default_rng(3)
    xs, ws = rng.normal(size=(3, 3)), rng.normal(size=(3, 4))
    v = rng.normal(size=(3, 3))
    res = []
    for lib in (torch, engine):
        x = lib.tensor(xs, requires_grad=True)
        w = lib.tensor(ws, requires_grad=True)
        (gx,) = lib.autograd.grad(fn(lib, x, w), x, create_graph=True)
        hx, hw = lib.autograd.grad((gx * lib.tensor(v)).sum(), [x, w], allow_unused=True)
        res.append((gx.detach().numpy(), hx.numpy(), hw.numpy()))
    for a, b in zip(*res):
        close(a, b, rtol=1e-8)


def test_grad_allow_unused_and_inputs(torch):
    import engine

    x = engine.ones(2, requires_grad=True)
    u = engine.ones(2, requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="not have been used"):
        engine.autograd.grad(y, [x, u], retain_graph=True)
    gx, gu = engine.autograd.grad(y, [x, u], allow_unused=True, retain_graph=True)
    assert gu is None and x.grad is None
    close(gx, np.full(2, 2.0))
    mid = x * 3
    (gm,) = engine.autograd.grad((mid * mid).sum(), mid)
    close(gm, np.full(2, 6.0))
    z = (x * u).sum()
    z.backward(inputs=[u])
    assert x.grad is None
    close(u.grad, np.ones(2))


def test_custom_function(torch):
    import engine

    class Cube(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            ctx.k = k
            return x ** 3 * k

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x * ctx.k, None

    class TCube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, k):
            ctx.save_for_backward(x)
            ctx.k = k
            return x ** 3 * k

        @staticmethod
        def backward(ctx, g):
            (x,) = ctx.saved_tensors
            return g * 3 * x * x * ctx.k, None

    tx, ex = pair(torch, [1.0, -2.0])
    TCube.apply(tx, 2.0).sin().sum().backward()
    y = Cube.apply(ex, 2.0)
    assert y.grad_fn.name() == "CubeBackward"
    y.sin().sum().backward()
    close(ex.grad, tx.grad)
    # double backward through a Function whose backward uses differentiable ops
    x = engine.tensor([1.5], requires_grad=True, dtype=engine.float64)
    (g,) = engine.autograd.grad(Cube.apply(x, 1.0).sum(), x, create_graph=True)
    (h,) = engine.autograd.grad(g.sum(), x)
    close(h, np.array([9.0]))


def test_function_multiple_outputs():
    import engine

    class Split(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * 2, x * 3

        @staticmethod
        def backward(ctx, ga, gb):
            return ga * 2 + gb * 3

    x = engine.ones(3, requires_grad=True)
    a, b = Split.apply(x)
    (a.sum() + (b * b).sum()).backward()
    close(x.grad, np.full(3, 2 + 3 * 2 * 3.0))


def test_subclass_sharing_data():
    import engine

    class Param(engine.Tensor):
        pass

    base = engine.randn(3, generator=engine.Generator().manual_seed(0))
    p = Param(base, requires_grad=True)
    assert isinstance(p, Param) and p.requires_grad and p._data is base._data
    (p * 2).sum().backward()
    close(p.grad, np.full(3, 2.0))
    q = engine.Tensor._make_subclass(Param, base, True)
    assert isinstance(q, Param) and q._data is base._data
    assert type(p * 2) is engine.Tensor


def test_detach_shares_version_and_data():
    import engine

    x = engine.ones(3, requires_grad=True)
    d = x.detach()
    d.add_(1)
    assert x._version == 1 and x[0].item() == 2.0


def test_dtype_of_grads_follow_inputs(torch):
    import engine

    x = engine.ones(3, requires_grad=True)
    s = engine.tensor(2.0, dtype=engine.float64, requires_grad=True)
    (x * s).sum().backward()
    assert x.grad.dtype == engine.float32 and s.grad.dtype == engine.float64
    assert s.grad.shape == ()
