"""Shape ops against torch (views, joins, splits, pads) including their gradients."""
import numpy as np
import pytest

SHAPE_OPS = {
    "reshape": (lambda m, x: x.reshape(4, -1), (2, 3, 4)),
    "view": (lambda m, x: x.view(-1), (2, 3, 4)),
    "view_tuple": (lambda m, x: x.view((6, 4)), (2, 3, 4)),
    "flatten": (lambda m, x: x.flatten(1), (2, 3, 4)),
    "flatten_all": (lambda m, x: m.flatten(x), (2, 3, 4)),
    "unflatten": (lambda m, x: x.unflatten(1, (3, 1)), (2, 3, 4)),
    "permute": (lambda m, x: x.permute(2, 0, 1), (2, 3, 4)),
    "transpose": (lambda m, x: x.transpose(0, -1), (2, 3, 4)),
    "t": (lambda m, x: x.t(), (3, 4)),
    "T": (lambda m, x: x.T, (3, 4)),
    "mT": (lambda m, x: x.mT, (2, 3, 4)),
    "squeeze": (lambda m, x: x.squeeze(), (2, 1, 4, 1)),
    "squeeze_dim": (lambda m, x: x.squeeze(1), (2, 1, 4, 1)),
    "squeeze_tuple": (lambda m, x: x.squeeze((1, 3)), (2, 1, 4, 1)),
    "unsqueeze": (lambda m, x: x.unsqueeze(-1), (2, 3)),
    "expand": (lambda m, x: x.expand(2, 3, 4), (3, 1)),
    "expand_neg": (lambda m, x: x.expand(5, -1, 4), (3, 1)),
    "expand_as": (lambda m, x: x.expand_as(m.zeros(2, 3, 4, dtype=x.dtype)), (1, 4)),
    "repeat": (lambda m, x: x.repeat(2, 1, 3), (3, 2)),
    "tile": (lambda m, x: x.tile((2,)), (3, 2)),
    "flip": (lambda m, x: x.flip(0, 2) if False else m.flip(x, (0, 2)), (2, 3, 4)),
    "roll": (lambda m, x: m.roll(x, 2, 1), (2, 3, 4)),
    "roll_flat": (lambda m, x: m.roll(x, -3), (2, 3, 4)),
    "roll_multi": (lambda m, x: m.roll(x, (1, -1), (0, 2)), (2, 3, 4)),
    "tril": (lambda m, x: x.tril(), (4, 5)),
    "triu": (lambda m, x: m.triu(x, 1), (2, 4, 5)),
    "tril_neg": (lambda m, x: m.tril(x, -1), (4, 3)),
    "narrow": (lambda m, x: x.narrow(1, 1, 2), (2, 3, 4)),
    "contiguous": (lambda m, x: x.transpose(0, 1).contiguous(), (2, 3, 4)),
    "movedim": (lambda m, x: m.movedim(x, 0, -1), (2, 3, 4)),
    "clone": (lambda m, x: x.clone() * 2, (2, 3)),
    "split": (lambda m, x: x.split(2, dim=1), (2, 5, 3)),
    "split_sizes": (lambda m, x: m.split(x, [1, 3, 1], dim=1), (2, 5, 3)),
    "chunk": (lambda m, x: x.chunk(3, -1), (2, 5, 7)),
    "unbind": (lambda m, x: x.unbind(1), (2, 3, 4)),
    "0d_reshape": (lambda m, x: x.reshape(1, 1), ()),
    "empty_reshape": (lambda m, x: x.reshape(3, 0), (0, 3)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_op(helper_test_op, name):
    fn, shape = SHAPE_OPS[name]
    helper_test_op(fn, [shape])


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_cat_stack(helper_test_op, dim):
    helper_test_op(lambda m, a, b: m.cat([a, b], dim), [(2, 3, 4), (2, 3, 4)])
    helper_test_op(lambda m, a, b: m.stack([a, b, a], dim=dim), [(2, 3), (2, 3)])


def test_cat_mixed_dtypes_and_empty(helper_test_op, torch):
    import engine

    helper_test_op(lambda m, a, b: m.cat([a, b, m.zeros(0, dtype=a.dtype)]), [(2, 3), (1, 3)])
    a = engine.cat([engine.tensor([1, 2]), engine.tensor([0.5])])
    b = torch.cat([torch.tensor([1, 2]), torch.tensor([0.5])])
    assert str(a.dtype).split(".")[1] == str(b.dtype).split(".")[1]
    np.testing.assert_allclose(a.numpy(), b.numpy())


@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_pad(helper_test_op, mode):
    F = "nn.functional"

    def fn(m, x):
        pad = m.nn.functional.pad if m.__name__ == "torch" else m.pad
        return pad(x, (1, 2, 2, 1), mode=mode)
    helper_test_op(fn, [(2, 3, 4, 5)])
    assert F


def test_pad_constant_value_and_negative(helper_test_op):
    def fn(m, x):
        pad = m.nn.functional.pad if m.__name__ == "torch" else m.pad
        return pad(x, (1, -1, 0, 2), value=3.5)
    helper_test_op(fn, [(2, 3, 4)])


PAD_ERRORS = [  # (shape, pad, mode, value): torch raises; engine raises the same type and message
    ((3, 4), (1, 1), "bogus", None),
    ((3, 4), (1,), "constant", None),
    ((3, 4), (1, 1, 1, 1, 1, 1), "constant", None),
    ((3, 4), (1.5, 1), "constant", None),
    ((3, 4), (-5, 1), "constant", None),
    ((3, 4), (1, 1), "reflect", 1.0),
    ((3, 4), (1, 1), "circular", 2.0),
    ((3, 4), (4, 0), "reflect", None),
    ((2, 3, 4), (0, 0, 3, 0), "reflect", None),
    ((3, 4), (-3, -1), "reflect", None),
    ((3, 4), (-2, -2), "replicate", None),
    ((3, 0), (1, 1), "replicate", None),
    ((2, 0, 4), (1, 1), "reflect", None),
    ((3, 4), (5, 0), "circular", None),
    ((3, 4), (-4, -1), "circular", None),
]


@pytest.mark.parametrize("shape,pad,mode,value", PAD_ERRORS)
def test_pad_errors_like_torch(torch, shape, pad, mode, value):
    import engine
    import engine.nn.functional as F

    assert F.pad is engine.pad
    with pytest.raises(Exception) as te:
        torch.nn.functional.pad(torch.zeros(shape), pad, mode=mode, value=value)
    with pytest.raises(type(te.value)) as ee:
        engine.pad(engine.zeros(shape), pad, mode=mode, value=value)
    assert str(ee.value) == str(te.value).split("\n")[0]


@pytest.mark.parametrize("shape,pad,mode", [
    ((2, 3, 5), (2, 1), "reflect"), ((2, 3, 4, 5), (1, -1, 0, 2), "reflect"),
    ((2, 3, 5), (-1, 2), "replicate"), ((2, 3), (-3, 1), "replicate"),
    ((1, 2, 3, 4, 5), (1, 1, 1, 0, 0, 1), "replicate"),
    ((2, 3, 5), (2, 1), "circular"), ((2, 3, 5), (-3, 1), "circular"), ((2, 3, 5), (2, -3), "circular"),
    ((3, 4), (-4, 0, 1, 0), "constant"), ((3, 4), (-2, -2), "constant"),
])
def test_pad_modes_negative_pads_and_grad_fn(helper_test_op, torch, shape, pad, mode):
    import engine

    helper_test_op(lambda m, x: m.nn.functional.pad(x, pad, mode=mode), [shape])
    et = engine.pad(engine.zeros(shape, requires_grad=True), pad, mode=mode)
    tt = torch.nn.functional.pad(torch.zeros(shape, requires_grad=True), pad, mode=mode)
    assert et.grad_fn.name() == tt.grad_fn.name()


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool", "float16"])
def test_pad_constant_value_keeps_dtype(helper_test_op, dtype):
    helper_test_op(lambda m, x: m.nn.functional.pad(x, (1, 2, 0, 1), value=2.5), [(2, 3)], dtype=dtype,
                   grad=False)


def test_view_errors_like_torch(torch):
    import engine

    for lib in (torch, engine):
        x = lib.zeros(2, 3, 4).transpose(0, 1)
        with pytest.raises(RuntimeError):
            x.view(-1)
        with pytest.raises(RuntimeError):
            lib.zeros(2, 3).reshape(4, -1)
        with pytest.raises(RuntimeError):
            lib.zeros(2, 3).expand(3, 3)
        with pytest.raises(RuntimeError):
            lib.stack([lib.zeros(2), lib.zeros(3)])


def test_views_share_memory_and_version():
    import engine

    x = engine.zeros(2, 3)
    v = x.view(6)
    v[0] = 5.0
    assert x[0, 0].item() == 5.0
    assert x._version == v._version == 1
    t = x.t()
    t.add_(1)
    assert x._version == 2 and x[0, 0].item() == 6.0


def test_meshgrid_broadcast_tensors(helper_test_op):
    helper_test_op(lambda m, a, b: m.meshgrid(a, b, indexing="ij"), [(3,), (4,)])
    helper_test_op(lambda m, a, b: m.meshgrid(a, b, indexing="xy"), [(3,), (4,)])
    helper_test_op(lambda m, a, b: m.broadcast_tensors(a, b), [(3, 1), (4,)])
