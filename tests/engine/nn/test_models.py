"""Whole-model twins: the same architecture built from engine.nn and torch.nn, weights moved through
state_dict (torch -> engine and engine -> torch via numpy), outputs, input and parameter gradients
and buffers compared in float64, in train and eval mode."""
import numpy as np
import pytest

import engine
from engine import nn


def simple_cnn(m):
    """The seed's SimpleCNN: padding=1 convolutions and 2x2 max-pooling so 1x28x28 gives 64x7x7."""
    return m.Sequential(m.Conv2d(1, 32, 3, padding=1), m.ReLU(), m.MaxPool2d(2), m.Conv2d(32, 64, 3, padding=1),
                        m.ReLU(), m.MaxPool2d(2), m.Flatten(), m.Linear(64 * 7 * 7, 128), m.ReLU(),
                        m.Linear(128, 10))


def resnet18(m, num_classes=10):
    """torchvision's ResNet-18 layout (BasicBlock, BatchNorm, same state_dict keys)."""

    class BasicBlock(m.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.conv1 = m.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = m.BatchNorm2d(cout)
            self.relu = m.ReLU()
            self.conv2 = m.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = m.BatchNorm2d(cout)
            self.downsample = None
            if stride != 1 or cin != cout:
                self.downsample = m.Sequential(m.Conv2d(cin, cout, 1, stride, bias=False), m.BatchNorm2d(cout))

        def forward(self, x):
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            identity = x if self.downsample is None else self.downsample(x)
            return self.relu(out + identity)

    class ResNet(m.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = m.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = m.BatchNorm2d(64)
            self.relu = m.ReLU()
            self.maxpool = m.MaxPool2d(3, 2, 1)
            widths, cin = (64, 128, 256, 512), 64
            for i, w in enumerate(widths):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", m.Sequential(BasicBlock(cin, w, stride), BasicBlock(w, w, 1)))
                cin = w
            self.avgpool = m.AdaptiveAvgPool2d((1, 1))
            self.fc = m.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet()


def lstm_classifier(m):
    """2-layer bidirectional LSTM over (N, T, F) features; the last step's output classifies."""

    class LSTMClassifier(m.Module):
        def __init__(self):
            super().__init__()
            self.lstm = m.LSTM(6, 12, num_layers=2, bidirectional=True, batch_first=True, dropout=0.25)
            self.fc = m.Linear(24, 4)

        def forward(self, x):
            out, (h, c) = self.lstm(x)
            return self.fc(out[:, -1]) + h.sum() * 0.0 + c.sum() * 0.01

    return LSTMClassifier()


def transformer_classifier(m):
    """Token embedding, 2-layer TransformerEncoder with a key padding mask, first-token head."""

    class TransformerClassifier(m.Module):
        def __init__(self):
            super().__init__()
            self.embed = m.Embedding(20, 16, padding_idx=0)
            layer = m.TransformerEncoderLayer(16, 4, dim_feedforward=32, dropout=0.1, batch_first=True)
            kw = {"enable_nested_tensor": False} if m.__name__.startswith("torch") else {}
            self.encoder = m.TransformerEncoder(layer, 2, norm=m.LayerNorm(16), **kw)
            self.fc = m.Linear(16, 3)

        def forward(self, tokens, pad_mask):
            h = self.encoder(self.embed(tokens), src_key_padding_mask=pad_mask)
            return self.fc(h[:, 0])

    return TransformerClassifier()


def _to_engine(tm, em):
    """torch -> engine through numpy (strict keys)."""
    em.load_state_dict({k: engine.tensor(v.detach().numpy().copy()) for k, v in tm.state_dict().items()})


def _assert_same_state(em, tm, rtol=1e-10, atol=1e-12):
    es, ts = em.state_dict(), tm.state_dict()
    assert list(es) == list(ts)
    for k in es:
        np.testing.assert_allclose(np.asarray(es[k]._data), ts[k].detach().numpy(), rtol=rtol, atol=atol, err_msg=k)


def _close(a, b, tol, what):
    """Max error relative to the tensor's scale: deep nets sum thousands of terms per gradient, so
    an elementwise rtol would flag cancellations in entries far below the typical magnitude."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape, what
    err = np.abs(a - b).max() if a.size else 0.0
    assert err <= tol * max(np.abs(b).max(), 1e-30), f"{what}: max error {err:.3g}, scale {np.abs(b).max():.3g}"


def compare(torch, em, tm, *inputs, tol=1e-10):
    """Outputs, input gradients and every parameter gradient of the twins, for a random output gradient."""
    em.zero_grad(), tm.zero_grad()
    ein = [engine.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    tin = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
    eo, to = em(*ein), tm(*tin)
    _close(eo._data, to.detach().numpy(), tol, "output")
    g = np.random.default_rng(1).standard_normal(to.shape).astype(to.detach().numpy().dtype)
    (eo * engine.tensor(g)).sum().backward()
    (to * torch.tensor(g)).sum().backward()
    for i, (x, y) in enumerate(zip(ein, tin)):
        if y.grad is not None:
            _close(x.grad._data, y.grad.numpy(), tol, f"input {i} grad")
    tp = dict(tm.named_parameters())
    for name, p in em.named_parameters():
        if tp[name].grad is None:
            assert p.grad is None, name
        else:
            _close(p.grad._data, tp[name].grad.numpy(), tol, f"{name} grad")


def _twins(torch, oracle, build, direction):
    torch.manual_seed(0)
    engine.manual_seed(0)
    em, tm = build(nn).double(), build(torch.nn).double()
    assert list(em.state_dict()) == list(tm.state_dict())
    if direction == "torch->engine":
        _to_engine(tm, em)
    else:
        oracle.copy_weights(em, tm)
    _assert_same_state(em, tm, 0, 0)
    return em, tm


@pytest.mark.parametrize("direction", ["torch->engine", "engine->torch"])
def test_simple_cnn(torch, oracle, rng, direction):
    em, tm = _twins(torch, oracle, simple_cnn, direction)
    x = rng.standard_normal((3, 1, 28, 28))
    for mode in (True, False):
        em.train(mode), tm.train(mode)
        compare(torch, em, tm, x)


def test_resnet18(torch, oracle, rng):
    em, tm = _twins(torch, oracle, resnet18, "torch->engine")
    x = rng.standard_normal((2, 3, 32, 32))
    # train mode: layer4's BatchNorm normalizes over 2 values (batch 2 at 1x1), which turns
    # float64 rounding (1e-16) into ~1e-8 relative differences; eval mode is held to 1e-10
    compare(torch, em, tm, x, tol=1e-7)
    _assert_same_state(em, tm, 1e-10, 1e-12)  # running mean/var and num_batches_tracked updated alike
    em.eval(), tm.eval()
    compare(torch, em, tm, x)
    # back to torch: the trained-in-engine buffers load into a fresh torch twin and agree
    tm2 = resnet18(torch.nn).double()
    oracle.copy_weights(em, tm2)
    tm2.eval()
    np.testing.assert_allclose(tm2(torch.tensor(x)).detach().numpy(), tm(torch.tensor(x)).detach().numpy(),
                               rtol=1e-12, atol=1e-12)


def test_resnet18_float32(torch, oracle, rng):
    torch.manual_seed(0)
    em, tm = resnet18(nn), resnet18(torch.nn)
    _to_engine(tm, em)
    em.eval(), tm.eval()
    compare(torch, em, tm, rng.standard_normal((2, 3, 32, 32)).astype(np.float32), tol=1e-5)


@pytest.mark.parametrize("direction", ["torch->engine", "engine->torch"])
def test_bidirectional_lstm_classifier(torch, oracle, rng, direction):
    em, tm = _twins(torch, oracle, lstm_classifier, direction)
    x = rng.standard_normal((4, 7, 6))
    em.eval(), tm.eval()  # inter-layer dropout compared in eval mode
    compare(torch, em, tm, x)
    em.lstm.dropout = tm.lstm.dropout = 0.0  # train mode without randomness
    em.train(), tm.train()
    compare(torch, em, tm, x)


def test_lstm_dropout_in_train_is_random_and_scaled(rng):
    em = lstm_classifier(nn).double()
    x = engine.tensor(rng.standard_normal((4, 7, 6)))
    em.eval()
    ref = em(x)._data
    em.train()
    outs = [em(x)._data for _ in range(3)]
    assert all(not np.allclose(o, ref) for o in outs)
    assert not np.allclose(outs[0], outs[1])


@pytest.mark.parametrize("direction", ["torch->engine", "engine->torch"])
def test_transformer_classifier_with_padding(torch, oracle, rng, direction):
    em, tm = _twins(torch, oracle, transformer_classifier, direction)
    tokens = rng.integers(1, 20, (3, 6))
    pad = np.zeros((3, 6), bool)
    pad[0, 4:] = True
    pad[2, 2:] = True
    tokens[pad] = 0
    em.eval(), tm.eval()  # dropout compared in eval mode; grads keep torch off its fused fast path
    compare(torch, em, tm, tokens, pad)
    # padded positions do not change the result: perturb the padded tokens
    t2 = tokens.copy()
    t2[pad] = 7
    np.testing.assert_allclose(em(engine.tensor(t2), engine.tensor(pad))._data,
                               em(engine.tensor(tokens), engine.tensor(pad))._data, rtol=1e-12)
    for layer in list(em.encoder.layers) + list(tm.encoder.layers):  # train mode without randomness
        for mod in (layer.dropout, layer.dropout1, layer.dropout2):
            mod.p = 0.0
        layer.self_attn.dropout = 0.0
    em.train(), tm.train()
    compare(torch, em, tm, tokens, pad)


def test_attention_dropout_statistics(rng):
    """Train-mode dropout on the attention weights: about p of them zeroed, the rest scaled by 1/(1-p)."""
    m = nn.MultiheadAttention(8, 2, dropout=0.3).double()
    x = engine.tensor(rng.standard_normal((40, 6, 8)))
    m.eval()
    _, w_eval = m(x, x, x, average_attn_weights=False)
    m.train()
    _, w = m(x, x, x, average_attn_weights=False)
    w, w_eval = np.asarray(w._data), np.asarray(w_eval._data)
    zero = w == 0
    assert abs(zero.mean() - 0.3) < 0.02
    np.testing.assert_allclose(w[~zero], w_eval[~zero] / 0.7, rtol=1e-12)
