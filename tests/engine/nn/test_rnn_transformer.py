"""RNN/LSTM/GRU, MultiheadAttention and TransformerEncoder against torch (float64)."""
import numpy as np
import pytest

import engine
from engine import nn


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [] if out is None else [out]


def _compare(torch, em, tm, inputs, call=lambda m, *a: m(*a), rtol=1e-9, atol=1e-11):
    em.zero_grad(), tm.zero_grad()
    ein = [engine.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    eo, to = _flat(call(em, *ein)), _flat(call(tm, *tin))
    assert len(eo) == len(to)
    rng = np.random.default_rng(3)
    el, tl = 0, 0
    for a, b in zip(eo, to):
        np.testing.assert_allclose(np.asarray(a._data), b.detach().numpy(), rtol=rtol, atol=atol)
        g = rng.standard_normal(b.shape)
        el, tl = el + (a * engine.tensor(g)).sum(), tl + (b * torch.tensor(g)).sum()
    el.backward(), tl.backward()
    for x, y in zip(ein, tin):
        if y.grad is not None:
            np.testing.assert_allclose(np.asarray(x.grad._data), y.grad.numpy(), rtol=rtol, atol=atol)
    tp = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        np.testing.assert_allclose(np.asarray(p.grad._data), tp[name].grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=name)


RNNS = [
    ("RNN", dict(num_layers=2)),
    ("RNN", dict(nonlinearity="relu", bidirectional=True, bias=False)),
    ("LSTM", dict()),
    ("LSTM", dict(num_layers=2, bidirectional=True, batch_first=True)),
    ("LSTM", dict(bidirectional=True, bias=False)),
    ("LSTM", dict(num_layers=2, bidirectional=True, proj_size=2)),
    ("GRU", dict()),
    ("GRU", dict(num_layers=2, bidirectional=True)),
]


@pytest.mark.parametrize("name,kw", RNNS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(RNNS)])
def test_recurrent(torch, oracle, rng, name, kw):
    em, tm = getattr(nn, name)(3, 4, **kw).double(), getattr(torch.nn, name)(3, 4, **kw).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    assert repr(em) == repr(tm)
    oracle.copy_weights(em, tm)
    x = rng.standard_normal((2, 5, 3) if kw.get("batch_first") else (5, 2, 3))
    _compare(torch, em, tm, [x])
    dirs = 2 if kw.get("bidirectional") else 1
    h0 = rng.standard_normal((kw.get("num_layers", 1) * dirs, 2, kw.get("proj_size") or 4))
    if name == "LSTM":
        c0 = rng.standard_normal(h0.shape[:2] + (4,))
        _compare(torch, em, tm, [x, h0, c0], call=lambda m, a, h, c: m(a, (h, c)))
    else:
        _compare(torch, em, tm, [x, h0])
    _compare(torch, em, tm, [x[:, 0] if not kw.get("batch_first") else x[0]])  # unbatched


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("kw", [dict(), dict(bidirectional=True, proj_size=2), dict(bias=False)],
                         ids=["plain", "bidirectional-proj", "no-bias"])
def test_lstm_gradients_in_step_chunks(monkeypatch, torch, oracle, rng, kw, threads):
    """The weight and input gradients summed from pieces of 4 steps (23 steps: the last piece
    short), on the engine's pool while the recurrence goes on or inline: torch's values, and
    the same bits either way."""
    from engine.nn.functional import _rnn
    from engine.ops import _parallel

    monkeypatch.setattr(_rnn, "STEP_CHUNK", 4)
    monkeypatch.setattr(_parallel, "_N", threads)
    em, tm = nn.LSTM(3, 4, **kw).double(), torch.nn.LSTM(3, 4, **kw).double()
    oracle.copy_weights(em, tm)
    x = rng.standard_normal((23, 2, 3))
    _compare(torch, em, tm, [x])
    grads = {name: p.grad.numpy().copy() for name, p in em.named_parameters()}
    monkeypatch.setattr(_parallel, "_N", 1)
    _compare(torch, em, tm, [x])
    for name, p in em.named_parameters():
        np.testing.assert_array_equal(p.grad.numpy(), grads[name], err_msg=name)


@pytest.mark.parametrize("name", ["RNNCell", "LSTMCell", "GRUCell"])
def test_cells(torch, oracle, rng, name):
    em, tm = getattr(nn, name)(3, 5).double(), getattr(torch.nn, name)(3, 5).double()
    oracle.copy_weights(em, tm)
    _compare(torch, em, tm, [rng.standard_normal((4, 3))])


@pytest.mark.parametrize("batch_first", [False, True])
def test_multihead_attention(torch, oracle, rng, batch_first):
    em = nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    tm = torch.nn.MultiheadAttention(8, 2, batch_first=batch_first).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    oracle.copy_weights(em, tm)
    shape_q, shape_k = ((3, 5, 8), (3, 6, 8)) if batch_first else ((5, 3, 8), (6, 3, 8))
    q, k, v = rng.standard_normal(shape_q), rng.standard_normal(shape_k), rng.standard_normal(shape_k)
    _compare(torch, em, tm, [q, k, v])
    kpm = np.zeros((3, 6), bool)
    kpm[0, -2:] = True
    mask = rng.standard_normal((5, 6))
    _compare(torch, em, tm, [q, k, v, mask],
             call=lambda m, a, b, c, am: m(a, b, c, attn_mask=am, average_attn_weights=False,
                                          key_padding_mask=(engine.tensor(kpm) if m is em else torch.tensor(kpm))))
    bool_mask = np.triu(np.ones((5, 6), bool), 1)
    _compare(torch, em, tm, [q, k, v],
             call=lambda m, a, b, c: m(a, b, c, attn_mask=(engine.tensor(bool_mask) if m is em
                                                           else torch.tensor(bool_mask))))


@pytest.mark.parametrize("kw", [{"kdim": 5, "vdim": 7}, {"add_bias_kv": True}, {"add_zero_attn": True},
                                {"kdim": 5, "vdim": 6, "add_bias_kv": True, "add_zero_attn": True, "bias": False}])
def test_multihead_attention_variants(torch, oracle, rng, kw):
    em, tm = nn.MultiheadAttention(8, 2, **kw).double(), torch.nn.MultiheadAttention(8, 2, **kw).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    assert [tuple(p.shape) for p in em.parameters()] == [tuple(p.shape) for p in tm.parameters()]
    oracle.copy_weights(em, tm)
    q = rng.standard_normal((5, 3, 8))
    k = rng.standard_normal((6, 3, kw.get("kdim", 8)))
    v = rng.standard_normal((6, 3, kw.get("vdim", 8)))
    _compare(torch, em, tm, [q, k, v])
    kpm = np.zeros((3, 6), bool)
    kpm[1, -3:] = True
    mask = rng.standard_normal((5, 6))
    _compare(torch, em, tm, [q, k, v, mask],
             call=lambda m, a, b, c, am: m(a, b, c, attn_mask=am, average_attn_weights=False,
                                          key_padding_mask=(engine.tensor(kpm) if m is em else torch.tensor(kpm))))
    if "kdim" not in kw:  # self-attention, batch_first
        em.batch_first = tm.batch_first = True
        _compare(torch, em, tm, [q], call=lambda m, a: m(a, a, a))


@pytest.mark.parametrize("norm_first", [False, True])
def test_transformer_encoder(torch, oracle, rng, norm_first):
    kw = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, norm_first=norm_first, batch_first=True)
    em = nn.TransformerEncoder(nn.TransformerEncoderLayer(**kw), 2, norm=nn.LayerNorm(8)).double()
    tm = torch.nn.TransformerEncoder(torch.nn.TransformerEncoderLayer(**kw), 2, norm=torch.nn.LayerNorm(8),
                                     enable_nested_tensor=False).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    oracle.copy_weights(em, tm)
    tm.train(), em.train()  # training mode keeps torch off its fused fast path
    x = rng.standard_normal((3, 5, 8))
    _compare(torch, em, tm, [x])
    kpm = np.zeros((3, 5), bool)
    kpm[1, -1] = True
    _compare(torch, em, tm, [x], call=lambda m, a: m(a, src_key_padding_mask=(
        engine.tensor(kpm) if m is em else torch.tensor(kpm))))
