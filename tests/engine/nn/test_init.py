"""nn.init: gains and fans as torch; distributions by their moments and bounds."""
import math

import numpy as np
import pytest

import engine
from engine import nn
from engine.nn import init


@pytest.mark.parametrize("name,param", [("linear", None), ("conv2d", None), ("sigmoid", None), ("tanh", None),
                                        ("relu", None), ("leaky_relu", None), ("leaky_relu", 0.3), ("selu", None)])
def test_calculate_gain(torch, name, param):
    assert init.calculate_gain(name, param) == pytest.approx(torch.nn.init.calculate_gain(name, param))


def test_fans(torch):
    for shape in [(3, 4), (8, 3, 5, 5), (6, 2, 7)]:
        assert init._calculate_fan_in_and_fan_out(engine.zeros(*shape)) == \
            torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(*shape))
    with pytest.raises(ValueError):
        init.xavier_uniform_(engine.zeros(3))


def _stats(fn, shape=(200, 300), **kw):
    t = engine.zeros(*shape)
    out = fn(t, **kw)
    assert out is t
    a = np.asarray(t._data)
    return a, a.mean(), a.std()


def test_uniform_and_normal():
    engine.manual_seed(0)
    a, m, s = _stats(init.uniform_, a=-2.0, b=3.0)
    assert a.min() >= -2 and a.max() <= 3 and abs(m - 0.5) < 0.02
    a, m, s = _stats(init.normal_, mean=1.0, std=2.0)
    assert abs(m - 1) < 0.03 and abs(s - 2) < 0.03
    a, m, s = _stats(init.trunc_normal_, std=1.0, a=-1.0, b=1.5)
    assert a.min() >= -1 and a.max() <= 1.5


def test_kaiming_xavier_bounds():
    engine.manual_seed(1)
    fan_in, fan_out = 300, 200
    a, _, s = _stats(init.kaiming_uniform_, nonlinearity="relu")
    bound = math.sqrt(2) * math.sqrt(3 / fan_in)
    assert np.abs(a).max() <= bound and abs(s - bound / math.sqrt(3)) < 2e-3
    _, _, s = _stats(init.kaiming_normal_, mode="fan_out")
    assert abs(s - math.sqrt(2 / (1 + 0.0)) / math.sqrt(fan_out)) < 2e-3
    a, _, s = _stats(init.xavier_uniform_, gain=2.0)
    bound = 2.0 * math.sqrt(6 / (fan_in + fan_out))
    assert np.abs(a).max() <= bound
    _, _, s = _stats(init.xavier_normal_)
    assert abs(s - math.sqrt(2 / (fan_in + fan_out))) < 2e-3


def test_constants_eye_dirac_orthogonal(torch):
    t = engine.zeros(3, 4)
    init.ones_(t)
    assert (np.asarray(t._data) == 1).all()
    init.constant_(t, 0.5)
    init.zeros_(t)
    assert not np.asarray(t._data).any()
    init.eye_(t)
    np.testing.assert_array_equal(t._data, np.eye(3, 4))
    w = engine.zeros(4, 2, 3, 3)
    tw = torch.zeros(4, 2, 3, 3)
    init.dirac_(w, groups=2)
    torch.nn.init.dirac_(tw, groups=2)
    np.testing.assert_array_equal(w._data, tw.numpy())
    q = engine.zeros(5, 8)
    init.orthogonal_(q)
    np.testing.assert_allclose(np.asarray(q._data) @ np.asarray(q._data).T, np.eye(5), atol=1e-5)


def test_seed_reproducible_and_param_untracked():
    engine.manual_seed(3)
    a = nn.Linear(5, 5).weight._data.copy()
    engine.manual_seed(3)
    p = nn.Linear(5, 5).weight
    np.testing.assert_array_equal(a, p._data)
    init.normal_(p)  # a leaf that requires grad may be re-initialized
    assert p.requires_grad and p.grad_fn is None


DEFAULT_INITS = [
    ("Linear", (600, 400), {}),
    ("Conv2d", (64, 32, 5), {}),
    ("Conv1d", (48, 40, 7), {}),
    ("ConvTranspose2d", (32, 48, 4), {}),
    ("Bilinear", (30, 40, 50), {}),
    ("Embedding", (1000, 64), {}),
    ("LSTM", (64, 128), {"num_layers": 2}),
    ("LSTM", (64, 128), {"proj_size": 32, "bidirectional": True}),
    ("GRU", (64, 128), {}),
    ("MultiheadAttention", (256, 4), {}),
    ("MultiheadAttention", (256, 4), {"kdim": 128, "vdim": 64, "add_bias_kv": True}),
    ("BatchNorm2d", (64,), {}),
    ("LayerNorm", (128,), {}),
]


@pytest.mark.parametrize("name,args,kw", DEFAULT_INITS, ids=[n for n, _, _ in DEFAULT_INITS])
def test_default_init_matches_torch_distribution(torch, name, args, kw):
    """Every parameter of a freshly built layer: same bounds, mean and spread as torch's."""
    engine.manual_seed(0)
    torch.manual_seed(0)
    ep = dict(getattr(nn, name)(*args, **kw).named_parameters())
    tp = {k: v.detach().numpy() for k, v in getattr(torch.nn, name)(*args, **kw).named_parameters()}
    assert list(ep) == list(tp)
    for key, p in ep.items():
        a, b = np.asarray(p._data, dtype=np.float64), tp[key].astype(np.float64)
        assert a.shape == b.shape and p._data.dtype == np.float32, key
        if b.std() == 0:  # constants (zeros, ones)
            np.testing.assert_array_equal(a, b, err_msg=key)
            continue
        n = b.size
        assert abs(a.mean() - b.mean()) < 6 * b.std() / np.sqrt(n), key
        assert abs(a.std() / b.std() - 1) < 5 / np.sqrt(n), key  # ~5 standard errors of the ratio
        kurt = ((b - b.mean()) ** 4).mean() / b.var() ** 2 - 3  # uniform -1.2, normal 0
        if kurt < -0.8:  # uniform inits share their support: max |x| near the same bound
            assert abs(np.abs(a).max() / np.abs(b).max() - 1) < max(0.01, 20 / n), key
