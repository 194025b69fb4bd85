"""engine.amp.GradScaler against torch.amp.GradScaler("cpu"): identical gradients with injected
infs and NaNs give the same scale sequence, the same skipped steps and the same weights."""
import numpy as np
import pytest

import engine

KW = {"init_scale": 2.0**10, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 3}


def _run(mod, grads, scaler_kw, opt="SGD"):
    """Drives one parameter through scaler.step/update with the given (unscaled) gradients,
    set as scale * g like a scaled backward would make them. Returns scales, steps, weights."""
    p = mod.nn.Parameter(mod.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)))
    optim = getattr(mod.optim, opt)([p], lr=0.1, **({"momentum": 0.9} if opt == "SGD" else {}))
    scaler = (engine.amp.GradScaler if mod is engine else mod.amp.GradScaler)("cpu", **scaler_kw)
    scaler.scale(mod.ones(()))  # the first scale() makes the scale tensor
    scales, stepped, weights = [], [], []
    for g in grads:
        before = p.detach().numpy().copy()
        p.grad = mod.tensor((g * np.float32(scaler.get_scale())).astype(np.float32))
        scaler.step(optim)
        scaler.update()
        scales.append(scaler.get_scale())
        stepped.append(not np.array_equal(before, p.detach().numpy()))
        weights.append(p.detach().numpy().copy())
    return scales, stepped, weights, scaler.state_dict()


def _grads(pattern):
    rng = np.random.default_rng(0)
    out = []
    for kind in pattern:
        g = rng.standard_normal((2, 3)).astype(np.float32)
        if kind == "inf":
            g[0, 1] = np.inf
        elif kind == "nan":
            g[1, 2] = np.nan
        out.append(g)
    return out


@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_scale_sequence_skips_and_weights_match_torch(torch, opt):
    pattern = ["ok", "ok", "ok", "ok", "inf", "ok", "nan", "ok", "ok", "ok", "ok", "ok", "ok", "inf", "inf"]
    grads = _grads(pattern)
    es, estep, ew, esd = _run(engine, grads, KW, opt)
    ts, tstep, tw, tsd = _run(torch, grads, KW, opt)
    assert es == ts
    assert estep == tstep == [k == "ok" for k in pattern]
    for a, b in zip(ew, tw):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert esd == tsd


def test_growth_is_not_applied_when_it_overflows(torch):
    kw = {"init_scale": 3.0e38, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 1}
    grads = [np.full((2, 3), 1e-30, np.float32)] * 3
    es, _, _, esd = _run(engine, grads, kw)
    ts, _, _, tsd = _run(torch, grads, kw)
    assert es == ts and esd == tsd


def test_scale_backward_and_unscale_before_clipping_match_torch(torch):
    """scale(loss).backward() gives scale x the gradient; unscale_ then clip_grad_norm_ then
    step equals torch's (the optimizer sees the unscaled, clipped gradient)."""
    rng = np.random.default_rng(5)
    w = rng.standard_normal((3, 4)).astype(np.float32)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    res = {}
    for mod in (engine, torch):
        lin = mod.nn.Linear(4, 3, bias=False)
        with mod.no_grad():
            lin.weight.copy_(mod.tensor(w))
        opt = mod.optim.SGD(lin.parameters(), lr=0.5)
        scaler = (engine.amp.GradScaler if mod is engine else mod.amp.GradScaler)("cpu", init_scale=256.0)
        loss = (lin(mod.tensor(x)) ** 2).mean()
        scaler.scale(loss).backward()
        scaled = lin.weight.grad.numpy().copy()
        scaler.unscale_(opt)
        mod.nn.utils.clip_grad_norm_(lin.parameters(), 0.1)
        scaler.step(opt)
        scaler.update()
        res[mod.__name__] = (scaled, lin.weight.detach().numpy().copy(), scaler.get_scale())
    e, t = res["engine"], res["torch"]
    np.testing.assert_allclose(e[0], t[0], rtol=1e-5)
    np.testing.assert_allclose(e[1], t[1], rtol=1e-5, atol=1e-6)
    assert e[2] == t[2]


def test_scale_of_nested_outputs():
    s = engine.amp.GradScaler("cpu", init_scale=4.0)
    a, (b, c) = s.scale([engine.ones(2), (engine.ones(()), engine.tensor(2.0))])
    assert a.tolist() == [4.0, 4.0] and b.item() == 4.0 and c.item() == 8.0
    with pytest.raises(ValueError, match="iterable of Tensors"):
        s.scale(3.0)


def test_misuse_is_refused_as_torch_does():
    p = engine.nn.Parameter(engine.ones(2))
    opt = engine.optim.SGD([p], lr=0.1)
    s = engine.amp.GradScaler("cpu")
    with pytest.raises(RuntimeError, match="_scale is None"):
        s.step(opt)
    s.scale(engine.ones(()))
    p.grad = engine.ones(2)
    s.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        s.unscale_(opt)
    s.step(opt)
    with pytest.raises(RuntimeError, match="step\\(\\) has already been called"):
        s.step(opt)
    with pytest.raises(RuntimeError, match="after step"):
        s.unscale_(opt)
    s.update()
    p.grad = engine.ones(2, dtype=engine.float16)
    with pytest.raises(ValueError, match="FP16 gradients"):
        s.unscale_(opt)
    with pytest.raises(RuntimeError, match="Closure"):
        s.step(opt, closure=lambda: None)


def test_state_dict_round_trip_and_disabled_scaler(torch):
    s = engine.amp.GradScaler("cpu", init_scale=8.0, growth_interval=5)
    s.scale(engine.ones(()))
    s.load_state_dict({"scale": 32.0, "growth_factor": 3.0, "backoff_factor": 0.25,
                       "growth_interval": 7, "_growth_tracker": 4})
    assert s.get_scale() == 32.0 and s.get_growth_factor() == 3.0 and s.get_growth_interval() == 7
    assert s.state_dict() == {"scale": 32.0, "growth_factor": 3.0, "backoff_factor": 0.25,
                              "growth_interval": 7, "_growth_tracker": 4}
    t = torch.amp.GradScaler("cpu")
    t.load_state_dict(s.state_dict())
    assert t.state_dict() == s.state_dict()
    off = engine.amp.GradScaler("cpu", enabled=False)
    assert off.state_dict() == {} and off.get_scale() == 1.0 and not off.is_enabled()
    loss = engine.ones(())
    assert off.scale(loss) is loss
    with pytest.raises(RuntimeError, match="state dict is empty"):
        engine.amp.GradScaler("cpu").load_state_dict({})
    with pytest.raises(ValueError, match="growth factor"):
        engine.amp.GradScaler("cpu", growth_factor=1.0)


@pytest.mark.skipif(engine.cuda.is_available(), reason="checks the no-GPU fallback")
def test_cuda_scaler_without_gpu_warns_and_disables():
    with pytest.warns(UserWarning, match="CUDA is not available"):
        s = engine.amp.GradScaler()
    assert not s.is_enabled()


def _amp_training(mod, F, autocast, scaler, x, t, w1, w2, steps):
    """An MLP trained with autocast + GradScaler (the torch recipe); returns per step the loss,
    the scale after update() and whether the optimizer stepped."""
    a = mod.nn.Parameter(mod.tensor(w1))
    b = mod.nn.Parameter(mod.tensor(w2))
    opt = mod.optim.SGD([a, b], lr=0.05, momentum=0.9)
    log = []
    for i in range(steps):
        opt.zero_grad()
        with autocast():
            loss = F.cross_entropy(F.linear(F.relu(F.linear(mod.tensor(x[i]), a)), b), mod.tensor(t[i]))
        before = a.detach().numpy().copy()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        log.append((round(float(loss.item()), 3), scaler.get_scale(),
                    not np.array_equal(before, a.detach().numpy())))
    return log


def test_autocast_training_with_scaler_matches_torch(torch):
    """float16 autocast on the CPU with a scale that overflows the float16 gradients at first:
    the same steps are skipped, the scale backs off and then grows the same way, and the
    losses follow torch's."""
    rng = np.random.default_rng(7)
    steps = 14
    x = rng.standard_normal((steps, 16, 12)).astype(np.float32)
    t = rng.integers(0, 4, (steps, 16))
    w1 = (rng.standard_normal((24, 12)) * 0.3).astype(np.float32)
    w2 = (rng.standard_normal((4, 24)) * 0.3).astype(np.float32)
    kw = {"init_scale": 2.0**24, "growth_interval": 4}
    e = _amp_training(engine, engine.nn.functional, lambda: engine.autocast("cpu"),
                      engine.amp.GradScaler("cpu", **kw), x, t, w1, w2, steps)
    tt = _amp_training(torch, torch.nn.functional, lambda: torch.autocast("cpu", dtype=torch.float16),
                       torch.amp.GradScaler("cpu", **kw), x, t, w1, w2, steps)
    assert [s for _, s, _ in e] == [s for _, s, _ in tt]
    assert [k for _, _, k in e] == [k for _, _, k in tt]
    assert not e[0][2] and any(k for _, _, k in e)  # skipped at first, stepping later
    np.testing.assert_allclose([v for v, _, _ in e], [v for v, _, _ in tt], atol=2e-3)
