"""grad_fn.name() equals torch's for common ops (composites rename their last node)."""

import numpy as np
import pytest

import engine

# torch-internal names engine does not copy: matmul of a batch with a matrix (torch folds
# it into one mm and an UnsafeView) and einsum (torch's last step is a view).
OPS = {  # name: fn(lib, a, b) -> tensor whose grad_fn is compared
    "add": lambda m, a, b: a + b,
    "add_scalar": lambda m, a, b: a + 1.0,
    "sub": lambda m, a, b: a - b,
    "rsub": lambda m, a, b: 1.0 - a,
    "mul": lambda m, a, b: a * b,
    "mul_scalar": lambda m, a, b: a * 2.0,
    "div": lambda m, a, b: a / b,
    "div_scalar": lambda m, a, b: a / 2.0,
    "neg": lambda m, a, b: -a,
    "pow": lambda m, a, b: a**2,
    "pow_t": lambda m, a, b: a**b,
    "rpow": lambda m, a, b: 2.0**a,
    "exp": lambda m, a, b: a.exp(),
    "log": lambda m, a, b: a.log(),
    "sqrt": lambda m, a, b: a.sqrt(),
    "rsqrt": lambda m, a, b: a.rsqrt(),
    "tanh": lambda m, a, b: a.tanh(),
    "sigmoid": lambda m, a, b: a.sigmoid(),
    "relu": lambda m, a, b: a.relu(),
    "sin": lambda m, a, b: a.sin(),
    "cos": lambda m, a, b: a.cos(),
    "abs": lambda m, a, b: a.abs(),
    "clamp": lambda m, a, b: a.clamp(0.6, 1.2),
    "clamp_min": lambda m, a, b: a.clamp(min=0.6),
    "maximum": lambda m, a, b: m.maximum(a, b),
    "where": lambda m, a, b: m.where(a > 1, a, b),
    "sum": lambda m, a, b: a.sum(),
    "sum_dim": lambda m, a, b: a.sum(0),
    "mean": lambda m, a, b: a.mean(),
    "mean_dim": lambda m, a, b: a.mean(1),
    "max": lambda m, a, b: a.max(),
    "max_dim": lambda m, a, b: a.max(1)[0],
    "amax": lambda m, a, b: a.amax(1),
    "var": lambda m, a, b: a.var(),
    "std": lambda m, a, b: a.std(),
    "prod": lambda m, a, b: a.prod(),
    "norm": lambda m, a, b: a.norm(),
    "logsumexp": lambda m, a, b: a.logsumexp(1),
    "softmax": lambda m, a, b: a.softmax(1),
    "log_softmax": lambda m, a, b: a.log_softmax(1),
    "cumsum": lambda m, a, b: a.cumsum(1),
    "matmul": lambda m, a, b: a @ b.t(),
    "mm": lambda m, a, b: m.mm(a, b.t()),
    "mv": lambda m, a, b: m.mv(a, b[0]),
    "bmm": lambda m, a, b: m.bmm(a[None], b.t()[None]),
    "dot": lambda m, a, b: m.dot(a[0], b[0]),
    "view": lambda m, a, b: a.view(12),
    "reshape": lambda m, a, b: a.reshape(2, 6),
    "t": lambda m, a, b: a.t(),
    "transpose": lambda m, a, b: a.transpose(0, 1),
    "permute": lambda m, a, b: a.permute(1, 0),
    "unsqueeze": lambda m, a, b: a.unsqueeze(0),
    "squeeze": lambda m, a, b: a[None].squeeze(0),
    "expand": lambda m, a, b: a[:, :1].expand(3, 4),
    "flatten": lambda m, a, b: a.flatten(),
    "cat": lambda m, a, b: m.cat([a, b]),
    "stack": lambda m, a, b: m.stack([a, b]),
    "slice": lambda m, a, b: a[1:],
    "select": lambda m, a, b: a[1],
    "index": lambda m, a, b: a[m.tensor([0, 2])],
    "gather": lambda m, a, b: a.gather(1, m.tensor([[0], [1], [2]])),
    "index_select": lambda m, a, b: a.index_select(0, m.tensor([0, 2])),
    "clone": lambda m, a, b: a.clone(),
    "contiguous": lambda m, a, b: a.t().contiguous(),
    "split": lambda m, a, b: a.split(2, 1)[0],
    "chunk": lambda m, a, b: a.chunk(2, 0)[0],
    "unbind": lambda m, a, b: a.unbind(0)[0],
    "narrow": lambda m, a, b: a.narrow(1, 0, 2),
    "masked_fill": lambda m, a, b: a.masked_fill(a > 1, 0.0),
    "to": lambda m, a, b: a.to(m.float32),
    "square": lambda m, a, b: a.square(),
    "lerp": lambda m, a, b: m.lerp(a, b, 0.3),
    "tril": lambda m, a, b: a.tril(),
    "flip": lambda m, a, b: a.flip(0),
    "roll": lambda m, a, b: a.roll(1, 0),
    "repeat": lambda m, a, b: a.repeat(2, 1),
    "sort": lambda m, a, b: a.sort(1)[0],
    "topk": lambda m, a, b: a.topk(2)[0],
    "cumprod": lambda m, a, b: a.cumprod(1),
    "log1p": lambda m, a, b: a.log1p(),
    "reciprocal": lambda m, a, b: a.reciprocal(),
    "gelu": lambda m, a, b: m.nn.functional.gelu(a) if m.__name__ == "torch" else m.gelu(a),
    "silu": lambda m, a, b: m.nn.functional.silu(a) if m.__name__ == "torch" else m.silu(a),
    "softplus": lambda m, a, b: (
        m.nn.functional.softplus(a) if m.__name__ == "torch" else m.softplus(a)
    ),
    "erf": lambda m, a, b: a.erf(),
    "atan": lambda m, a, b: a.atan(),
    "sign": lambda m, a, b: a.sign(),
    "floor": lambda m, a, b: a.floor(),
    "min_dim": lambda m, a, b: a.min(0)[0],
    "amin": lambda m, a, b: a.amin(),
    "scatter_add": lambda m, a, b: a.scatter_add(0, m.tensor([[0, 1, 2, 0]]), b[:1]),
    "index_add": lambda m, a, b: a.index_add(0, m.tensor([0]), b[:1]),
    "outer": lambda m, a, b: m.outer(a[0], b[0]),
    "addcmul": lambda m, a, b: m.addcmul(a, a, b),
    "tile": lambda m, a, b: a.tile((2,)),
    "movedim": lambda m, a, b: a.movedim(0, 1),
    "broadcast_to": lambda m, a, b: a[:1].broadcast_to((3, 4)),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_grad_fn_name_matches_torch(torch, name):
    a_np = np.random.default_rng(0).uniform(0.5, 1.5, (3, 4))
    b_np = np.random.default_rng(1).uniform(0.5, 1.5, (3, 4))
    names = []
    for m in (engine, torch):
        a, b = m.tensor(a_np, requires_grad=True), m.tensor(b_np, requires_grad=True)
        names.append(OPS[name](m, a, b).grad_fn.name())
    assert names[0] == names[1]


def test_copyslices_and_next_functions(torch):
    got = []
    for m in (engine, torch):
        a = m.ones(2, 2, requires_grad=True)
        b = a * 1
        b[0].add_(1)
        edges = (a * 2).grad_fn.next_functions
        got.append((b.grad_fn.name(), [None if f is None else f.name() for f, _ in edges]))
    assert (
        got[0]
        == got[1]
        == ("torch::autograd::CopySlices", ["torch::autograd::AccumulateGrad", None])
    )
