"""Reductions against torch: dim/keepdim variants, values+indices, gradients."""
import numpy as np
import pytest

DIMS = [None, 0, -1, (0, 2), 1]

RED = {
    "sum": lambda m, x, d, k: x.sum() if d is None else x.sum(d, keepdim=k),
    "mean": lambda m, x, d, k: x.mean() if d is None else x.mean(d, keepdim=k),
    "var": lambda m, x, d, k: x.var() if d is None else x.var(d, keepdim=k),
    "var_c0": lambda m, x, d, k: m.var(x, dim=d, correction=0, keepdim=k),
    "std": lambda m, x, d, k: x.std() if d is None else x.std(d, keepdim=k),
    "std_unbiased_false": lambda m, x, d, k: m.std(x, d, unbiased=False, keepdim=k),
    "prod": lambda m, x, d, k: x.prod() if d is None else x.prod(d if isinstance(d, int) else 0,
                                                                 keepdim=k),
    "amax": lambda m, x, d, k: x.amax() if d is None else x.amax(d, keepdim=k),
    "amin": lambda m, x, d, k: x.amin() if d is None else x.amin(d, keepdim=k),
    "logsumexp": lambda m, x, d, k: m.logsumexp(x, (0, 1, 2) if d is None else d, keepdim=k),
    "norm": lambda m, x, d, k: x.norm() if d is None else x.norm(dim=d, keepdim=k),
    "norm1": lambda m, x, d, k: x.norm(p=1, dim=d, keepdim=k),
    "norm3": lambda m, x, d, k: x.norm(p=3, dim=d, keepdim=k),
    "norm_inf": lambda m, x, d, k: x.norm(p=float("inf"), dim=d, keepdim=k),
}


@pytest.mark.parametrize("keepdim", [False, True])
@pytest.mark.parametrize("dim", DIMS, ids=str)
@pytest.mark.parametrize("name", sorted(RED))
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_reduction(helper_test_op, name, dim, keepdim, dtype):
    helper_test_op(lambda m, x: RED[name](m, x, dim, keepdim), [(3, 4, 5)], dtype=dtype)


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "logsumexp", "norm", "prod"])
def test_reduction_0d(helper_test_op, name):
    helper_test_op(lambda m, x: RED[name](m, x, 0, False) if name != "logsumexp"
                   else m.logsumexp(x, 0), [()])


def test_empty_reductions(helper_test_op):
    helper_test_op(lambda m, x: x.sum(0), [(0, 3)])
    helper_test_op(lambda m, x: x.sum(), [(0, 3)])
    helper_test_op(lambda m, x: x.prod(1), [(0, 3)])
    helper_test_op(lambda m, x: x.mean(1), [(2, 0)], grad=False)


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_with_indices(helper_test_op, dim, keepdim):
    helper_test_op(lambda m, x: tuple(x.max(dim, keepdim=keepdim)), [(4, 5, 3)])
    helper_test_op(lambda m, x: tuple(m.min(x, dim=dim, keepdim=keepdim)), [(4, 5, 3)])
    helper_test_op(lambda m, x: (x.argmax(dim, keepdim=keepdim), x.argmin(dim)), [(4, 5, 3)])


def test_max_full_and_ties(helper_test_op):
    helper_test_op(lambda m, x: x.max(), [(3, 4)])
    helper_test_op(lambda m, x: x.min(), [(3, 4)])
    ties = np.array([[1.0, 3.0, 3.0], [3.0, 0.0, 2.0]])
    helper_test_op(lambda m, x: x.max(), [], inputs=[ties])
    helper_test_op(lambda m, x: x.amax(1), [], inputs=[ties])
    helper_test_op(lambda m, x: m.maximum(x, x.flip(1)), [], inputs=[ties])
    helper_test_op(lambda m, x: (x.argmax(), x.argmin()), [(3, 4)])


@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_softmax_family(helper_test_op, dim, dtype):
    helper_test_op(lambda m, x: m.softmax(x, dim), [(3, 4, 5)], dtype=dtype, low=-5, high=5)
    helper_test_op(lambda m, x: m.log_softmax(x, dim=dim), [(3, 4, 5)], dtype=dtype, low=-5, high=5)
    helper_test_op(lambda m, x: x.softmax(dim).log_softmax(dim), [(3, 4, 5)], dtype=dtype)


def test_softmax_large_values_stable(helper_test_op):
    helper_test_op(lambda m, x: x.log_softmax(-1), [], inputs=[np.array([[1000.0, 0.0, -1000.0]])])
    helper_test_op(lambda m, x: x.softmax(-1), [], inputs=[np.array([[1000.0, 999.0, -1000.0]])])
    helper_test_op(lambda m, x: m.logsumexp(x, 1), [], inputs=[np.array([[1000.0, 999.0]])])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cumsum_cumprod(helper_test_op, dim):
    helper_test_op(lambda m, x: x.cumsum(dim), [(3, 4, 2)])
    helper_test_op(lambda m, x: m.cumprod(x, dim), [(3, 4, 2)], low=0.5, high=1.5)


def test_int_reductions(helper_test_op):
    helper_test_op(lambda m, x: (x.sum(), x.sum(0), x.prod(1), x.cumsum(0), x.amax(0), x.argmax(1)),
                   [(3, 4)], dtype="int64", low=-3, high=3, grad=False)
    helper_test_op(lambda m, x: (x.sum(), x.any(), x.all(1), x.sum(0)), [(3, 4)], dtype="bool",
                   grad=False)
    helper_test_op(lambda m, x: (x.any(0, keepdim=True), m.count_nonzero(x), x.all()), [(3, 4)],
                   dtype="int64", low=0, high=1, grad=False)


def test_mean_int_raises(torch):
    import engine

    with pytest.raises(RuntimeError):
        torch.tensor([1, 2]).mean()
    with pytest.raises(RuntimeError, match="mean"):
        engine.tensor([1, 2]).mean()


@pytest.mark.parametrize("largest", [True, False])
@pytest.mark.parametrize("dim", [0, -1])
def test_topk_sort(helper_test_op, largest, dim):
    helper_test_op(lambda m, x: tuple(x.topk(2, dim=dim, largest=largest)), [(4, 5)])
    helper_test_op(lambda m, x: tuple(m.sort(x, dim=dim, descending=largest)), [(4, 5)])
    helper_test_op(lambda m, x: m.argsort(x, dim=dim, descending=largest), [(4, 5)], grad=False)


def test_sort_stable_ties(helper_test_op):
    x = np.array([[3, 1, 3, 2, 1, 3]], dtype=np.int64)
    helper_test_op(lambda m, x: tuple(x.sort(stable=True)), [], inputs=[x], grad=False)
    helper_test_op(lambda m, x: tuple(x.sort(descending=True, stable=True)), [], inputs=[x],
                   grad=False)


def test_reduction_dim_errors(torch):
    import engine

    for lib in (torch, engine):
        with pytest.raises(IndexError):
            lib.zeros(2, 3).sum(2)
        with pytest.raises((RuntimeError, IndexError)):
            lib.zeros(0).argmax()
