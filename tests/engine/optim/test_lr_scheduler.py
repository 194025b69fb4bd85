"""lr_scheduler against torch: lr sequences (and momentum for OneCycleLR), composites,
ReduceLROnPlateau, step(epoch), and state_dict resume through engine.save/load."""
import io
import math

import pytest

import engine
from engine import nn, optim

CASES = [
    ("StepLR", {"step_size": 4, "gamma": 0.5}),
    ("MultiStepLR", {"milestones": [3, 10, 10, 20], "gamma": 0.3}),
    ("ExponentialLR", {"gamma": 0.9}),
    ("CosineAnnealingLR", {"T_max": 12, "eta_min": 0.001}),
    ("LinearLR", {"start_factor": 0.25, "total_iters": 7}),
    ("LinearLR", {"start_factor": 1.0, "end_factor": 0.1, "total_iters": 9}),
    ("ConstantLR", {"factor": 0.5, "total_iters": 3}),
    ("LambdaLR", {"lr_lambda": lambda e: 1 / (1 + e)}),
    ("CosineAnnealingWarmRestarts", {"T_0": 5, "eta_min": 0.01}),
    ("CosineAnnealingWarmRestarts", {"T_0": 3, "T_mult": 2}),
    ("OneCycleLR", {"max_lr": 0.5, "total_steps": 40}),
    ("OneCycleLR", {"max_lr": [0.5, 0.2], "epochs": 4, "steps_per_epoch": 10, "pct_start": 0.25,
                        "anneal_strategy": "linear", "three_phase": True}),
]
EPOCHS = 40


def _pair(torch, name="SGD", **kw):
    kw = kw or {"lr": 0.1, "momentum": 0.9}
    ep = [nn.Parameter(engine.ones(1)), nn.Parameter(engine.ones(2))]
    tp = [torch.nn.Parameter(torch.ones(1)), torch.nn.Parameter(torch.ones(2))]
    eopt = getattr(optim, name)([{"params": ep[:1]}, {"params": ep[1:], "lr": 0.05}], **kw)
    topt = getattr(torch.optim, name)([{"params": tp[:1]}, {"params": tp[1:], "lr": 0.05}], **kw)
    return eopt, topt


def _groups_match(eopt, topt):
    for eg, tg in zip(eopt.param_groups, topt.param_groups):
        assert eg["lr"] == pytest.approx(tg["lr"], rel=1e-12, abs=1e-15)
        for k in ("momentum", "betas"):
            if k in tg:
                assert eg[k] == pytest.approx(tg[k], rel=1e-12)


def _same_lrs(e, t):
    assert e.get_last_lr() == pytest.approx(t.get_last_lr(), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("name,kw", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
@pytest.mark.parametrize("opt", ["SGD", "Adam"])
def test_lr_sequence_matches_torch(torch, name, kw, opt):
    eopt, topt = _pair(torch, opt, lr=0.1)
    es = getattr(optim.lr_scheduler, name)(eopt, **kw)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for _ in range(EPOCHS):
        _same_lrs(es, ts)
        _groups_match(eopt, topt)
        eopt.step(), topt.step()
        es.step(), ts.step()
    _same_lrs(es, ts)


@pytest.mark.parametrize("name,kw", [c for c in CASES if c[0] != "LambdaLR"],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES) if c[0] != "LambdaLR"])
def test_state_dict_resume_through_engine_save(torch, name, kw):
    """Half a schedule, save the scheduler and optimizer, load into fresh objects, finish:
    the same lrs as torch's uninterrupted run."""
    eopt, topt = _pair(torch)
    es = getattr(optim.lr_scheduler, name)(eopt, **kw)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for _ in range(EPOCHS // 2):
        eopt.step(), topt.step(), es.step(), ts.step()
    buf = io.BytesIO()
    engine.save({"sched": es.state_dict(), "opt": eopt.state_dict()}, buf)
    buf.seek(0)
    ck = engine.load(buf)
    eopt2, _ = _pair(torch)
    es2 = getattr(optim.lr_scheduler, name)(eopt2, **kw)
    eopt2.load_state_dict(ck["opt"])
    es2.load_state_dict(ck["sched"])
    for _ in range(EPOCHS // 2):
        _same_lrs(es2, ts)
        _groups_match(eopt2, topt)
        eopt2.step(), topt.step(), es2.step(), ts.step()
    _same_lrs(es2, ts)


def _build_composite(lib, opt, kind):
    s = lib.optim.lr_scheduler
    if kind == "sequential":
        parts = [s.LinearLR(opt, start_factor=0.1, total_iters=4), s.ExponentialLR(opt, gamma=0.9),
                 s.CosineAnnealingLR(opt, T_max=6)]
        return s.SequentialLR(opt, parts, milestones=[5, 12])
    if kind == "chained":
        return s.ChainedScheduler([s.ConstantLR(opt, factor=0.5, total_iters=3), s.ExponentialLR(opt, gamma=0.9),
                                   s.StepLR(opt, step_size=4, gamma=0.5)])
    if kind == "chain-of-seq":
        seq = s.SequentialLR(opt, [s.ConstantLR(opt, factor=0.2, total_iters=5), s.MultiStepLR(opt, [2, 4])],
                             milestones=[3])
        return s.ChainedScheduler([s.ExponentialLR(opt, gamma=0.95), seq])
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["sequential", "chained", "chain-of-seq"])
def test_composites_match_torch_and_resume(torch, kind):
    eopt, topt = _pair(torch)
    es, ts = _build_composite(engine, eopt, kind), _build_composite(torch, topt, kind)
    for i in range(30):
        _same_lrs(es, ts)
        _groups_match(eopt, topt)
        eopt.step(), topt.step(), es.step(), ts.step()
        if i == 10:
            buf = io.BytesIO()
            engine.save(es.state_dict(), buf)
            eopt_state = eopt.state_dict()
            eopt, _ = _pair(torch)
            es = _build_composite(engine, eopt, kind)  # torch's order: build, then load both
            eopt.load_state_dict(eopt_state)
            es.load_state_dict(engine.load(io.BytesIO(buf.getvalue())))


def test_reduce_lr_on_plateau_matches_torch(torch):
    metrics = [1.0, 0.9, 0.9, 0.95, 0.91, 0.9, 0.89999, 0.8, 0.8, 0.8, 0.8, 0.85, 0.8, 0.8, 0.8, 0.7] * 3
    for kw in ({"patience": 2}, {"mode": "max", "factor": 0.5, "patience": 1, "threshold": 0.01,
                                 "threshold_mode": "abs", "cooldown": 2, "min_lr": [0.01, 0.03]}):
        eopt, topt = _pair(torch)
        es = optim.lr_scheduler.ReduceLROnPlateau(eopt, **kw)
        ts = torch.optim.lr_scheduler.ReduceLROnPlateau(topt, **kw)
        for i, m in enumerate(metrics):
            es.step(m), ts.step(m)
            _same_lrs(es, ts)
            _groups_match(eopt, topt)
            assert (es.best, es.num_bad_epochs, es.cooldown_counter) == (ts.best, ts.num_bad_epochs,
                                                                         ts.cooldown_counter)
            if i == 20:
                es2 = optim.lr_scheduler.ReduceLROnPlateau(eopt, **kw)
                buf = io.BytesIO()
                engine.save(es.state_dict(), buf)
                es2.load_state_dict(engine.load(io.BytesIO(buf.getvalue())))
                es = es2
    with pytest.raises(ValueError):
        optim.lr_scheduler.ReduceLROnPlateau(eopt, factor=1.0)


@pytest.mark.filterwarnings("ignore:The epoch parameter")
def test_step_with_epoch_uses_closed_form(torch):
    for name, kw in [("StepLR", {"step_size": 3}), ("CosineAnnealingLR", {"T_max": 10}),
                     ("MultiStepLR", {"milestones": [2, 5]}), ("CosineAnnealingWarmRestarts", {"T_0": 4, "T_mult": 2})]:
        eopt, topt = _pair(torch)
        es = getattr(optim.lr_scheduler, name)(eopt, **kw)
        ts = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
        for epoch in (7, 2, 11.5 if name == "CosineAnnealingWarmRestarts" else 11, 0):
            ts.step(epoch)
            es.step(epoch)
            _same_lrs(es, ts)


def test_validation():
    opt = optim.SGD([nn.Parameter(engine.ones(1))], lr=0.1)
    s = optim.lr_scheduler
    with pytest.raises(ValueError):
        s.CosineAnnealingWarmRestarts(opt, T_0=0)
    with pytest.raises(ValueError):
        s.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError):
        s.OneCycleLR(optim.Adagrad([nn.Parameter(engine.ones(1))]), max_lr=1.0, total_steps=5)
    with pytest.raises(ValueError):
        s.SequentialLR(opt, [s.StepLR(opt, 2)], milestones=[3])
    with pytest.raises(ValueError):
        s.ChainedScheduler([s.ReduceLROnPlateau(opt)])
    one = s.OneCycleLR(opt, max_lr=1.0, total_steps=2)
    opt.step(), one.step(), opt.step(), one.step()
    with pytest.raises(ValueError):
        one.step()
    assert math.isfinite(one.get_last_lr()[0])
