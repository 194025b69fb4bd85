"""Indexing, gather/scatter family and __setitem__ against torch, with gradients."""
import numpy as np
import pytest

IDX = [
    lambda m, x: x[1],
    lambda m, x: x[-1, 2],
    lambda m, x: x[:, 1:3],
    lambda m, x: x[::2, ..., None],
    lambda m, x: x[None, 1, :, -1],
    lambda m, x: x[..., 0],
    lambda m, x: x[m.tensor([0, 2, 0])],
    lambda m, x: x[m.tensor([[0, 1], [2, 2]]), 1],
    lambda m, x: x[:, m.tensor([3, 0, 3])],
    lambda m, x: x[m.tensor([0, 1]), m.tensor([2, 3])],
    lambda m, x: x[m.tensor([0, 1]), :, m.tensor([1, 1])],
    lambda m, x: x[x > 0],
    lambda m, x: x[x[:, 0, 0] > 0],
    lambda m, x: x[[0, 2]],
    lambda m, x: x[1:, [1, 0], ::-1] if False else x[1:, [1, 0]],
    lambda m, x: x[m.tensor(1)],
]


@pytest.mark.parametrize("i", range(len(IDX)))
def test_getitem(helper_test_op, i):
    helper_test_op(IDX[i], [(3, 4, 5)])


def test_getitem_repeated_indices_accumulate(helper_test_op):
    helper_test_op(lambda m, x: x[m.tensor([1, 1, 1, 0])], [(3, 2)])


def _setitem_fn(key_fn, value_shape):
    def fn(m, x, v):
        y = x * 1.0
        y[key_fn(m, y)] = v
        return y
    return fn


SET = [
    (lambda m, y: 1, (4, 5)),
    (lambda m, y: (slice(None), 2), (3, 5)),
    (lambda m, y: (Ellipsis, 0), (1,)),
    (lambda m, y: y > 0.5, ()),
    (lambda m, y: m.tensor([0, 2]), (4, 5)),
]


@pytest.mark.parametrize("i", range(len(SET)))
def test_setitem_autograd(helper_test_op, i):
    key_fn, vshape = SET[i]
    helper_test_op(_setitem_fn(key_fn, vshape), [(3, 4, 5), vshape])


def test_setitem_no_grad_scalar_and_int(torch):
    import engine

    for lib in (torch, engine):
        x = lib.zeros(3, 4, dtype=lib.int64)
        x[1] = 7
        x[:, 2] = lib.tensor([1, 2, 3])
        x[x == 7] = -1
        assert x.sum().item() == -1 * 3 + 1 + 2 + 3 - 1 * 0


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_gather_scatter(helper_test_op, dim):
    rng = np.random.default_rng(dim + 1)
    idx = rng.integers(0, 3, size=(3, 2, 3))
    helper_test_op(lambda m, x: m.gather(x, dim, m.tensor(idx)), [(3, 3, 3)])
    helper_test_op(lambda m, x, s: m.scatter_add(x, dim, m.tensor(idx), s), [(3, 3, 3), (3, 2, 3)])
    perm_idx = np.stack([np.stack([rng.permutation(3)[:2] for _ in range(3)], axis=-1)
                         for _ in range(3)])  # (3, 2, 3): no duplicates along dim 1
    if dim == 1:
        helper_test_op(lambda m, x, s: m.scatter(x, 1, m.tensor(perm_idx), s), [(3, 3, 3), (3, 2, 3)])
        helper_test_op(lambda m, x: x.scatter(1, m.tensor(perm_idx), 2.5), [(3, 3, 3)])


def test_index_select_masked(helper_test_op):
    helper_test_op(lambda m, x: x.index_select(1, m.tensor([2, 0, 2])), [(3, 4)])
    helper_test_op(lambda m, x: m.index_select(x, 0, m.tensor([1])), [(3, 4)])
    helper_test_op(lambda m, x: x.masked_fill(x > 0, -1.5), [(3, 4)])
    helper_test_op(lambda m, x, v: x.masked_fill(x < 0, v.sum()), [(3, 4), (2,)])
    helper_test_op(lambda m, x: x.masked_select(x > 0), [(3, 4)])
    helper_test_op(lambda m, x: m.masked_select(x, m.tensor([True, False, True, True])), [(3, 4)])
    helper_test_op(lambda m, x: m.nonzero(x > 0), [(3, 4)], grad=False)
    helper_test_op(lambda m, x: m.where(x > 0), [(3, 4)], grad=False)
    helper_test_op(lambda m, x, s: m.index_add(x, 0, m.tensor([0, 2, 0]), s), [(3, 4), (3, 4)])


def test_index_errors(torch):
    import engine

    for lib in (torch, engine):
        x = lib.zeros(3, 4)
        with pytest.raises(IndexError):
            x[3]
        with pytest.raises(IndexError):
            x[lib.tensor([0.5])]
        with pytest.raises(RuntimeError):
            lib.gather(x, 1, lib.tensor([[5]]))


@pytest.mark.parametrize("include_self", [True, False])
@pytest.mark.parametrize("reduce", ["sum", "prod", "mean", "amax", "amin"])
@pytest.mark.parametrize("dim", [0, 1])
def test_scatter_reduce(helper_test_op, reduce, include_self, dim):
    """Duplicate indices, untouched positions, ties (amax/amin) and zeros (prod) vs torch."""
    idx = np.array([[0, 0, 2], [2, 0, 2]])  # position 1 of dim is never written
    inp = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75], [0.5, 1.0, -2.0]])
    src = np.array([[0.5, 3.0, 2.0], [0.5, 0.0, -0.75]])
    if reduce in ("amax", "amin"):
        src[0, 0] = inp[0, 0]  # a tie with self at [0, 0]
    if reduce == "prod" and dim == 1:
        inp[2, 0] = 0.0  # a zero in self at a position that also receives src
    helper_test_op(lambda m, x, s: m.scatter_reduce(x, dim, m.tensor(idx), s, reduce,
                                                    include_self=include_self),
                   [], inputs=[inp, src])


def test_scatter_reduce_prod_two_zeros_and_method(helper_test_op):
    idx = np.array([[1, 1, 1]])
    helper_test_op(lambda m, x, s: x.scatter_reduce(1, m.tensor(idx), s, "prod"), [],
                   inputs=[np.array([[2.0, 0.0, 3.0]]), np.array([[0.0, 4.0, 5.0]])])
    helper_test_op(lambda m, x, s: x.scatter_reduce(1, m.tensor(idx), s, "prod"), [],
                   inputs=[np.array([[2.0, 0.0, 3.0]]), np.array([[1.5, 4.0, 5.0]])])


@pytest.mark.filterwarnings("ignore:The reduce argument of torch.scatter")
def test_scatter_reduce_inplace_and_multiply(torch):
    import engine

    idx = [[0, 1, 0]]
    for lib in (torch, engine):
        x = lib.ones(2, 3)
        x.scatter_reduce_(0, lib.tensor(idx), lib.tensor([[2.0, 3.0, 4.0]]), "sum",
                          include_self=False)
        y = lib.full((2, 3), 2.0).scatter(0, lib.tensor(idx), lib.tensor([[2.0, 3.0, 4.0]]),
                                          reduce="multiply")
        assert x.tolist() == [[2.0, 1.0, 4.0], [1.0, 3.0, 1.0]]
        assert y.tolist() == [[4.0, 2.0, 8.0], [2.0, 6.0, 2.0]]
        with pytest.raises(RuntimeError):
            lib.scatter_reduce(lib.ones(2), 0, lib.tensor([0]), lib.ones(1), "bogus")
