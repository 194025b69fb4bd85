"""float64 finite-difference checks (engine.autograd.gradcheck) for every differentiable op,
plus second-order checks (gradgradcheck) for the ones whose backward is itself differentiable."""
import numpy as np
import pytest

import engine
from engine.autograd import gradcheck, gradgradcheck

rng = np.random.default_rng(0)


def T(*shape, low=-2.0, high=2.0):
    return engine.tensor(rng.uniform(low, high, size=shape), dtype=engine.float64,
                         requires_grad=True)


def P(*shape):
    return T(*shape, low=0.3, high=2.0)


IDX = engine.tensor([[0, 2], [1, 0]])
CASES = {
    "add": (lambda a, b: a + b, lambda: (T(2, 3), T(3))),
    "sub": (lambda a, b: a - b * 2, lambda: (T(2, 3), T(2, 1))),
    "mul": (lambda a, b: a * b, lambda: (T(2, 3), T(3))),
    "div": (lambda a, b: a / b, lambda: (T(2, 3), P(3))),
    "pow": (lambda a, b: a ** b, lambda: (P(2, 3), T(3))),
    "pow_scalar": (lambda a: a ** 3 + a ** 0.5 * 0, lambda: (P(4),)),
    "remainder": (lambda a, b: engine.remainder(a, b), lambda: (T(4), P(4) + 3)),
    "maximum": (lambda a, b: engine.maximum(a, b), lambda: (T(3, 2), T(2))),
    "minimum": (lambda a, b: engine.minimum(a, b), lambda: (T(3, 2), T(2))),
    "where": (lambda a, b: engine.where(a > 0, a, b), lambda: (T(3, 2), T(2))),
    "lerp": (lambda a, b, w: engine.lerp(a, b, w), lambda: (T(3), T(3), T(3))),
    "clamp": (lambda a: a.clamp(-1, 1), lambda: (T(5),)),
    "clamp_tensor": (lambda a, lo: a.clamp(min=lo), lambda: (T(5), T(5))),
    **{name: (getattr(engine, name), lambda: (T(2, 3),)) for name in
       ("neg", "abs", "exp", "expm1", "sin", "cos", "tanh", "sigmoid", "relu", "gelu", "silu",
        "softplus", "erf", "square", "atan", "sinh", "cosh")},
    **{name: (getattr(engine, name), lambda: (P(2, 3),)) for name in
       ("log", "log1p", "sqrt", "rsqrt", "reciprocal", "log2", "log10")},
    "gelu_tanh": (lambda a: engine.gelu(a, approximate="tanh"), lambda: (T(4),)),
    "sum": (lambda a: a.sum(1), lambda: (T(2, 3),)),
    "mean": (lambda a: a.mean((0, 2), keepdim=True), lambda: (T(2, 3, 2),)),
    "var": (lambda a: a.var(0), lambda: (T(3, 2),)),
    "std": (lambda a: a.std(), lambda: (T(3, 2),)),
    "prod": (lambda a: a.prod(1), lambda: (T(2, 3),)),
    "prod_zero": (lambda a: (a * engine.tensor([1.0, 0.0, 1.0], dtype=engine.float64)).prod(),
                  lambda: (T(3),)),
    "amax": (lambda a: a.amax(1), lambda: (T(2, 3),)),
    "max_dim": (lambda a: a.max(0).values, lambda: (T(3, 2),)),
    "min_all": (lambda a: a.min(), lambda: (T(3, 2),)),
    "logsumexp": (lambda a: a.logsumexp(1), lambda: (T(2, 3),)),
    "softmax": (lambda a: a.softmax(-1), lambda: (T(2, 3),)),
    "log_softmax": (lambda a: a.log_softmax(0), lambda: (T(2, 3),)),
    "norm": (lambda a: a.norm(dim=1), lambda: (T(2, 3),)),
    "norm_p3": (lambda a: a.norm(p=3), lambda: (T(4),)),
    "cumsum": (lambda a: a.cumsum(1), lambda: (T(2, 3),)),
    "cumprod": (lambda a: a.cumprod(0), lambda: (P(3, 2),)),
    "topk": (lambda a: a.topk(2).values, lambda: (T(2, 4),)),
    "sort": (lambda a: a.sort(0).values, lambda: (T(3, 2),)),
    "reshape": (lambda a: a.reshape(3, 2).T, lambda: (T(2, 3),)),
    "permute": (lambda a: a.permute(2, 0, 1) * 2, lambda: (T(2, 3, 2),)),
    "expand": (lambda a: a.expand(3, 2, 3), lambda: (T(2, 1),)),
    "repeat": (lambda a: a.repeat(2, 3), lambda: (T(2, 1),)),
    "cat": (lambda a, b: engine.cat([a, b, a], 1), lambda: (T(2, 1), T(2, 3))),
    "stack": (lambda a, b: engine.stack([a, b], -1), lambda: (T(2, 3), T(2, 3))),
    "split": (lambda a: a.split(2, 1)[1] * a.chunk(3, 1)[0], lambda: (T(2, 6),)),
    "unbind": (lambda a: a.unbind(0)[1], lambda: (T(2, 3),)),
    "flip_roll": (lambda a: a.flip(0).roll(1, 1), lambda: (T(2, 3),)),
    "tril_triu": (lambda a: a.tril() + a.triu(1) * 2, lambda: (T(3, 3),)),
    "pad_reflect": (lambda a: engine.pad(a, (2, 1), mode="reflect"), lambda: (T(2, 4),)),
    "pad_replicate": (lambda a: engine.pad(a, (1, 2, 1, 0), mode="replicate"), lambda: (T(2, 3),)),
    "pad_constant": (lambda a: engine.pad(a, (1, 1), value=2.0), lambda: (T(2, 3),)),
    "getitem": (lambda a: a[engine.tensor([0, 0, 1]), 1:], lambda: (T(2, 3),)),
    "getitem_mask": (lambda a: a[a > 0], lambda: (T(3, 3),)),
    "gather": (lambda a: a.gather(1, IDX), lambda: (T(2, 3),)),
    "scatter_add": (lambda a, s: a.scatter_add(1, IDX, s), lambda: (T(2, 3), T(2, 2))),
    "index_select": (lambda a: a.index_select(0, engine.tensor([1, 1, 0])), lambda: (T(2, 3),)),
    "masked_fill": (lambda a: a.masked_fill(a > 0.5, 0.0), lambda: (T(2, 3),)),
    "matmul": (lambda a, b: a @ b, lambda: (T(2, 3), T(3, 2))),
    "matmul_batched": (lambda a, b: a @ b, lambda: (T(2, 1, 2, 3), T(3, 3, 2))),
    "matmul_vec": (lambda a, b: a @ b, lambda: (T(3), T(2, 3, 2))),
    "einsum": (lambda a, b: engine.einsum("bij,jk->bk", a, b), lambda: (T(2, 2, 3), T(3, 2))),
    "outer_dot": (lambda a, b: engine.outer(a, b).sum() * engine.dot(a, a), lambda: (T(3), T(2))),
    "setitem": (lambda a, b: _setitem(a, b), lambda: (T(3, 2), T(2))),
    "to_copy": (lambda a: a.to(engine.float64, copy=True) * a, lambda: (T(3),)),
    "einsum_diagonal": (lambda a, b: engine.einsum("iij,jk->ik", a, b),
                        lambda: (T(2, 2, 3), T(3, 2))),
    "einsum_trace": (lambda a: engine.einsum("ii->", a * a), lambda: (T(3, 3),)),
    "inplace_on_view": (lambda a, b: _inplace_on_view(a, b), lambda: (T(3, 2), T(2))),
    **{f"scatter_reduce_{r}": (lambda a, s, r=r: a.scatter_reduce(1, IDX, s, r),
                               lambda: (P(2, 3), P(2, 2)))
       for r in ("sum", "prod", "mean", "amax", "amin")},
    "scatter_reduce_prod_excl": (lambda a, s: a.scatter_reduce(1, IDX, s, "prod",
                                                               include_self=False),
                                 lambda: (P(2, 3), P(2, 2))),
}


def _inplace_on_view(a, b):
    y = a * 1
    y[1].mul_(b)
    y.t()[0].exp_()
    return y


def _setitem(a, b):
    y = a * 1
    y[1] = b * 2
    return y


@pytest.mark.parametrize("name", sorted(CASES))
def test_gradcheck(name):
    fn, make = CASES[name]
    assert gradcheck(fn, make(), eps=1e-6, atol=1e-6, rtol=1e-5)


SECOND_ORDER = ["mul", "div", "pow", "exp", "log", "tanh", "sigmoid", "sqrt", "softmax",
                "log_softmax", "logsumexp", "matmul", "var", "norm", "gelu", "softplus", "sin",
                "prod", "cumsum", "getitem", "gather", "einsum", "maximum", "einsum_diagonal",
                "inplace_on_view", "scatter_reduce_sum"]


@pytest.mark.parametrize("name", SECOND_ORDER)
def test_gradgradcheck(name):
    fn, make = CASES[name]
    assert gradgradcheck(fn, make(), eps=1e-6, atol=1e-5, rtol=1e-4)


def test_gradcheck_detects_wrong_gradient():
    class Bad(engine.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x * x

        @staticmethod
        def backward(ctx, g):
            return g * 3.0

    with pytest.raises(engine.autograd.gradcheck_module.GradcheckError if hasattr(
            engine.autograd, "gradcheck_module") else RuntimeError):
        gradcheck(Bad.apply, (T(3),))
    assert not gradcheck(Bad.apply, (T(3),), raise_exception=False)
