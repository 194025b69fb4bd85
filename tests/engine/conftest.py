"""Engine test fixtures: the torch oracle and the array-module parametrization.

With TRAINYARD_REQUIRE_TORCH=1 (CI sets it) a missing torch is an error, not a skip.
"""
import importlib
import os

import numpy as np
import pytest


def _import_torch():
    try:
        return importlib.import_module("torch")
    except ImportError:
        if os.environ.get("TRAINYARD_REQUIRE_TORCH") == "1":
            raise
        return None


_torch = _import_torch()


@pytest.fixture(scope="session")
def torch():
    """PyTorch, the oracle; skips (or fails under TRAINYARD_REQUIRE_TORCH=1) without it."""
    if _torch is None:
        pytest.skip("torch is not installed")
    _torch.set_num_threads(1)
    return _torch


def _cupy_available() -> bool:
    try:
        import cupy

        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


HAS_GPU = _cupy_available()

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


@pytest.fixture(params=DEVICES)
def device(request):
    """Runs a test on 'cpu' and, where a GPU and cupy exist, on 'cuda'."""
    if request.param == "cuda" and not HAS_GPU:
        pytest.skip("no CUDA GPU with cupy")
    return request.param


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _fresh_global_rngs():
    """Every test starts from the same global RNG states (engine's default generator at its
    default seed, torch's and numpy's legacy global one at 0), so draws a test does not seed
    itself (module initialisation, dropout, samplers) are the same in every run, whichever
    tests ran before it. Tests still take their data from explicitly seeded generators (the
    ``rng`` fixture, engine.Generator().manual_seed(...))."""
    import engine

    engine.manual_seed(engine.Generator().initial_seed())
    np.random.seed(0)
    if _torch is not None:
        _torch.manual_seed(0)


class _Oracle:
    """Helpers to run an engine module and its torch twin on the same weights and inputs."""

    def __init__(self, torch):
        self.torch = torch

    def to_engine(self, t, requires_grad=False):
        import engine

        return engine.tensor(t.detach().cpu().numpy(), requires_grad=requires_grad)

    def to_torch(self, x, requires_grad=False):
        arr = np.array(x._data if hasattr(x, "_data") else x)
        return self.torch.tensor(arr, requires_grad=requires_grad)

    def copy_weights(self, em, tm):
        """engine -> torch through numpy, with torch's strict key check."""
        sd = {k: self.torch.from_numpy(np.array(v._data)) for k, v in em.state_dict().items()}
        tm.load_state_dict(sd, strict=True)

    def compare(self, em, tm, *inputs, rtol=1e-7, atol=1e-10, grad=True, seed=0):
        """Forward both on float inputs (np arrays); compare outputs, input and parameter grads."""
        import engine

        em.zero_grad()
        tm.zero_grad()
        ein = [engine.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in inputs]
        tin = [self.torch.tensor(a, requires_grad=grad and a.dtype.kind == "f") for a in inputs]
        eo, to = em(*ein), tm(*tin)
        eos = eo if isinstance(eo, (tuple, list)) else (eo,)
        tos = to if isinstance(to, (tuple, list)) else (to,)
        for a, b in zip(eos, tos):
            np.testing.assert_allclose(np.asarray(a._data), b.detach().numpy(), rtol=rtol, atol=atol)
        if not grad:
            return eo, to
        rng = np.random.default_rng(seed)
        e_loss, t_loss = 0, 0
        for a, b in zip(eos, tos):
            if not b.requires_grad:
                continue
            g = rng.standard_normal(b.shape).astype(b.detach().numpy().dtype)
            e_loss = e_loss + (a * engine.tensor(g)).sum()
            t_loss = t_loss + (b * self.torch.tensor(g)).sum()
        e_loss.backward()
        t_loss.backward()
        for x, y in zip(ein, tin):
            if y.grad is not None:
                np.testing.assert_allclose(np.asarray(x.grad._data), y.grad.numpy(), rtol=rtol, atol=atol)
        tparams = dict(tm.named_parameters())
        for name, p in em.named_parameters():
            if tparams[name].grad is None:
                assert p.grad is None, name
                continue
            np.testing.assert_allclose(np.asarray(p.grad._data), tparams[name].grad.numpy(),
                                       rtol=rtol, atol=atol, err_msg=name)
        return eo, to


@pytest.fixture
def oracle(torch):
    """An _Oracle: engine/torch twins compared on outputs and gradients."""
    return _Oracle(torch)


# ----- the differential oracle: engine vs torch, forward and backward in one call -----------
TOLS = {"float64": (1e-10, 1e-12), "float32": (1e-5, 1e-6), "float16": (1e-2, 1e-3)}


def _to_np(x):
    import engine

    if isinstance(x, engine.Tensor):
        return engine.backend.to_numpy(x._data)
    return x.detach().cpu().numpy()


def _compare(e_out, t_out, rtol, atol, what):
    import engine

    if isinstance(t_out, (tuple, list)):
        assert isinstance(e_out, (tuple, list)), f"{what}: engine gave {type(e_out)}"
        assert len(e_out) == len(t_out), f"{what}: {len(e_out)} outputs vs {len(t_out)}"
        for i, (a, b) in enumerate(zip(e_out, t_out)):
            _compare(a, b, rtol, atol, f"{what}[{i}]")
        return
    if not isinstance(e_out, engine.Tensor):
        assert e_out == t_out or np.isclose(e_out, t_out, rtol=rtol, atol=atol), (what, e_out, t_out)
        return
    a, b = _to_np(e_out), _to_np(t_out)
    assert tuple(a.shape) == tuple(b.shape), f"{what}: shape {a.shape} vs torch {b.shape}"
    assert str(a.dtype) == str(b.dtype), f"{what}: dtype {a.dtype} vs torch {b.dtype}"
    if a.dtype.kind in "biu":
        np.testing.assert_array_equal(a, b, err_msg=what)
    else:
        if rtol is None:
            rtol, atol = TOLS[str(a.dtype)]
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


def check_op(torch, fn, shapes, dtype="float64", device="cpu", low=-2.0, high=2.0, grad=True,
             inputs=None, seed=0, rtol=None, atol=None):
    """tinygrad's helper_test_op: run ``fn(lib, *xs)`` with lib = torch and lib = engine on the
    same random inputs; compare outputs (values, shape, dtype) and the gradients of
    sum(out * w) with respect to every floating input. Returns the engine outputs."""
    import engine

    r = np.random.default_rng(seed)
    if inputs is None:
        inputs = []
        for s in shapes:
            if dtype in ("int64", "int32"):
                inputs.append(r.integers(int(low), int(high) + 1, size=s).astype(dtype))
            elif dtype == "bool":
                inputs.append(r.random(s) > 0.5)
            else:
                inputs.append(r.uniform(low, high, size=s).astype(dtype))
    inputs = [np.asarray(x) for x in inputs]
    tx = [torch.tensor(x, requires_grad=grad and x.dtype.kind == "f") for x in inputs]
    ex = [engine.tensor(x, device=device, requires_grad=grad and x.dtype.kind == "f")
          for x in inputs]
    t_out = fn(torch, *tx)
    e_out = fn(engine, *ex)
    _compare(e_out, t_out, rtol, atol, "forward")
    if not grad:
        return e_out
    t_outs = t_out if isinstance(t_out, (tuple, list)) else [t_out]
    e_outs = e_out if isinstance(e_out, (tuple, list)) else [e_out]
    t_loss, e_loss = 0, 0
    for to, eo in zip(t_outs, e_outs):
        if isinstance(to, torch.Tensor) and to.requires_grad:
            w = r.uniform(0.5, 1.5, size=tuple(to.shape)).astype(str(to.dtype).split(".")[1])
            t_loss = t_loss + (to * torch.tensor(w)).sum()
            e_loss = e_loss + (eo * engine.tensor(w, device=device)).sum()
    if isinstance(t_loss, int):
        return e_out
    t_loss.backward()
    e_loss.backward()
    for i, (a, b) in enumerate(zip(ex, tx)):
        if b.grad is None:
            assert a.grad is None or not np.any(_to_np(a.grad)), f"grad[{i}]: torch has none"
            continue
        assert a.grad is not None, f"grad[{i}]: engine has none"
        _compare(a.grad, b.grad, rtol, atol, f"grad[{i}]")
    return e_out


@pytest.fixture
def helper_test_op(torch, device):
    """check_op bound to the torch oracle and the parametrized device."""
    def run(fn, shapes=(), **kw):
        kw.setdefault("device", device)
        return check_op(torch, fn, shapes, **kw)
    return run
