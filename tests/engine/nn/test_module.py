"""nn.Module registration, traversal, state_dict and repr, against torch.nn.Module."""
from collections import OrderedDict

import numpy as np
import pytest

import engine
from engine import nn


def _pair(torch):
    """The same small model in engine and in torch."""
    def build(m):
        class Net(m.Module):
            def __init__(self):
                super().__init__()
                self.features = m.Sequential(m.Linear(4, 8), m.ReLU(), m.Linear(8, 3, bias=False))
                self.head = m.Linear(3, 2)
                self.register_buffer("scale", (engine if m is nn else torch).ones(2))
                self.register_buffer("tmp", (engine if m is nn else torch).zeros(1), persistent=False)

            def forward(self, x):
                return self.head(self.features(x)) * self.scale

        return Net()

    return build(nn), build(torch.nn)


def test_names_and_keys_match_torch(torch):
    em, tm = _pair(torch)
    assert [n for n, _ in em.named_parameters()] == [n for n, _ in tm.named_parameters()]
    assert [n for n, _ in em.named_buffers()] == [n for n, _ in tm.named_buffers()]
    assert [n for n, _ in em.named_modules()] == [n for n, _ in tm.named_modules()]
    assert [n for n, _ in em.named_children()] == [n for n, _ in tm.named_children()]
    assert list(em.state_dict()) == list(tm.state_dict())
    assert [tuple(v.shape) for v in em.state_dict().values()] == [tuple(v.shape) for v in tm.state_dict().values()]
    assert len(list(em.parameters())) == 5 and len(list(em.buffers())) == 2
    assert len(list(em.modules())) == 6 and len(list(em.children())) == 2


def test_state_dict_both_ways_gives_same_outputs(torch, oracle, rng):
    em, tm = _pair(torch)
    em.double(), tm.double()
    oracle.copy_weights(em, tm)
    oracle.compare(em, tm, rng.standard_normal((5, 4)))
    # torch -> engine: load_state_dict takes CPU torch tensors directly
    tm2 = _pair(torch)[1].double()
    em.load_state_dict(tm2.state_dict())
    oracle.compare(em, tm2, rng.standard_normal((5, 4)))


def test_state_dict_shares_memory_and_is_detached():
    m = nn.Linear(2, 3)
    sd = m.state_dict()
    assert not sd["weight"].requires_grad
    sd["weight"]._data[...] = 7
    assert float(m.weight._data[0, 0]) == 7
    assert m.state_dict(keep_vars=True)["weight"] is m.weight


def test_load_state_dict_errors_like_torch(torch):
    em = nn.Linear(2, 3)
    tm = torch.nn.Linear(2, 3)
    bad = {"weight": np.zeros((3, 2), np.float32), "extra": np.zeros(1)}
    with pytest.raises(RuntimeError) as e_err:
        em.load_state_dict(bad)
    with pytest.raises(RuntimeError) as t_err:
        tm.load_state_dict({k: torch.from_numpy(v) for k, v in bad.items()})
    assert str(e_err.value) == str(t_err.value)
    res = em.load_state_dict(bad, strict=False)
    assert res.missing_keys == ["bias"] and res.unexpected_keys == ["extra"]
    with pytest.raises(RuntimeError, match=r"size mismatch for weight: copying a param with shape \[2, 2\]"):
        em.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(3)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        em.load_state_dict({"weight": np.zeros((2, 2)), "bias": np.zeros(3)}, strict=False)


def test_load_state_dict_copies_and_casts():
    m = nn.Linear(2, 3)
    w = m.weight
    m.load_state_dict({"weight": engine.ones(3, 2, dtype=engine.float64), "bias": np.arange(3)})
    assert m.weight is w and m.weight.dtype is engine.float32
    np.testing.assert_array_equal(m.bias._data, [0, 1, 2])


def test_setattr_registration_and_errors():
    m = nn.Module()
    m.p = nn.Parameter(engine.zeros(2))
    m.sub = nn.Linear(1, 1)
    m.register_buffer("b", engine.zeros(1))
    assert set(m._parameters) == {"p"} and set(m._modules) == {"sub"} and set(m._buffers) == {"b"}
    with pytest.raises(TypeError):
        m.p = engine.zeros(2)  # a plain tensor is not a Parameter
    m.p = None
    assert m.p is None and list(m.parameters()) == list(m.sub.parameters())
    with pytest.raises(TypeError):
        m.b = 3
    with pytest.raises(KeyError):
        m.register_buffer("a.b", None)
    with pytest.raises(AttributeError):
        _ = m.missing
    del m.sub
    assert "sub" not in m._modules
    m.add_module("x", nn.ReLU())
    assert isinstance(m.x, nn.ReLU)
    m.register_parameter("q", nn.Parameter(engine.ones(1)))
    assert m.get_parameter("q") is m.q


def test_shared_parameters_are_deduplicated(torch):
    em = nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 2))
    em[1].weight = em[0].weight
    assert len(list(em.parameters())) == 3
    assert len(list(em.named_parameters(remove_duplicate=False))) == 4


def test_train_eval_apply_requires_grad():
    m = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.ReLU()))
    m.eval()
    assert not any(x.training for x in m.modules())
    m.train()
    assert all(x.training for x in m.modules())
    seen = []
    m.apply(lambda x: seen.append(type(x).__name__))
    assert seen == ["Linear", "ReLU", "Sequential", "Sequential"]
    m.requires_grad_(False)
    assert not any(p.requires_grad for p in m.parameters())


def test_zero_grad():
    m = nn.Linear(3, 2)
    m(engine.ones(4, 3)).sum().backward()
    m.zero_grad(set_to_none=False)
    assert float(m.weight.grad._data.sum()) == 0.0
    m.zero_grad()
    assert m.weight.grad is None and m.bias.grad is None


def test_to_dtype_keeps_parameter_identity():
    m = nn.Linear(2, 2)
    m.register_buffer("count", engine.tensor(3))
    w = m.weight
    m.to(engine.float64)
    assert m.weight is w and w.dtype is engine.float64 and isinstance(w, nn.Parameter)
    assert m.count.dtype is engine.int64  # integer buffers keep their dtype
    m.float()
    assert w.dtype is engine.float32
    m.to("cpu")
    assert w.device == engine.device("cpu")


def test_forward_hooks():
    m = nn.Linear(2, 2)
    calls = []
    h1 = m.register_forward_pre_hook(lambda mod, args: (args[0] * 0,))
    h2 = m.register_forward_hook(lambda mod, args, out: calls.append(out.shape) or out + 1)
    out = m(engine.ones(1, 2))
    np.testing.assert_allclose(out._data, m.bias._data[None] + 1, rtol=1e-6)
    assert calls == [(1, 2)]
    h1.remove(), h2.remove()
    np.testing.assert_allclose(m(engine.zeros(1, 2))._data, m.bias._data[None], rtol=1e-6)


def test_repr_matches_torch(torch):
    em, tm = _pair(torch)
    assert repr(em) == repr(tm)
    assert repr(nn.Flatten()) == repr(torch.nn.Flatten())
    assert repr(nn.Sequential(nn.Linear(3, 1), nn.ReLU(inplace=True))) == repr(
        torch.nn.Sequential(torch.nn.Linear(3, 1), torch.nn.ReLU(inplace=True)))


def test_sequential_container(torch):
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    assert list(s[1:]) == [b, c] and isinstance(s[1:], nn.Sequential)
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    assert named.fc is a
    s.append(nn.ReLU())
    assert len(s) == 4
    del s[0]
    assert list(s._modules) == ["0", "1", "2"] and s[0] is b
    with pytest.raises(IndexError):
        s[10]


def test_parameter_basics():
    p = nn.Parameter(engine.zeros(2, 3))
    assert p.requires_grad and isinstance(p, engine.Tensor) and p.is_leaf
    assert repr(p).startswith("Parameter containing:\n")
    q = nn.Parameter(engine.zeros(2), requires_grad=False)
    assert not q.requires_grad
    import copy

    m = nn.Linear(2, 2)
    m2 = copy.deepcopy(m)
    assert isinstance(m2.weight, nn.Parameter) and m2.weight is not m.weight
    np.testing.assert_array_equal(m2.weight._data, m.weight._data)
    m2.weight._data[...] = 0
    assert m.weight._data.any()
