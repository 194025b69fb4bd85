"""The speed paths of issue 17 against torch: channels-last conv2d, fused training BatchNorm,
max-pooling on channels-last arrays, the fused GRU layer, and a conv chain as a whole."""
import numpy as np
import pytest

import engine
from engine import nn
from engine.nn import functional as F


def _channels_last(a):
    """The same values with NHWC memory (what conv2d outputs)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _tol(dtype):
    return dict(rtol=1e-9, atol=1e-11) if dtype == np.float64 else dict(rtol=2e-4, atol=2e-5)


CONVS = [  # n, c, h, w, out, k, stride, padding, dilation
    (2, 3, 9, 8, 5, 3, 1, 1, 1), (2, 4, 9, 9, 6, 3, 2, 1, 1), (2, 4, 8, 8, 6, 1, 2, 0, 1),
    (2, 4, 8, 8, 6, 1, 1, 0, 1), (1, 2, 7, 7, 3, 3, 1, 2, 2), (3, 1, 6, 6, 4, 3, 1, 0, 1),
    (2, 3, 7, 6, 4, 2, 3, 1, 1), (2, 3, 6, 6, 4, 3, 1, 3, 1), (2, 3, 7, 7, 4, 4, 1, "same", 1),
    (2, 2, 9, 9, 3, 3, 1, "same", 2),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("case", CONVS, ids=[str(c) for c in CONVS])
def test_conv2d_matches_torch(torch, rng, case, layout, dtype):
    _check_conv(torch, rng, case, layout, dtype)


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("chunk", [1, 4000, 40000], ids=["line", "lines", "samples"])
@pytest.mark.parametrize("case", CONVS, ids=[str(c) for c in CONVS])
def test_conv2d_chunks_match_torch(monkeypatch, torch, rng, case, chunk, threads):
    """The rows built a chunk at a time (one output line, a few lines, several samples per
    chunk), the chunks spread over the engine's threads: the same values as torch."""
    from engine.nn.functional import _conv_nhwc
    from engine.ops import _parallel

    monkeypatch.setattr(_conv_nhwc, "CHUNK_BYTES", chunk)
    monkeypatch.setattr(_parallel, "_N", threads)
    monkeypatch.setattr(_parallel, "MIN_ELEMENTS", 1)
    _check_conv(torch, rng, (3, *case[1:]), "nhwc", np.float64)


def _check_conv(torch, rng, case, layout, dtype):
    n, c, h, w, o, k, s, p, d = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    wt = rng.standard_normal((o, c, k, k)).astype(dtype)
    b = rng.standard_normal(o).astype(dtype)
    xe = engine.tensor(_channels_last(x) if layout == "nhwc" else x, requires_grad=True)
    we, be = engine.tensor(wt, requires_grad=True), engine.tensor(b, requires_grad=True)
    xt, wtt, bt = (torch.tensor(a, requires_grad=True) for a in (x, wt, b))
    ye, yt = F.conv2d(xe, we, be, s, p, d), torch.nn.functional.conv2d(xt, wtt, bt, s, p, d)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), **_tol(dtype))
    g = rng.standard_normal(tuple(yt.shape)).astype(dtype)
    (ye * engine.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    for a, t in ((xe, xt), (we, wtt), (be, bt)):
        np.testing.assert_allclose(a.grad.numpy(), t.grad.numpy(), **_tol(dtype))


@pytest.mark.parametrize("affine", [True, False])
@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 4, 5, 6), "nhwc"])
def test_batch_norm_training_matches_torch(torch, rng, shape, affine):
    nhwc = shape == "nhwc"
    shape = (3, 4, 5, 6) if nhwc else shape
    cls = {2: "BatchNorm1d", 3: "BatchNorm1d", 4: "BatchNorm2d"}[len(shape)]
    em = getattr(nn, cls)(shape[1], affine=affine).double()
    tm = getattr(torch.nn, cls)(shape[1], affine=affine).double()
    if affine:
        w, b = rng.standard_normal(shape[1]), rng.standard_normal(shape[1])
        em.weight.data = engine.tensor(w)
        em.bias.data = engine.tensor(b)
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(w)), tm.bias.copy_(torch.tensor(b))
    for _ in range(2):  # the second step starts from updated running statistics
        x = rng.standard_normal(shape) * 3 + 1
        xe = engine.tensor(_channels_last(x) if nhwc else x, requires_grad=True)
        xt = torch.tensor(x, requires_grad=True)
        ye, yt = em(xe), tm(xt)
        np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-9, atol=1e-11)
        g = rng.standard_normal(shape)
        (ye * engine.tensor(g)).sum().backward()
        (yt * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(em.running_mean.numpy(), tm.running_mean.numpy(), rtol=1e-12)
    np.testing.assert_allclose(em.running_var.numpy(), tm.running_var.numpy(), rtol=1e-12)
    if affine:
        np.testing.assert_allclose(em.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(em.bias.grad.numpy(), tm.bias.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_max_pool_on_channels_last_ties_first(torch):
    x = np.zeros((1, 2, 4, 4))  # every window tied: the gradient goes to each window's first element
    x[0, 1] = np.arange(16).reshape(4, 4) % 3
    xe = engine.tensor(_channels_last(x), requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    F.max_pool2d(xe, 2).sum().backward()
    torch.nn.functional.max_pool2d(xt, 2).sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy(), xt.grad.numpy())


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("grad_layout", ["nhwc", "nchw"])
@pytest.mark.parametrize("k", [(2, 2), (3, 3), (2, 3)])
def test_max_pool_channels_last_backward_matches_torch(monkeypatch, torch, rng, k, grad_layout, threads):
    """The channels-last block max-pool backward (whole block rows per pass, split by sample):
    ReLU'd data, so many windows tie at 0 and the gradient must go to each window's first
    maximum; the incoming gradient either channels-last (from a conv) or not (from Flatten)."""
    from engine.ops import _parallel

    monkeypatch.setattr(_parallel, "_N", threads)
    monkeypatch.setattr(_parallel, "MIN_ELEMENTS", 1)
    x = np.maximum(rng.standard_normal((5, 3, 6 * k[0], 4 * k[1])), 0)
    x[0, 0, :k[0], :k[1]] = 2.0  # a window whose maximum is tied away from zero
    xe = engine.tensor(_channels_last(x), requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    ye, yt = F.max_pool2d(xe, k), torch.nn.functional.max_pool2d(xt, k)
    np.testing.assert_array_equal(ye.detach().numpy(), yt.detach().numpy())
    g = rng.standard_normal(tuple(yt.shape))
    ge = engine.tensor(_channels_last(g) if grad_layout == "nhwc" else g)
    (ye * ge).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_array_equal(xe.grad.numpy(), xt.grad.numpy())


def _resnet_block(lib):
    m = lib.nn
    return m.Sequential(m.Conv2d(3, 8, 3, 1, 1, bias=False), m.BatchNorm2d(8), m.ReLU(), m.MaxPool2d(2),
                        m.Conv2d(8, 16, 3, 2, 1), m.BatchNorm2d(16), m.ReLU(), m.Conv2d(16, 4, 1),
                        m.AdaptiveAvgPool2d(1), m.Flatten(), m.Linear(4, 3))


def test_conv_bn_pool_chain_trains_like_torch(torch, oracle, rng):
    """Three SGD steps of a conv/BN/ReLU/pool chain in float32: the channels-last layout flows
    through every op and the losses, weights and running statistics follow torch's."""
    em, tm = _resnet_block(engine), _resnet_block(torch)
    oracle.copy_weights(em, tm)
    eo, to = engine.optim.SGD(em.parameters(), lr=0.1, momentum=0.9), torch.optim.SGD(tm.parameters(), lr=0.1,
                                                                                       momentum=0.9)
    for _ in range(3):
        x = rng.standard_normal((4, 3, 12, 12)).astype(np.float32)
        y = rng.integers(0, 3, 4)
        eo.zero_grad(), to.zero_grad()
        le = F.cross_entropy(em(engine.tensor(x)), engine.tensor(y))
        lt = torch.nn.functional.cross_entropy(tm(torch.tensor(x)), torch.tensor(y))
        le.backward(), lt.backward()
        eo.step(), to.step()
        assert float(le.detach()) == pytest.approx(float(lt.detach()), rel=1e-5)
    te = dict(tm.state_dict())
    for k, v in em.state_dict().items():
        np.testing.assert_allclose(v.numpy(), te[k].numpy(), rtol=1e-4, atol=1e-5, err_msg=k)


@pytest.mark.parametrize("kw", [dict(batch_first=True), dict(bidirectional=True, bias=False), dict(num_layers=2)])
def test_gru_float32_long_sequence(torch, oracle, rng, kw):
    em, tm = nn.GRU(5, 7, **kw), torch.nn.GRU(5, 7, **kw)
    oracle.copy_weights(em, tm)
    shape = (3, 20, 5) if kw.get("batch_first") else (20, 3, 5)
    x = rng.standard_normal(shape).astype(np.float32)
    xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    (oe, he), (ot, ht) = em(xe), tm(xt)
    np.testing.assert_allclose(oe.detach().numpy(), ot.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(he.detach().numpy(), ht.detach().numpy(), rtol=1e-5, atol=1e-6)
    g = rng.standard_normal(tuple(ot.shape)).astype(np.float32)
    ((oe * engine.tensor(g)).sum() + he.sum()).backward()
    ((ot * torch.tensor(g)).sum() + ht.sum()).backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    tp = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tp[name].grad.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)


def test_conv_input_changed_in_place_before_backward_is_an_error(rng):
    """The 3x3 backward rebuilds its columns from the input, so, as torch does, it refuses an
    input modified in place after the forward instead of returning a wrong weight gradient."""
    x = engine.tensor(rng.standard_normal((2, 3, 6, 6)), requires_grad=True)
    h = x * 1.0
    w = engine.tensor(rng.standard_normal((4, 3, 3, 3)), requires_grad=True)
    y = F.conv2d(h, w, padding=1)
    with engine.no_grad():
        h.mul_(2.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.sum().backward()


@pytest.mark.parametrize("stride", [1, 2])
def test_conv_split_over_threads_is_bitwise_the_serial_result(monkeypatch, rng, stride):
    """The conv chunks and max-pooling split by sample over the engine's pool give exactly the
    single-thread output and input gradient (each element gets the same operations in the same
    order)."""
    from engine.nn.functional import _conv_nhwc
    from engine.ops import _parallel

    monkeypatch.setattr(_conv_nhwc, "CHUNK_BYTES", 2000)  # several chunks, so the threads share them

    x = rng.standard_normal((5, 3, 9, 9)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)

    def run(threads):
        monkeypatch.setattr(_parallel, "_N", threads)
        monkeypatch.setattr(_parallel, "MIN_ELEMENTS", 1)
        xe, we = engine.tensor(x, requires_grad=True), engine.tensor(w, requires_grad=True)
        y = F.max_pool2d(F.conv2d(xe, we, padding=1, stride=stride), 2)
        (y * y).sum().backward()
        return y.detach().numpy(), xe.grad.numpy(), we.grad.numpy()

    (y1, gx1, gw1), (y3, gx3, gw3) = run(1), run(3)
    np.testing.assert_array_equal(y1, y3)
    np.testing.assert_array_equal(gx1, gx3)
    # the weight gradient sums its chunks per thread: the same terms, added in another order
    np.testing.assert_allclose(gw1, gw3, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", [((4, 6, 8), (8,), True), ((3, 4, 5), (4, 5), True), ((5, 7), (7,), False),
                                  ("transposed", (8,), True)])
def test_layer_norm_matches_torch(torch, rng, case):
    shape, norm, affine = case
    x = rng.standard_normal((6, 4, 8)) * 2 + 0.5
    if shape == "transposed":  # a non-contiguous input, as batch_first attention gives
        xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ie, it = xe.transpose(0, 1), xt.transpose(0, 1)
    else:
        x = rng.standard_normal(shape) * 2 + 0.5
        xe, xt = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        ie, it = xe, xt
    em = nn.LayerNorm(norm, elementwise_affine=affine).double()
    tm = torch.nn.LayerNorm(norm, elementwise_affine=affine).double()
    if affine:
        w, b = rng.standard_normal(norm), rng.standard_normal(norm)
        em.weight.data, em.bias.data = engine.tensor(w), engine.tensor(b)
        with torch.no_grad():
            tm.weight.copy_(torch.tensor(w)), tm.bias.copy_(torch.tensor(b))
    ye, yt = em(ie), tm(it)
    np.testing.assert_allclose(ye.detach().numpy(), yt.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(tuple(yt.shape))
    (ye * engine.tensor(g)).sum().backward()
    (yt * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(xe.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-11)
    if affine:
        np.testing.assert_allclose(em.weight.grad.numpy(), tm.weight.grad.numpy(), rtol=1e-9, atol=1e-11)
        np.testing.assert_allclose(em.bias.grad.numpy(), tm.bias.grad.numpy(), rtol=1e-9, atol=1e-11)


def test_engine_pool_work_in_a_forked_child_after_the_parent_used_it(monkeypatch):
    """A DataLoader worker (fork) inherits the engine's pool object without its threads; conv
    chunks, pooling and dropout masks split over the pool there must still run, not hang."""
    from engine.nn.functional import _conv_nhwc
    from engine.ops import _parallel
    from tests.engine.forked import in_forked_child

    if _parallel._N < 2:
        monkeypatch.setattr(_parallel, "_N", 2)
    monkeypatch.setattr(_parallel, "MIN_ELEMENTS", 1)
    monkeypatch.setattr(_conv_nhwc, "CHUNK_BYTES", 2000)
    x = engine.tensor(np.random.default_rng(0).standard_normal((4, 3, 12, 12)).astype(np.float32))
    w = engine.tensor(np.ones((5, 3, 3, 3), dtype=np.float32))

    def run():
        return float(F.max_pool2d(F.dropout(F.conv2d(x, w, padding=1), 0.2), 2).sum())

    engine.manual_seed(0)
    want = run()  # the parent's pool is up

    def child():
        engine.manual_seed(0)
        return run()

    assert in_forked_child(child, timeout=60) == want
