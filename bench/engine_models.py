"""The training-step workloads of bench/harness.py, written once for engine and torch alike.

Each builder takes the library (``engine`` or ``torch``) and a numpy Generator and returns a
zero-argument ``step()`` running one whole training step: forward, loss, backward and the
optimizer's update (the optimizer-only workloads run ``opt.step()`` on fixed gradients).
Inputs come from numpy with a fixed seed, so both sides train on the same data and, for the
same seed, start from differently initialised but equally shaped weights.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

Step = Callable[[], None]


def simple_cnn(nn: Any) -> Any:
    """The seed's SimpleCNN: two padding-1 3x3 convs with ReLU and 2x2 max-pooling, 1x28x28 -> 10."""
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))


def small_resnet(lib: Any) -> Any:
    """A CIFAR-style ResNet: stem conv+BN, three BasicBlock stages (16, 32, 64 channels; the last
    two stride 2 with a 1x1 conv+BN shortcut), global average pooling, linear head (3x32x32 -> 10)."""
    nn = lib.nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(cout)
            self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(cout)
            self.relu = nn.ReLU()
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x: Any) -> Any:
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + (x if self.short is None else self.short(x)))

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
            self.layers = nn.Sequential(Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(64, 10)

        def forward(self, x: Any) -> Any:
            return self.fc(self.pool(self.layers(self.stem(x))).flatten(1))

    return Net()


def rnn_classifier(lib: Any, kind: str) -> Any:
    """LSTM or GRU (input 32, hidden 128, batch_first) with a linear head on the last step."""
    nn = lib.nn
    cell = nn.LSTM if kind == "lstm" else nn.GRU

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.rnn = cell(32, 128, batch_first=True)
            self.head = nn.Linear(128, 10)

        def forward(self, x: Any) -> Any:
            out, _ = self.rnn(x)
            return self.head(out[:, -1])

    return Net()


def encoder_classifier(lib: Any) -> Any:
    """Embedding(1000, 128) -> 2-layer TransformerEncoder (4 heads, ff 512, batch_first) ->
    mean over the sequence -> Linear(128, 10)."""
    nn = lib.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(1000, 128)
            layer = nn.TransformerEncoderLayer(128, 4, dim_feedforward=512, dropout=0.1, batch_first=True)
            self.enc = nn.TransformerEncoder(layer, 2)
            self.head = nn.Linear(128, 10)

        def forward(self, tokens: Any) -> Any:
            return self.head(self.enc(self.emb(tokens)).mean(1))

    return Net()


def _train_step(lib: Any, model: Any, opt: Any, x: Any, y: Any) -> Step:
    ce = lib.nn.functional.cross_entropy

    def step() -> None:
        opt.zero_grad()
        ce(model(x), y).backward()
        opt.step()

    return step


def _mlp(lib: Any, rng: np.random.Generator, opt_name: str) -> Step:
    nn = lib.nn
    model = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
    opt = lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9) if opt_name == "sgd" else \
        lib.optim.Adam(model.parameters(), lr=1e-3)
    x = lib.tensor(rng.standard_normal((64, 784)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 64))
    return _train_step(lib, model, opt, x, y)


def mlp_sgd(lib: Any, rng: np.random.Generator) -> Step:
    """MLP 784-512-512-10, batch 64, SGD with momentum."""
    return _mlp(lib, rng, "sgd")


def mlp_adam(lib: Any, rng: np.random.Generator) -> Step:
    """MLP 784-512-512-10, batch 64, Adam."""
    return _mlp(lib, rng, "adam")


def cnn(lib: Any, rng: np.random.Generator) -> Step:
    """The seed SimpleCNN, batch 64 of 1x28x28, Adam."""
    model = simple_cnn(lib.nn)
    x = lib.tensor(rng.standard_normal((64, 1, 28, 28)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 64))
    return _train_step(lib, model, lib.optim.Adam(model.parameters()), x, y)


def resnet(lib: Any, rng: np.random.Generator) -> Step:
    """small_resnet in train mode (BatchNorm batch statistics), batch 32 of 3x32x32, SGD momentum."""
    model = small_resnet(lib)
    x = lib.tensor(rng.standard_normal((32, 3, 32, 32)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 32))
    return _train_step(lib, model, lib.optim.SGD(model.parameters(), lr=0.05, momentum=0.9), x, y)


def _rnn(lib: Any, rng: np.random.Generator, kind: str) -> Step:
    model = rnn_classifier(lib, kind)
    x = lib.tensor(rng.standard_normal((64, 50, 32)).astype(np.float32))
    y = lib.tensor(rng.integers(0, 10, 64))
    return _train_step(lib, model, lib.optim.Adam(model.parameters()), x, y)


def lstm(lib: Any, rng: np.random.Generator) -> Step:
    """LSTM classifier, batch 64, seq 50, hidden 128, Adam."""
    return _rnn(lib, rng, "lstm")


def gru(lib: Any, rng: np.random.Generator) -> Step:
    """GRU classifier, batch 64, seq 50, hidden 128, Adam."""
    return _rnn(lib, rng, "gru")


def transformer(lib: Any, rng: np.random.Generator) -> Step:
    """encoder_classifier over batch 32 of 64 tokens, AdamW."""
    model = encoder_classifier(lib)
    tokens = lib.tensor(rng.integers(0, 1000, (32, 64)))
    y = lib.tensor(rng.integers(0, 10, 32))
    return _train_step(lib, model, lib.optim.AdamW(model.parameters(), lr=1e-3), tokens, y)


OPT_SHAPES = [(2048, 1024)] * 4 + [(1024, 1024)] * 2 + [(1000, 1000)] * 2  # 10.48M parameters


def _opt_only(lib: Any, rng: np.random.Generator, cls: str) -> Step:
    params = []
    for s in OPT_SHAPES:
        p = lib.nn.Parameter(lib.tensor(rng.standard_normal(s).astype(np.float32)))
        p.grad = lib.tensor(rng.standard_normal(s).astype(np.float32))
        params.append(p)
    return getattr(lib.optim, cls)(params, lr=1e-3).step


def adam10m(lib: Any, rng: np.random.Generator) -> Step:
    """Adam.step() over 10.48M float32 parameters in 8 tensors, gradients fixed (library defaults:
    torch runs its single-tensor loop on CPU)."""
    return _opt_only(lib, rng, "Adam")


def adamw10m(lib: Any, rng: np.random.Generator) -> Step:
    """AdamW.step() over the same 10.48M parameters."""
    return _opt_only(lib, rng, "AdamW")


def small_op(lib: Any, rng: np.random.Generator) -> Step:
    """(a * b).sum().backward() on 100-element tensors: per-op overhead."""
    a = lib.tensor(rng.standard_normal(100).astype(np.float32), requires_grad=True)
    b = lib.tensor(rng.standard_normal(100).astype(np.float32), requires_grad=True)

    def step() -> None:
        a.grad = b.grad = None
        (a * b).sum().backward()

    return step


def matmul1024(lib: Any, rng: np.random.Generator) -> Step:
    """(A @ B).backward(G) for 1024x1024 float32."""
    a, b = (lib.tensor(rng.standard_normal((1024, 1024)).astype(np.float32), requires_grad=True) for _ in "ab")
    g = lib.tensor(rng.standard_normal((1024, 1024)).astype(np.float32))

    def step() -> None:
        a.grad = b.grad = None
        (a @ b).backward(g)

    return step


def chain(lib: Any, rng: np.random.Generator) -> Step:
    """50 elementwise ops (mul, add, tanh, mul by x, sigmoid, sub, relu, exp, div, sin, x5) on 1M
    float32 values, then sum().backward()."""
    x = lib.tensor(rng.uniform(-1, 1, 1_000_000).astype(np.float32), requires_grad=True)
    ops = [lambda y: y * 1.01, lambda y: y + 0.1, lambda y: y.tanh(), lambda y: y * x, lambda y: y.sigmoid(),
           lambda y: y - x, lambda y: y.relu(), lambda y: y.exp(), lambda y: y / 1.5, lambda y: y.sin()]

    def step() -> None:
        x.grad = None
        y = x
        for i in range(50):
            y = ops[i % 10](y)
        y.sum().backward()

    return step


def conv(lib: Any, rng: np.random.Generator) -> Step:
    """Conv2d(32 -> 64, 3x3, padding 1) forward+backward on 64x32x14x14."""
    m = lib.nn.Conv2d(32, 64, 3, padding=1)
    x = lib.tensor(rng.standard_normal((64, 32, 14, 14)).astype(np.float32), requires_grad=True)

    def step() -> None:
        x.grad = None
        m.zero_grad()
        m(x).sum().backward()

    return step


def loader(lib: Any, rng: np.random.Generator) -> Step:
    """One shuffled epoch of 64x1x28x28 batches from an in-memory TensorDataset of 60000 samples."""
    ds = lib.utils.data.TensorDataset(lib.tensor(rng.standard_normal((60000, 1, 28, 28)).astype(np.float32)),
                                      lib.tensor(rng.integers(0, 10, 60000)))
    dl = lib.utils.data.DataLoader(ds, batch_size=64, shuffle=True, num_workers=0)

    def step() -> None:
        for _ in dl:
            pass

    return step


# the former bench/engine_core.py, engine_nn.py and engine_optim_data.py workloads (and their targets)
EXTRA: dict[str, Callable[[Any, np.random.Generator], Step]] = {
    "small_op": small_op, "matmul1024": matmul1024, "chain": chain, "conv": conv, "loader": loader}
EXTRA_TARGETS = {"small_op": 3.0, "matmul1024": 1.0, "chain": 1.5, "conv": 2.0, "loader": 1.0}

WORKLOADS: dict[str, Callable[[Any, np.random.Generator], Step]] = {
    "mlp_sgd": mlp_sgd, "mlp_adam": mlp_adam, "cnn": cnn, "resnet": resnet, "lstm": lstm, "gru": gru,
    "transformer": transformer, "adam10m": adam10m, "adamw10m": adamw10m, **EXTRA,
}

# engine / torch targets of issue 17 (the memory target applies to every training step measured)
TARGETS = {"mlp_sgd": 1.0, "mlp_adam": 1.0, "cnn": 1.2, "resnet": 1.5, "lstm": 1.5, "gru": 1.5,
           "transformer": 1.0, "adam10m": 1.2, "adamw10m": 1.2}
MEMORY_TARGET = 1.5
MEMORY_WORKLOADS = ("mlp_adam", "cnn", "resnet", "lstm", "transformer")
