"""matmul (all rank combinations, batched broadcasting), mm, bmm, einsum, outer, dot."""
import pytest

MATMUL_SHAPES = [((3,), (3,)), ((2, 3), (3,)), ((3,), (3, 4)), ((2, 3), (3, 4)),
                 ((5, 2, 3), (3, 4)), ((3,), (5, 3, 4)), ((5, 2, 3), (5, 3,)) if False else
                 ((5, 2, 3), (3,)), ((2, 1, 2, 3), (5, 3, 4)), ((0, 3), (3, 2)), ((2, 0), (0, 3))]


@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matmul(helper_test_op, shapes, dtype):
    helper_test_op(lambda m, a, b: a @ b, shapes, dtype=dtype)


def test_mm_bmm_mv_dot_outer(helper_test_op):
    helper_test_op(lambda m, a, b: m.mm(a, b), [(2, 3), (3, 4)])
    helper_test_op(lambda m, a, b: m.bmm(a, b), [(5, 2, 3), (5, 3, 4)])
    helper_test_op(lambda m, a, b: m.mv(a, b), [(2, 3), (3,)])
    helper_test_op(lambda m, a, b: m.dot(a, b), [(3,), (3,)])
    helper_test_op(lambda m, a, b: m.outer(a, b), [(3,), (4,)])
    helper_test_op(lambda m, a, b: a.matmul(b.t()), [(2, 3), (4, 3)])


EINSUM = [("ij,jk->ik", [(2, 3), (3, 4)]), ("bij,bjk->bik", [(2, 2, 3), (2, 3, 4)]),
          ("i,i->", [(3,), (3,)]), ("ij->ji", [(2, 3)]), ("ij->", [(2, 3)]),
          ("i,j->ij", [(2,), (3,)]), ("...ij,...jk->...ik", [(5, 2, 3), (5, 3, 2)]),
          ("bhqd,bhkd->bhqk", [(2, 2, 3, 4), (2, 2, 5, 4)]), ("ij,jk,kl->il", [(2, 3), (3, 4), (4, 2)]),
          ("ij,ij->i", [(3, 4), (3, 4)]), ("ijk->k", [(2, 3, 4)]),
          # repeated indices in one operand (diagonals): backward scatters onto the diagonal
          ("ii->i", [(3, 3)]), ("ii->", [(3, 3)]), ("iij,jk->ik", [(3, 3, 2), (2, 4)]),
          ("ii,ij->j", [(3, 3), (3, 4)]), ("bii->b", [(2, 3, 3)]), ("iji->j", [(3, 2, 3)]),
          ("iii->", [(2, 2, 2)]), ("...ii->...i", [(2, 3, 3)])]


@pytest.mark.parametrize("eq,shapes", EINSUM, ids=[e for e, _ in EINSUM])
def test_einsum(helper_test_op, eq, shapes):
    helper_test_op(lambda m, *xs: m.einsum(eq, *xs), shapes)


def test_matmul_errors(torch):
    import engine

    for lib in (torch, engine):
        with pytest.raises(RuntimeError):
            lib.zeros(2, 3) @ lib.zeros(4, 2)
        with pytest.raises(RuntimeError):
            lib.zeros(2, 3) @ lib.zeros(3, 2, dtype=lib.float64)
        with pytest.raises(RuntimeError):
            lib.mm(lib.zeros(2), lib.zeros(2, 2))


def test_einsum_diagonal_double_backward(torch):
    """The diagonal scatter is itself an einsum, so create_graph gives second derivatives."""
    import numpy as np

    import engine

    a = np.random.default_rng(3).uniform(-1, 1, (3, 3))

    def run(lib):
        x = lib.tensor(a, requires_grad=True)
        y = lib.einsum("ii,ij->j", x, x * x).pow(2).sum()
        (g,) = lib.autograd.grad(y, x, create_graph=True)
        (h,) = lib.autograd.grad((g * g).sum(), x)
        return g.detach().numpy(), h.numpy()
    for e, t in zip(run(engine), run(torch)):
        np.testing.assert_allclose(e, t, rtol=1e-10, atol=1e-12)
