"""Normalization, dropout, embedding, containers and nn.utils against torch."""
import numpy as np
import pytest

import engine
from engine import nn
from engine.nn import functional as F


@pytest.mark.parametrize("name,shape,kw", [
    ("BatchNorm1d", (6, 4), {}),
    ("BatchNorm1d", (5, 4, 3), dict(momentum=None)),
    ("BatchNorm2d", (3, 4, 5, 2), dict(momentum=0.3, eps=1e-3)),
    ("BatchNorm2d", (3, 4, 5, 2), dict(affine=False)),
    ("BatchNorm2d", (3, 4, 5, 2), dict(track_running_stats=False)),
])
def test_batchnorm_train_and_eval(torch, oracle, rng, name, shape, kw):
    em, tm = getattr(nn, name)(4, **kw).double(), getattr(torch.nn, name)(4, **kw).double()
    if em.affine:
        em.weight._data[...] = rng.random(4) + 0.5
        em.bias._data[...] = rng.standard_normal(4)
    oracle.copy_weights(em, tm)
    for _ in range(3):
        oracle.compare(em, tm, rng.standard_normal(shape) * 2 + 1)
    for (k, v), (_, w) in zip(em.state_dict().items(), tm.state_dict().items()):
        np.testing.assert_allclose(np.asarray(v._data), w.numpy(), rtol=1e-10, err_msg=k)
    em.eval(), tm.eval()
    oracle.compare(em, tm, rng.standard_normal(shape))
    assert repr(em) == repr(tm)
    assert list(em.state_dict()) == list(tm.state_dict())


@pytest.mark.parametrize("name,args,kw,shape", [
    ("LayerNorm", (5,), {}, (3, 4, 5)),
    ("LayerNorm", ((4, 5),), dict(elementwise_affine=False), (3, 4, 5)),
    ("LayerNorm", (5,), dict(bias=False, eps=1e-3), (2, 5)),
    ("GroupNorm", (2, 6), {}, (3, 6, 4, 2)),
    ("GroupNorm", (3, 6), dict(affine=False), (3, 6, 5)),
    ("InstanceNorm2d", (3,), dict(affine=True), (2, 3, 4, 5)),
    ("InstanceNorm1d", (3,), {}, (2, 3, 6)),
])
def test_layer_group_instance_norm(torch, oracle, rng, name, args, kw, shape):
    em, tm = getattr(nn, name)(*args, **kw).double(), getattr(torch.nn, name)(*args, **kw).double()
    for p in em.parameters():
        p._data[...] = rng.standard_normal(p.shape)
    oracle.copy_weights(em, tm)
    oracle.compare(em, tm, rng.standard_normal(shape) * 3 + 2)
    assert repr(em) == repr(tm)


def test_dropout_statistics_and_eval():
    engine.manual_seed(0)
    m = nn.Dropout(0.3)
    x = engine.ones(200, 100, requires_grad=True)
    y = m(x)
    a = np.asarray(y._data)
    assert np.isclose(a, 0).sum() + np.isclose(a, 1 / 0.7).sum() == a.size
    assert abs((a == 0).mean() - 0.3) < 0.02
    y.sum().backward()
    np.testing.assert_allclose(x.grad._data, a)  # gradient goes through the same mask
    m.eval()
    assert m(x) is x
    d2 = nn.Dropout2d(0.5)(engine.ones(8, 16, 3, 3))
    per_channel = np.asarray(d2._data).reshape(8, 16, 9)
    assert (per_channel.min(-1) == per_channel.max(-1)).all()
    engine.manual_seed(5)
    a1 = np.asarray(F.dropout(engine.ones(10), 0.5)._data)
    engine.manual_seed(5)
    np.testing.assert_array_equal(F.dropout(engine.ones(10), 0.5)._data, a1)
    with pytest.raises(ValueError):
        nn.Dropout(1.5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_large_dropout_mask_is_the_same_for_any_thread_count(monkeypatch, dtype):
    """A mask of several chunks (each its own child stream, drawn on the engine's threads):
    the same seed gives the same mask at 1 and 3 threads, chunks differ from each other, about
    p of the elements are dropped and the rest scaled exactly by 1 / (1 - p)."""
    from engine.nn.functional import _misc
    from engine.ops import _parallel

    monkeypatch.setattr(_misc, "MASK_CHUNK", 1000)
    monkeypatch.setattr(_parallel, "MIN_ELEMENTS", 1)
    x = engine.ones(7, 1100, dtype=engine.float64 if dtype == np.float64 else engine.float32)

    def mask(threads):
        monkeypatch.setattr(_parallel, "_N", threads)
        engine.manual_seed(3)
        return np.asarray(F.dropout(x, 0.25)._data)

    m1 = mask(1)
    np.testing.assert_array_equal(m1, mask(3))
    assert m1.dtype == dtype
    assert set(np.unique(m1)) == {0.0, dtype(1) / dtype(0.75)}
    assert abs((m1 == 0).mean() - 0.25) < 0.02
    flat = m1.reshape(-1)
    assert not np.array_equal(flat[:1000], flat[1000:2000])
    engine.manual_seed(4)
    assert not np.array_equal(np.asarray(F.dropout(x, 0.25)._data), m1)


def test_embedding(torch, oracle, rng):
    em = nn.Embedding(10, 4, padding_idx=2).double()
    tm = torch.nn.Embedding(10, 4, padding_idx=2).double()
    assert not em.weight._data[2].any()
    oracle.copy_weights(em, tm)
    idx = np.array([[1, 2, 3, 1], [9, 2, 0, 1]])
    ei, ti = engine.tensor(idx), torch.tensor(idx)
    eo, to = em(ei), tm(ti)
    np.testing.assert_allclose(eo._data, to.detach().numpy())
    g = rng.standard_normal(to.shape)
    (eo * engine.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(em.weight.grad._data, tm.weight.grad.numpy(), rtol=1e-12)
    assert repr(em) == repr(tm)
    with pytest.raises(IndexError):
        em(engine.tensor([10]))


def test_one_hot_normalize_pad_interpolate(torch, rng):
    t = np.array([0, 2, 1])
    np.testing.assert_array_equal(F.one_hot(engine.tensor(t), 4)._data,
                                  torch.nn.functional.one_hot(torch.tensor(t), 4).numpy())
    x = rng.standard_normal((2, 3, 5, 4))
    for kw in (dict(), dict(p=1.0, dim=2)):
        np.testing.assert_allclose(F.normalize(engine.tensor(x), **kw)._data,
                                   torch.nn.functional.normalize(torch.tensor(x), **kw).numpy(), rtol=1e-12)
    for mode in ("constant", "reflect", "replicate", "circular"):
        ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        eo, to = F.pad(ex, (1, 2, 2, 1), mode=mode), torch.nn.functional.pad(tx, (1, 2, 2, 1), mode=mode)
        np.testing.assert_allclose(eo._data, to.detach().numpy())
        g = rng.standard_normal(to.shape)
        (eo * engine.tensor(g)).sum().backward()
        (to * torch.tensor(g)).sum().backward()
        np.testing.assert_allclose(ex.grad._data, tx.grad.numpy(), rtol=1e-12)
    cases = [dict(size=(7, 9), mode="nearest"), dict(scale_factor=2, mode="nearest"),
             dict(size=(3, 7), mode="bilinear"), dict(size=(8, 3), mode="bilinear", align_corners=True),
             dict(scale_factor=1.5, mode="bilinear"), dict(size=(4, 6), mode="nearest-exact")]
    for kw in cases:
        ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        eo, to = F.interpolate(ex, **kw), torch.nn.functional.interpolate(tx, **kw)
        np.testing.assert_allclose(eo._data, to.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=str(kw))
        eo.sum().backward(), to.sum().backward()
        np.testing.assert_allclose(ex.grad._data, tx.grad.numpy(), rtol=1e-10, err_msg=str(kw))


def test_module_list_and_dict(torch):
    ml = nn.ModuleList([nn.Linear(2, 2), nn.ReLU()])
    ml.append(nn.Linear(2, 1))
    tl = torch.nn.ModuleList([torch.nn.Linear(2, 2), torch.nn.ReLU(), torch.nn.Linear(2, 1)])
    assert list(ml.state_dict()) == list(tl.state_dict()) and len(ml) == 3 and isinstance(ml[-1], nn.Linear)
    assert repr(ml) == repr(tl)
    ml.insert(0, nn.Identity())
    assert isinstance(ml[0], nn.Identity) and len(ml) == 4
    del ml[0]
    assert list(ml.state_dict()) == list(tl.state_dict())
    md = nn.ModuleDict({"enc": nn.Linear(3, 2), "dec": nn.Linear(2, 3)})
    td = torch.nn.ModuleDict({"enc": torch.nn.Linear(3, 2), "dec": torch.nn.Linear(2, 3)})
    assert list(md.state_dict()) == list(td.state_dict()) and "enc" in md and list(md) == ["enc", "dec"]
    assert repr(md) == repr(td)
    pl = nn.ParameterList([engine.ones(2), nn.Parameter(engine.zeros(3))])
    pd = nn.ParameterDict({"a": engine.ones(1)})
    tpl = torch.nn.ParameterList([torch.ones(2), torch.nn.Parameter(torch.zeros(3))])
    assert list(pl.state_dict()) == list(tpl.state_dict()) and isinstance(pl[0], nn.Parameter)
    assert list(pd.state_dict()) == ["a"] and len(list(pd.parameters())) == 1


def test_clip_grad_and_vectors(torch, rng):
    shapes = [(3, 4), (5,)]
    grads = [rng.standard_normal(s) * 3 for s in shapes]
    for kind, arg in (("norm", 2.0), ("norm", 1.0), ("norm", float("inf")), ("value", 0.5)):
        ep = [nn.Parameter(engine.zeros(*s, dtype=engine.float64)) for s in shapes]
        tp = [torch.nn.Parameter(torch.zeros(*s, dtype=torch.float64)) for s in shapes]
        for e, t, g in zip(ep, tp, grads):
            e.grad, t.grad = engine.tensor(g), torch.tensor(g)
        if kind == "norm":
            en = nn.utils.clip_grad_norm_(ep, 1.0, norm_type=arg)
            tn = torch.nn.utils.clip_grad_norm_(tp, 1.0, norm_type=arg)
            assert float(en) == pytest.approx(float(tn), rel=1e-10)
        else:
            nn.utils.clip_grad_value_(ep, arg)
            torch.nn.utils.clip_grad_value_(tp, arg)
        for e, t in zip(ep, tp):
            np.testing.assert_allclose(e.grad._data, t.grad.numpy(), rtol=1e-10)
    m = nn.Linear(3, 2)
    v = nn.utils.parameters_to_vector(m.parameters())
    assert v.shape == (8,)
    nn.utils.vector_to_parameters(v * 0 + 1, m.parameters())
    assert (np.asarray(m.weight._data) == 1).all()


def test_scaled_dot_product_attention(torch, rng):
    q, k, v = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((2, 3, 6, 5)), rng.standard_normal((2, 3, 6, 5))
    bool_mask = rng.random((4, 6)) > 0.3
    bool_mask[:, 0] = True
    for kw in (dict(), dict(is_causal=True), dict(scale=0.3), dict(attn_mask="bool"), dict(attn_mask="float")):
        ekw, tkw = dict(kw), dict(kw)
        if kw.get("attn_mask") == "bool":
            ekw["attn_mask"], tkw["attn_mask"] = engine.tensor(bool_mask), torch.tensor(bool_mask)
        elif kw.get("attn_mask") == "float":
            m = rng.standard_normal((4, 6))
            ekw["attn_mask"], tkw["attn_mask"] = engine.tensor(m), torch.tensor(m)
        ein = [engine.tensor(a, requires_grad=True) for a in (q, k, v)]
        tin = [torch.tensor(a, requires_grad=True) for a in (q, k, v)]
        eo = F.scaled_dot_product_attention(*ein, **ekw)
        to = torch.nn.functional.scaled_dot_product_attention(*tin, **tkw)
        np.testing.assert_allclose(eo._data, to.detach().numpy(), rtol=1e-10, atol=1e-12, err_msg=str(kw))
        eo.sum().backward(), to.sum().backward()
        for a, b in zip(ein, tin):
            np.testing.assert_allclose(a.grad._data, b.grad.numpy(), rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("norm_type", [2.0, 1.0])
def test_embedding_max_norm(torch, rng, norm_type):
    """Rows looked up are renormalized in place (and only those), then gradients flow as usual."""
    w = rng.standard_normal((10, 4)) * 3
    em = nn.Embedding(10, 4, max_norm=1.5, norm_type=norm_type).double()
    tm = torch.nn.Embedding(10, 4, max_norm=1.5, norm_type=norm_type).double()
    em.weight._data[...] = w
    with torch.no_grad():
        tm.weight.copy_(torch.tensor(w))
    idx = np.array([[1, 3, 3], [7, 1, 0]])
    eo, to = em(engine.tensor(idx)), tm(torch.tensor(idx))
    np.testing.assert_allclose(eo._data, to.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(em.weight._data, tm.weight.detach().numpy(), rtol=1e-12)
    assert np.array_equal(em.weight._data[2], w[2])  # untouched row
    g = rng.standard_normal(to.shape)
    (eo * engine.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(em.weight.grad._data, tm.weight.grad.numpy(), rtol=1e-12)
    assert repr(em) == repr(tm)


@pytest.mark.parametrize("kw", [
    {"size": (9, 11), "mode": "bicubic"}, {"size": (3, 2), "mode": "bicubic"},
    {"scale_factor": 1.7, "mode": "bicubic"}, {"size": (8, 7), "mode": "bicubic", "align_corners": True},
    {"size": (3, 2), "mode": "area"}, {"size": (7, 9), "mode": "area"}, {"scale_factor": 0.5, "mode": "area"},
])
def test_interpolate_bicubic_area(torch, rng, kw):
    x = rng.standard_normal((2, 3, 5, 4))
    ex, tx = engine.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    eo, to = F.interpolate(ex, **kw), torch.nn.functional.interpolate(tx, **kw)
    np.testing.assert_allclose(eo._data, to.detach().numpy(), rtol=1e-10, atol=1e-12)
    g = rng.standard_normal(to.shape)
    (eo * engine.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    np.testing.assert_allclose(ex.grad._data, tx.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_interpolate_trilinear_and_errors(torch, rng):
    x = rng.standard_normal((1, 2, 3, 4, 5))
    eo = F.interpolate(engine.tensor(x), size=(4, 3, 6), mode="trilinear")
    to = torch.nn.functional.interpolate(torch.tensor(x), size=(4, 3, 6), mode="trilinear")
    np.testing.assert_allclose(eo._data, to.numpy(), rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError):
        F.interpolate(engine.tensor(x), size=(4, 3, 6), mode="area", align_corners=True)
