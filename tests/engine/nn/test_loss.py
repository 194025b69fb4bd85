"""Losses against torch: every reduction, weights, ignore_index, label smoothing, K-dim."""
import numpy as np
import pytest

import engine
from engine import nn
from engine.nn import functional as F

REDUCTIONS = ["none", "mean", "sum"]


def _check(torch, e_fn, t_fn, inputs, rtol=1e-10, atol=1e-12, grad_of=(0,)):
    """inputs: numpy arrays; gradients compared for positions in grad_of."""
    e_in = [engine.tensor(a, requires_grad=i in grad_of) for i, a in enumerate(inputs)]
    t_in = [torch.tensor(a, requires_grad=i in grad_of) for i, a in enumerate(inputs)]
    e_out, t_out = e_fn(*e_in), t_fn(*t_in)
    np.testing.assert_allclose(np.asarray(e_out._data), t_out.detach().numpy(), rtol=rtol, atol=atol)
    g = np.random.default_rng(1).standard_normal(t_out.shape)
    (e_out * engine.tensor(g)).sum().backward()
    (t_out * torch.tensor(g)).sum().backward()
    for i in grad_of:
        np.testing.assert_allclose(np.asarray(e_in[i].grad._data), t_in[i].grad.numpy(), rtol=rtol, atol=atol)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("smoothing", [0.0, 0.2])
def test_cross_entropy_class_indices(torch, rng, reduction, weighted, smoothing):
    x = rng.standard_normal((7, 5))
    y = rng.integers(0, 5, size=7)
    y[2] = -100
    w = rng.random(5) + 0.5 if weighted else None
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    em = nn.CrossEntropyLoss(weight=None if w is None else engine.tensor(w), **kw)
    tm = torch.nn.CrossEntropyLoss(weight=None if w is None else torch.tensor(w), **kw)
    _check(torch, em, tm, [x, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_k_dim_and_ignore_index(torch, rng, reduction):
    x = rng.standard_normal((2, 4, 3, 5))
    y = rng.integers(0, 4, size=(2, 3, 5))
    y[0, 0, :2] = 1  # ignore_index below is a real class
    kw = dict(reduction=reduction, ignore_index=1, label_smoothing=0.1)
    _check(torch, nn.CrossEntropyLoss(**kw), torch.nn.CrossEntropyLoss(**kw), [x, y])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_probabilities(torch, rng, reduction):
    x = rng.standard_normal((6, 4))
    p = rng.random((6, 4))
    p /= p.sum(1, keepdims=True)
    w = rng.random(4) + 0.5
    for kw in ({}, {"label_smoothing": 0.3}, {"weight": w}):
        ekw = {k: engine.tensor(v) if k == "weight" else v for k, v in kw.items()}
        tkw = {k: torch.tensor(v) if k == "weight" else v for k, v in kw.items()}
        _check(torch, nn.CrossEntropyLoss(reduction=reduction, **ekw),
               torch.nn.CrossEntropyLoss(reduction=reduction, **tkw), [x, p])


def test_cross_entropy_unbatched_and_float32(torch, rng):
    x = rng.standard_normal(5)
    _check(torch, nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), [x, np.array(3)])
    x32 = rng.standard_normal((8, 10)).astype(np.float32)
    y = rng.integers(0, 10, 8)
    _check(torch, nn.CrossEntropyLoss(), torch.nn.CrossEntropyLoss(), [x32, y], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_nll_loss(torch, rng, reduction):
    x = rng.standard_normal((6, 3))
    y = rng.integers(0, 3, 6)
    w = rng.random(3) + 0.1
    _check(torch, nn.NLLLoss(weight=engine.tensor(w), reduction=reduction, ignore_index=0),
           torch.nn.NLLLoss(weight=torch.tensor(w), reduction=reduction, ignore_index=0), [x, y])


def test_nll_loss_bad_target(rng):
    with pytest.raises(IndexError):
        F.nll_loss(engine.tensor(rng.standard_normal((2, 3))), engine.tensor([0, 3]))


PAIRWISE = [
    ("MSELoss", {}), ("L1Loss", {}), ("SmoothL1Loss", {}), ("SmoothL1Loss", {"beta": 0.5}),
    ("HuberLoss", {"delta": 0.7}), ("SoftMarginLoss", {}),
]


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,kw", PAIRWISE, ids=[n + str(k) for n, k in PAIRWISE])
def test_regression_losses(torch, rng, name, kw, reduction):
    x, y = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    if name == "SoftMarginLoss":
        y = np.sign(y)
    _check(torch, getattr(nn, name)(reduction=reduction, **kw), getattr(torch.nn, name)(reduction=reduction, **kw),
           [x, y], grad_of=(0, 1) if name != "SoftMarginLoss" else (0,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_losses(torch, rng, reduction):
    x = rng.standard_normal((6, 3)) * 4
    y = rng.random((6, 3))
    w = rng.random(3)
    pw = rng.random(3) * 3
    _check(torch, nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=engine.tensor(pw), weight=engine.tensor(w)),
           torch.nn.BCEWithLogitsLoss(reduction=reduction, pos_weight=torch.tensor(pw), weight=torch.tensor(w)),
           [x, y], grad_of=(0, 1))
    _check(torch, nn.BCEWithLogitsLoss(reduction=reduction), torch.nn.BCEWithLogitsLoss(reduction=reduction), [x, y])
    p = 1 / (1 + np.exp(-x))
    _check(torch, nn.BCELoss(reduction=reduction), torch.nn.BCELoss(reduction=reduction), [p, y], grad_of=(0, 1))


@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div(torch, rng, reduction, log_target):
    x = np.log(rng.dirichlet(np.ones(4), size=5))
    t = rng.dirichlet(np.ones(4), size=5)
    t[0, 0] = 0.0
    if log_target:
        t = np.log(t + 0.1)
    kw = dict(reduction=reduction, log_target=log_target)
    _check(torch, nn.KLDivLoss(**kw), torch.nn.KLDivLoss(**kw), [x, t])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_margin_losses(torch, rng, reduction):
    x = rng.standard_normal((5, 4))
    y = rng.integers(0, 4, 5)
    w = rng.random(4)
    for p in (1, 2):
        _check(torch, nn.MultiMarginLoss(p=p, margin=0.8, weight=engine.tensor(w), reduction=reduction),
               torch.nn.MultiMarginLoss(p=p, margin=0.8, weight=torch.tensor(w), reduction=reduction), [x, y])
    s = np.sign(rng.standard_normal(5))
    a, b = rng.standard_normal(5), rng.standard_normal(5)
    _check(torch, nn.HingeEmbeddingLoss(margin=0.5, reduction=reduction),
           torch.nn.HingeEmbeddingLoss(margin=0.5, reduction=reduction), [a, s])
    _check(torch, nn.MarginRankingLoss(margin=0.1, reduction=reduction),
           torch.nn.MarginRankingLoss(margin=0.1, reduction=reduction), [a, b, s], grad_of=(0, 1))
    u, v = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    _check(torch, nn.CosineEmbeddingLoss(margin=0.2, reduction=reduction),
           torch.nn.CosineEmbeddingLoss(margin=0.2, reduction=reduction), [u, v, s], grad_of=(0, 1))


def test_loss_repr_and_buffers(torch):
    m = nn.CrossEntropyLoss(weight=engine.ones(3))
    assert list(m.state_dict()) == list(torch.nn.CrossEntropyLoss(weight=torch.ones(3)).state_dict())
    assert repr(m) == "CrossEntropyLoss()"
    with pytest.raises(ValueError):
        nn.MSELoss(reduction="avg")
