"""Models, data and the single-process reference for the DDP tests (shared by ranks and tests)."""
import numpy as np

import engine
from engine import nn
from engine.nn import functional as F

STEPS = 20
PER_RANK = 4  # samples per rank per step (per micro-batch times accumulation)


class _Unused(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(6, 8)
        self.fc2 = nn.Linear(8, 3)
        self.spare = nn.Linear(8, 3)  # never used: needs find_unused_parameters

    def forward(self, x):
        return self.fc2(F.relu(self.fc1(x)))


def build(name: str, dtype: str, seed: int) -> nn.Module:
    engine.manual_seed(seed)
    if name == "mlp":
        m = nn.Sequential(nn.Linear(6, 16), nn.Tanh(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    elif name == "cnn_bn":
        m = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                          nn.Conv2d(4, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 4 * 4, 3))
    elif name == "unused":
        m = _Unused()
    else:
        raise ValueError(name)
    return m.double() if dtype == "float64" else m


def batch(name: str, dtype: str, step: int, world: int, accum: int):
    """The union batch of one step: ``world * PER_RANK * accum`` samples."""
    g = np.random.default_rng([7, step])
    n = world * PER_RANK * accum
    x = g.standard_normal((n, 1, 6, 6) if name == "cnn_bn" else (n, 6)).astype(dtype)
    return engine.tensor(x), engine.tensor(g.integers(0, 3, n))


def shard(x, y, rank: int, world: int, accum: int):
    """Rank ``rank``'s micro-batches: consecutive blocks, micro-batch-major so that the
    union of micro-batch k over ranks is the k-th slice of the union batch."""
    out = []
    for k in range(accum):
        a = (k * world + rank) * PER_RANK
        out.append((x[a:a + PER_RANK], y[a:a + PER_RANK]))
    return out


def loss(out, y):
    return F.cross_entropy(out, y)


def reference(name: str, dtype: str, world: int, accum: int) -> dict:
    """One process, rank 0's initial weights, trained on the union batch; with accumulation the
    BatchNorm-free models see the whole union batch at once."""
    model = build(name, dtype, seed=100)
    opt = engine.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(STEPS):
        x, y = batch(name, dtype, step, world, accum)
        opt.zero_grad()
        if "bn" in name:  # BatchNorm statistics are per micro-batch (over all ranks)
            m = world * PER_RANK
            for k in range(accum):
                (loss(model(x[k * m:(k + 1) * m]), y[k * m:(k + 1) * m]) / accum).backward()
        else:
            loss(model(x), y).backward()
        opt.step()
    return {k: v.numpy() for k, v in model.state_dict().items()}
