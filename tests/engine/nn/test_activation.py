"""Activation layers against torch (forward and gradient, float64)."""
import pytest

from engine import nn

CASES = [
    ("ReLU", (), {}), ("ReLU6", (), {}), ("LeakyReLU", (0.2,), {}), ("ELU", (0.7,), {}),
    ("CELU", (1.3,), {}), ("SELU", (), {}), ("GELU", (), {}), ("GELU", (), {"approximate": "tanh"}),
    ("SiLU", (), {}), ("Mish", (), {}), ("Sigmoid", (), {}), ("Tanh", (), {}),
    ("Softmax", (1,), {}), ("LogSoftmax", (-1,), {}), ("Softmin", (0,), {}), ("Softplus", (), {}),
    ("Softplus", (2.0, 3.0), {}), ("Hardtanh", (-0.5, 0.7), {}), ("Hardswish", (), {}),
    ("Hardsigmoid", (), {}), ("LogSigmoid", (), {}), ("Softsign", (), {}), ("Tanhshrink", (), {}),
    ("Threshold", (0.1, -2.0), {}), ("GLU", (1,), {}),
]


@pytest.mark.parametrize("name,args,kwargs", CASES, ids=[c[0] + str(i) for i, c in enumerate(CASES)])
def test_activation_matches_torch(torch, oracle, rng, name, args, kwargs):
    x = rng.standard_normal((4, 6)) * 3
    x[0, :3] = [-3.0, 3.0, 30.0]  # hardswish kinks and softplus's linear region
    em = getattr(nn, name)(*args, **kwargs)
    tm = getattr(torch.nn, name)(*args, **kwargs)
    # torch's CELU backward rounds 1/alpha to float32 (derivatives.yaml), hence its tolerance
    oracle.compare(em, tm, x, rtol=1e-6 if name == "CELU" else 1e-7)
    assert repr(em) == repr(tm)


def test_softmax_implicit_dim_warns(torch, oracle, rng):
    with pytest.warns(UserWarning):
        oracle.compare(nn.Softmax(), torch.nn.Softmax(), rng.standard_normal((3, 4)))
