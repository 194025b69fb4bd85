"""Every parametrized layer with its torch twin, weights moved torch -> engine through state_dict
(the other tests copy engine -> torch), compared in train and then eval mode: outputs, gradients
of input and every parameter, and the buffers (running statistics) after the train-mode pass."""
import numpy as np
import pytest

import engine
from engine import nn

LAYERS = [
    ("Linear", (5, 3), {}, (4, 5)),
    ("Bilinear", (3, 4, 2), {}, [(5, 3), (5, 4)]),
    ("Conv1d", (3, 4, 3), {"padding": 1, "padding_mode": "circular"}, (2, 3, 9)),
    ("Conv2d", (3, 4, 3), {"stride": 2, "padding": 1, "groups": 1}, (2, 3, 9, 8)),
    ("ConvTranspose1d", (3, 2, 4), {"stride": 2}, (2, 3, 6)),
    ("ConvTranspose2d", (4, 2, 3), {"stride": 2, "groups": 2, "output_padding": 1}, (2, 4, 5, 4)),
    ("BatchNorm1d", (4,), {}, (6, 4)),
    ("BatchNorm2d", (3,), {"momentum": None}, (4, 3, 5, 5)),
    ("GroupNorm", (2, 4), {}, (3, 4, 5)),
    ("InstanceNorm2d", (3,), {"affine": True}, (2, 3, 4, 5)),
    ("InstanceNorm1d", (3,), {"affine": True, "track_running_stats": True}, (2, 3, 6)),
    ("InstanceNorm2d", (3,), {"track_running_stats": True, "momentum": 0.3}, (2, 3, 4, 5)),
    ("LayerNorm", ((4, 5),), {}, (3, 4, 5)),
    ("RMSNorm", (5,), {}, (3, 4, 5)),
    ("RNN", (3, 4), {"num_layers": 2}, (5, 2, 3)),
    ("GRU", (3, 4), {"bidirectional": True}, (5, 2, 3)),
    ("LSTM", (3, 4), {"num_layers": 2, "proj_size": 2}, (5, 2, 3)),
    ("GRUCell", (3, 4), {}, (2, 3)),
    ("LSTMCell", (3, 4), {}, (2, 3)),
    ("MultiheadAttention", (8, 2), {"batch_first": True, "dropout": 0.2}, [(2, 5, 8)] * 3),
    ("TransformerEncoderLayer", (8, 2, 16), {"norm_first": True, "dropout": 0.2}, (5, 2, 8)),
    ("Upsample", (), {"scale_factor": 2, "mode": "bicubic"}, (1, 2, 3, 4)),
]


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [] if out is None else [out]


@pytest.mark.parametrize("name,args,kw,shape", LAYERS, ids=[n for n, *_ in LAYERS])
def test_torch_to_engine_train_then_eval(torch, rng, name, args, kw, shape):
    torch.manual_seed(0)
    tm = getattr(torch.nn, name)(*args, **kw).double()
    em = getattr(nn, name)(*args, **kw).double()
    em.load_state_dict({k: engine.tensor(v.detach().numpy().copy()) for k, v in tm.state_dict().items()})
    assert repr(em) == repr(tm)
    shapes = shape if isinstance(shape, list) else [shape]
    xs = [rng.standard_normal(s) for s in shapes]
    stochastic = kw.get("dropout", 0) > 0
    for train in ((False,) if stochastic else (True, False)):  # dropout is compared in eval mode
        em.train(train), tm.train(train)
        em.zero_grad(), tm.zero_grad()
        ein = [engine.tensor(x, requires_grad=True) for x in xs]
        tin = [torch.tensor(x, requires_grad=True) for x in xs]
        eo, to = _flat(em(*ein)), _flat(tm(*tin))
        assert len(eo) == len(to)
        g = np.random.default_rng(1)
        el, tl = 0, 0
        for a, b in zip(eo, to):
            np.testing.assert_allclose(np.asarray(a._data), b.detach().numpy(), rtol=1e-10, atol=1e-12)
            w = g.standard_normal(b.shape)
            el, tl = el + (a * engine.tensor(w)).sum(), tl + (b * torch.tensor(w)).sum()
        el.backward(), tl.backward()
        for a, b in zip(ein, tin):
            np.testing.assert_allclose(a.grad._data, b.grad.numpy(), rtol=1e-9, atol=1e-11)
        tp = dict(tm.named_parameters())
        for k, p in em.named_parameters():
            np.testing.assert_allclose(p.grad._data, tp[k].grad.numpy(), rtol=1e-9, atol=1e-11, err_msg=k)
        ts = tm.state_dict()
        for k, v in em.state_dict().items():
            np.testing.assert_allclose(np.asarray(v._data), ts[k].numpy(), rtol=1e-12, atol=1e-14, err_msg=k)
