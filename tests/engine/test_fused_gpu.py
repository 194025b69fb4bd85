"""engine.fused's cupy kernels against the plain path (numpy on the CPU is the reference):
SGD and Adam/AdamW updates, GELU, BatchNorm (train and eval, running statistics), LayerNorm, the LSTM step, GradScaler's
unscale-and-check, and the TF32 switch. All marked gpu: they skip without cupy and a GPU."""
import numpy as np
import pytest

import engine
import engine.nn.functional as F
from engine import fused

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _gpu():
    if not engine.cuda.is_available():
        pytest.skip("needs a CUDA GPU with cupy")
    fused.set_enabled(True)
    yield
    fused.set_enabled(True)


def _host(t):
    return engine.backend.to_numpy(t._data)


def _params(rng, device, shapes=((7, 5), (5,), (3, 4, 2))):
    vals = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(4)]
    return [engine.nn.Parameter(engine.tensor(v, device=device)) for v in vals], grads


def _run_opt(device, make, steps_grads, rng_seed=0):
    ps, grads = _params(np.random.default_rng(rng_seed), device)
    opt = make(ps)
    for gs in grads[:steps_grads]:
        for p, g in zip(ps, gs):
            p.grad = engine.tensor(g, device=device)
        opt.step()
    return [_host(p) for p in ps], opt


OPTIMIZERS = {
    "sgd": lambda ps: engine.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: engine.optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01),
    "sgd_nesterov_max": lambda ps: engine.optim.SGD(ps, lr=0.05, momentum=0.8, nesterov=True, maximize=True),
    "adam": lambda ps: engine.optim.Adam(ps, lr=0.01, weight_decay=0.01),
    "adamw": lambda ps: engine.optim.AdamW(ps, lr=0.01, betas=(0.8, 0.99)),
    "adam_amsgrad": lambda ps: engine.optim.Adam(ps, lr=0.01, amsgrad=True),  # the plain path
}


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_optimizer_kernels_match_numpy(name):
    cpu, _ = _run_opt("cpu", OPTIMIZERS[name], 4)
    gpu, opt = _run_opt("cuda", OPTIMIZERS[name], 4)
    for a, b in zip(cpu, gpu):
        np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)
    if name.startswith("sgd_"):
        assert all(s["momentum_buffer"].device.type == "cuda" for s in opt.state.values())


@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_gelu_kernel_matches_plain_path(approximate, dtype):
    rng = np.random.default_rng(1)
    x = (rng.standard_normal((6, 33)) * 3).astype(dtype)
    g = rng.standard_normal((6, 33)).astype(dtype)
    out = {}
    for on in (True, False):
        fused.set_enabled(on)
        t = engine.tensor(x, device="cuda", requires_grad=True)
        y = F.gelu(t, approximate=approximate)
        y.backward(engine.tensor(g, device="cuda"))
        out[on] = (_host(y), _host(t.grad))
    tol = 1e-5 if dtype == "float32" else 2e-3
    for a, b in zip(out[True], out[False]):
        assert a.dtype == b.dtype
        np.testing.assert_allclose(a.astype(np.float32), b.astype(np.float32), rtol=tol, atol=tol)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 7), (4, 6, 5, 5)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_kernel_matches_numpy(shape, training):
    rng = np.random.default_rng(2)
    x = rng.standard_normal(shape).astype(np.float32) * 2 + 1
    g = rng.standard_normal(shape).astype(np.float32)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    rm0, rv0 = rng.standard_normal(c).astype(np.float32), (rng.random(c) + 0.5).astype(np.float32)
    res = {}
    for dev in ("cpu", "cuda"):
        xt = engine.tensor(x, device=dev, requires_grad=True)
        wt, bt = (engine.tensor(v, device=dev, requires_grad=True) for v in (w, b))
        rm, rv = engine.tensor(rm0, device=dev), engine.tensor(rv0, device=dev)
        y = F.batch_norm(xt, rm, rv, wt, bt, training=training, momentum=0.2, eps=1e-4)
        y.backward(engine.tensor(g, device=dev))
        res[dev] = [_host(t) for t in (y, xt.grad, wt.grad, bt.grad, rm, rv)]
    for a, b_ in zip(res["cpu"], res["cuda"]):
        np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)


def test_batch_norm_kernel_half_input_float_parameters():
    """autocast's BatchNorm: float16 input, float32 parameters and statistics, one kernel each
    way against the plain path (float32 compute on a float32 copy, cast back)."""
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((8, 6, 5, 5)) * 2 + 1).astype(np.float16)
    g = rng.standard_normal(x.shape).astype(np.float16)
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    res = {}
    for on in (True, False):
        fused.set_enabled(on)
        xt = engine.tensor(x, device="cuda", requires_grad=True)
        wt, bt = (engine.tensor(v, device="cuda", requires_grad=True) for v in (w, b))
        rm, rv = engine.zeros(6, device="cuda"), engine.ones(6, device="cuda")
        y = F.batch_norm(xt, rm, rv, wt, bt, training=True)
        y.backward(engine.tensor(g, device="cuda"))
        res[on] = [_host(t) for t in (y, xt.grad, wt.grad, bt.grad, rm, rv)]
    for a, b_ in zip(res[True], res[False]):
        assert a.dtype == b_.dtype
        np.testing.assert_allclose(a.astype(np.float32), b_.astype(np.float32), rtol=2e-3, atol=2e-3)


@pytest.mark.parametrize("shape, norm, affine", [((4, 7, 16), (16,), True), ((3, 5, 6), (5, 6), True),
                                                 ((9, 33), (33,), False)])
def test_layer_norm_kernel_matches_numpy(shape, norm, affine):
    rng = np.random.default_rng(3)
    x = rng.standard_normal(shape).astype(np.float32) * 3 - 1
    g = rng.standard_normal(shape).astype(np.float32)
    w, b = rng.standard_normal(norm).astype(np.float32), rng.standard_normal(norm).astype(np.float32)
    res = {}
    for dev in ("cpu", "cuda"):
        xt = engine.tensor(x, device=dev, requires_grad=True)
        wt = engine.tensor(w, device=dev, requires_grad=True) if affine else None
        bt = engine.tensor(b, device=dev, requires_grad=True) if affine else None
        y = F.layer_norm(xt, norm, wt, bt, eps=1e-5)
        y.backward(engine.tensor(g, device=dev))
        res[dev] = [_host(y), _host(xt.grad)] + ([_host(wt.grad), _host(bt.grad)] if affine else [])
    for a, b_ in zip(res["cpu"], res["cuda"]):
        np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_kernels_match_numpy(bidirectional):
    """nn.LSTM (2 layers, batch_first) on cuda through the fused step kernels against numpy:
    outputs, final states and every gradient."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((3, 7, 5)).astype(np.float32)
    engine.manual_seed(0)
    cpu = engine.nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=bidirectional)
    gpu = engine.nn.LSTM(5, 8, num_layers=2, batch_first=True, bidirectional=bidirectional)
    gpu.load_state_dict(cpu.state_dict())
    gpu.to("cuda")
    res = {}
    for dev, m in (("cpu", cpu), ("cuda", gpu)):
        xt = engine.tensor(x, device=dev, requires_grad=True)
        out, (h, c) = m(xt)
        (out.sum() + (h * h).sum() + (c * 0.5).sum()).backward()
        res[dev] = [_host(out), _host(h), _host(c), _host(xt.grad)] + [_host(p.grad) for p in m.parameters()]
    for a, b_ in zip(res["cpu"], res["cuda"]):
        np.testing.assert_allclose(b_, a, rtol=1e-4, atol=1e-5)


def test_unscale_kernel_flags_non_finite_and_unscales():
    import cupy

    g = cupy.asarray(np.array([1.0, 2.0, np.inf, 4.0], np.float32))
    found = cupy.zeros(1, np.float32)
    assert fused.unscale_check_(cupy, g, 0.5, found)
    assert float(found) == 1.0
    np.testing.assert_array_equal(cupy.asnumpy(g)[[0, 1, 3]], [0.5, 1.0, 2.0])
    clean = cupy.ones(5, np.float32)
    found[...] = 0
    fused.unscale_check_(cupy, clean, 0.25, found)
    assert float(found) == 0.0 and float(clean.sum()) == 1.25


def test_grad_scaler_on_gpu_matches_cpu():
    seqs = {}
    for dev in ("cpu", "cuda"):
        p = engine.nn.Parameter(engine.ones(3, device=dev))
        opt = engine.optim.SGD([p], lr=0.1)
        s = engine.amp.GradScaler(dev, init_scale=8.0, growth_interval=2)
        s.scale(engine.ones((), device=dev))
        out = []
        for i in range(6):
            g = np.full(3, s.get_scale(), np.float32)
            if i == 2:
                g[1] = np.nan
            p.grad = engine.tensor(g, device=dev)
            s.step(opt)
            s.update()
            out.append((s.get_scale(), _host(p).tolist()))
        seqs[dev] = out
    assert seqs["cpu"] == seqs["cuda"]


def test_tf32_switch_sets_cupy_compute_type():
    import cupy
    from cupy._core import _routines_linalg as rl

    try:
        engine.backends.cuda.matmul.allow_tf32 = True
        assert rl.get_compute_type(np.float32) == rl.COMPUTE_TYPE_TF32 or \
            int(cupy.cuda.Device().compute_capability) < 80
        engine.set_float32_matmul_precision("highest")
        assert not engine.backends.cuda.matmul.allow_tf32
        assert rl.get_compute_type(np.float32) == rl.COMPUTE_TYPE_DEFAULT
    finally:
        engine.backends.cuda.matmul.allow_tf32 = False
