"""Convolution and pooling layers against torch (float64 outputs and gradients)."""
import numpy as np
import pytest

import engine
from engine import nn
from engine.nn import functional as F

CONV2D = [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=2, out_channels=6, kernel_size=(3, 2), stride=2, padding=1),
    dict(in_channels=4, out_channels=4, kernel_size=3, padding="same", dilation=2, groups=2),
    dict(in_channels=4, out_channels=8, kernel_size=2, stride=(1, 2), padding="valid", groups=4, bias=False),
    dict(in_channels=3, out_channels=2, kernel_size=4, padding="same"),  # asymmetric 'same'
    dict(in_channels=2, out_channels=3, kernel_size=3, stride=3, padding=(2, 0), dilation=(1, 2)),
    dict(in_channels=8, out_channels=5, kernel_size=3, padding=1),  # K = 72: the single-GEMM weight gradient
    dict(in_channels=12, out_channels=4, kernel_size=3, stride=2, groups=2),  # K = 54 per group, batched path
]


def _twin(torch, oracle, name, kw):
    em = getattr(nn, name)(**kw).double()
    tm = getattr(torch.nn, name)(**kw).double()
    oracle.copy_weights(em, tm)
    return em, tm


@pytest.mark.parametrize("kw", CONV2D, ids=[str(i) for i in range(len(CONV2D))])
def test_conv2d(torch, oracle, rng, kw):
    em, tm = _twin(torch, oracle, "Conv2d", kw)
    oracle.compare(em, tm, rng.standard_normal((2, kw["in_channels"], 9, 8)))
    assert repr(em) == repr(tm)


def test_conv2d_unbatched_and_float32(torch, oracle, rng):
    em, tm = _twin(torch, oracle, "Conv2d", dict(in_channels=3, out_channels=5, kernel_size=3, padding=1))
    oracle.compare(em, tm, rng.standard_normal((3, 6, 6)))
    em.float(), tm.float()
    oracle.compare(em, tm, rng.standard_normal((4, 3, 10, 10)).astype(np.float32), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(in_channels=3, out_channels=4, kernel_size=3),
                                dict(in_channels=4, out_channels=2, kernel_size=5, stride=2, padding=2,
                                     dilation=1, groups=2),
                                dict(in_channels=2, out_channels=2, kernel_size=3, padding="same", dilation=3)])
def test_conv1d(torch, oracle, rng, kw):
    em, tm = _twin(torch, oracle, "Conv1d", kw)
    oracle.compare(em, tm, rng.standard_normal((2, kw["in_channels"], 17)))
    assert repr(em) == repr(tm)


@pytest.mark.parametrize("kw", [
    dict(in_channels=3, out_channels=4, kernel_size=3),
    dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, padding=1, output_padding=1, groups=2),
    dict(in_channels=2, out_channels=3, kernel_size=(2, 3), stride=(2, 1), dilation=2, bias=False),
])
def test_conv_transpose2d(torch, oracle, rng, kw):
    em, tm = _twin(torch, oracle, "ConvTranspose2d", kw)
    oracle.compare(em, tm, rng.standard_normal((2, kw["in_channels"], 5, 4)))
    assert repr(em) == repr(tm)


def test_conv_transpose1d(torch, oracle, rng):
    em, tm = _twin(torch, oracle, "ConvTranspose1d", dict(in_channels=2, out_channels=3, kernel_size=4, stride=2))
    oracle.compare(em, tm, rng.standard_normal((2, 2, 7)))


@pytest.mark.parametrize("mode", ["reflect", "replicate", "circular"])
def test_conv_padding_modes(torch, oracle, rng, mode):
    for name, kw, shape in [
            ("Conv2d", dict(in_channels=2, out_channels=3, kernel_size=3, padding=(1, 2)), (2, 2, 7, 8)),
            ("Conv2d", dict(in_channels=2, out_channels=3, kernel_size=4, padding="same"), (2, 2, 7, 8)),
            ("Conv1d", dict(in_channels=2, out_channels=3, kernel_size=3, padding=2, stride=2), (2, 2, 9))]:
        em, tm = _twin(torch, oracle, name, dict(kw, padding_mode=mode))
        oracle.compare(em, tm, rng.standard_normal(shape))
        assert repr(em) == repr(tm)


def test_conv_errors():
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, padding_mode="mirror")
    with pytest.raises(ValueError):
        nn.ConvTranspose2d(3, 4, 3, padding_mode="reflect")
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(RuntimeError):
        nn.Conv2d(3, 4, 3)(engine.zeros(1, 2, 5, 5))


POOLS = [
    ("MaxPool2d", dict(kernel_size=2)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("MaxPool2d", dict(kernel_size=(2, 3), stride=(2, 1), dilation=(2, 1), ceil_mode=True)),
    ("MaxPool2d", dict(kernel_size=3, stride=2, ceil_mode=True, padding=1)),
    ("AvgPool2d", dict(kernel_size=2)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool2d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False, ceil_mode=True)),
    ("AvgPool2d", dict(kernel_size=2, stride=1, divisor_override=3)),
    ("AdaptiveAvgPool2d", dict(output_size=(3, 4))),
    ("AdaptiveAvgPool2d", dict(output_size=1)),
    ("AdaptiveAvgPool2d", dict(output_size=(None, 2))),
    ("AdaptiveMaxPool2d", dict(output_size=(3, 4))),
    ("AdaptiveMaxPool2d", dict(output_size=2)),
    ("MaxPool1d", dict(kernel_size=3, stride=2, padding=1)),
    ("AvgPool1d", dict(kernel_size=3, stride=2, padding=1, count_include_pad=False)),
    ("AdaptiveAvgPool1d", dict(output_size=4)),
    ("AdaptiveMaxPool1d", dict(output_size=3)),
]


@pytest.mark.parametrize("name,kw", POOLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(POOLS)])
def test_pooling(torch, oracle, rng, name, kw):
    shape = (2, 3, 11) if name.endswith("1d") else (2, 3, 9, 11)
    oracle.compare(getattr(nn, name)(**kw), getattr(torch.nn, name)(**kw), rng.standard_normal(shape))
    assert repr(getattr(nn, name)(**kw)) == repr(getattr(torch.nn, name)(**kw))


def test_max_pool_indices_ties_and_unbatched(torch, rng):
    x = rng.standard_normal((2, 3, 8, 8)).round(0)  # many ties
    for kw in (dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1)):
        eo, ei = F.max_pool2d(engine.tensor(x), return_indices=True, **kw)
        to, ti = torch.nn.functional.max_pool2d(torch.tensor(x), return_indices=True, **kw)
        np.testing.assert_array_equal(eo._data, to.numpy())
        np.testing.assert_array_equal(ei._data, ti.numpy())
    eo, ei = F.adaptive_max_pool2d(engine.tensor(x), 3, return_indices=True)
    to, ti = torch.nn.functional.adaptive_max_pool2d(torch.tensor(x), 3, return_indices=True)
    np.testing.assert_array_equal(ei._data, ti.numpy())
    np.testing.assert_array_equal(F.max_pool2d(engine.tensor(x[0]), 2)._data,
                                  torch.nn.functional.max_pool2d(torch.tensor(x[0]), 2).numpy())


@pytest.mark.parametrize("shape,k", [((2, 3, 8, 8), 2), ((2, 3, 9, 11), 2), ((2, 2, 9, 9), 3), ((2, 2, 8, 6), (2, 3))])
def test_max_pool_blocks_ties_grad(torch, rng, shape, k):
    """The non-overlapping fast path: ties (ReLU zeros, rounding) send the gradient to the first maximum."""
    x = np.maximum(rng.standard_normal(shape).round(0), 0.0)
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    eo, to = F.max_pool2d(ex, k), torch.nn.functional.max_pool2d(tx, k)
    np.testing.assert_array_equal(eo._data, to.detach().numpy())
    g = rng.standard_normal(to.shape)
    (eo * engine.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(ex.grad._data, tx.grad.numpy())


def test_max_pool_blocks_nan_falls_back(torch):
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    x[0, 0, 0, 1] = np.nan
    eo = F.max_pool2d(engine.tensor(x), 2)
    to = torch.nn.functional.max_pool2d(torch.tensor(x), 2)
    np.testing.assert_array_equal(eo._data, to.numpy())


def test_unfold_fold(torch, rng):
    x = rng.standard_normal((2, 3, 7, 6))
    kw = dict(kernel_size=(2, 3), dilation=(1, 2), padding=1, stride=(2, 1))
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    eu, tu = F.unfold(ex, **kw), torch.nn.functional.unfold(tx, **kw)
    np.testing.assert_allclose(eu._data, tu.detach().numpy(), rtol=1e-12)
    ef, tf = F.fold(eu, (7, 6), **kw), torch.nn.functional.fold(tu, (7, 6), **kw)
    np.testing.assert_allclose(ef._data, tf.detach().numpy(), rtol=1e-12)
    g = rng.standard_normal(tf.shape)
    (ef * engine.tensor(g)).sum().backward()
    (tf * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(ex.grad._data, tx.grad.numpy(), rtol=1e-12)


def test_small_cnn_trains_like_torch(torch, oracle, rng):
    def build(m):
        return m.Sequential(m.Conv2d(1, 4, 3, padding=1), m.BatchNorm2d(4), m.ReLU(), m.MaxPool2d(2),
                            m.Conv2d(4, 8, 3), m.ReLU(), m.AdaptiveAvgPool2d(1), m.Flatten(), m.Linear(8, 3))

    em, tm = build(nn).double(), build(torch.nn).double()
    oracle.copy_weights(em, tm)
    x, y = rng.standard_normal((8, 1, 10, 10)), rng.integers(0, 3, 8)
    eopt = engine.optim.SGD(em.parameters(), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(tm.parameters(), lr=0.1, momentum=0.9)
    for _ in range(5):
        eopt.zero_grad(), topt.zero_grad()
        el = nn.functional.cross_entropy(em(engine.tensor(x)), engine.tensor(y))
        tl = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y))
        el.backward(), tl.backward()
        eopt.step(), topt.step()
        assert float(el) == pytest.approx(float(tl), rel=1e-9)
    for (k, v), (_, w) in zip(em.state_dict().items(), tm.state_dict().items()):
        np.testing.assert_allclose(np.asarray(v._data), w.numpy(), rtol=1e-8, atol=1e-10, err_msg=k)
