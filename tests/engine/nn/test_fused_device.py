"""The fused nn paths (conv, max-pool blocks, linear, LSTM layer, attention core) on every device:
the same module on 'cpu' and on the device gives the same outputs and gradients (on CPU this is
the plain numpy path against itself; on CUDA it checks the cupy path of the same code)."""
import copy

import numpy as np
import pytest

import engine
from engine import nn


def _host(t):
    return engine.backend.to_numpy(t._data)


CASES = [
    ("conv", lambda: nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                   nn.Conv2d(8, 4, 3, stride=2, groups=2, padding_mode="reflect", padding=1)),
     (2, 3, 10, 10)),
    ("linear", lambda: nn.Sequential(nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 2)), (3, 4, 6)),
    ("lstm", lambda: nn.LSTM(4, 6, num_layers=2, bidirectional=True, proj_size=3), (5, 2, 4)),
    ("attention", lambda: nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0), (5, 3, 8)),
]


@pytest.mark.parametrize("name,build,shape", CASES, ids=[c[0] for c in CASES])
def test_fused_paths_on_device(device, rng, name, build, shape):
    engine.manual_seed(0)
    cpu = build().double()
    dev = copy.deepcopy(cpu).to(device)
    x = rng.standard_normal(shape)
    outs, grads = [], []
    for m, d in ((cpu, "cpu"), (dev, device)):
        xt = engine.tensor(x, device=d, requires_grad=True)
        out = m(xt)
        out = out[0] if isinstance(out, tuple) else out
        (out * out).sum().backward()
        outs.append(_host(out))
        grads.append([_host(xt.grad)] + [_host(p.grad) for p in m.parameters()])
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-10, atol=1e-12)
    for a, b in zip(grads[1], grads[0]):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-11)
