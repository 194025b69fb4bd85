"""Exact resume: a run interrupted after any step and resumed from model, optimizer,
scheduler, RNG and sampler state (through engine.save / engine.load) ends with the same
weights, bitwise, as the uninterrupted run."""
import io
import itertools

import numpy as np
import pytest

import engine
from engine import nn, optim
from engine.utils.data import DataLoader, TensorDataset

EPOCHS, N, BATCH = 3, 36, 8  # 5 batches per epoch, the last one short: 15 steps


def _data():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((N, 6)).astype(np.float32)
    y = rng.integers(0, 3, N)
    return TensorDataset(engine.tensor(x), engine.tensor(y))


def _train(shared_rng, checkpoint=None, stop_after=None):
    """The training script: returns the final state (or a checkpoint when told to stop)."""
    engine.manual_seed(0)  # initialization
    model = nn.Sequential(nn.Linear(6, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    opt = optim.AdamW(model.parameters(), lr=0.01, amsgrad=True)
    warm = optim.lr_scheduler.LinearLR(opt, start_factor=0.2, total_iters=4)
    cos = optim.lr_scheduler.CosineAnnealingLR(opt, T_max=11)
    sched = optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[4])
    gen = None if shared_rng else engine.Generator().manual_seed(1)
    loader = DataLoader(_data(), batch_size=BATCH, shuffle=True, generator=gen)
    start_epoch, skip = 0, 0
    engine.manual_seed(12345)  # a restarted process has some other RNG state
    if checkpoint is not None:
        ck = engine.load(io.BytesIO(checkpoint))
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optim"])
        sched.load_state_dict(ck["sched"])
        start_epoch, skip = ck["sampler"]["epoch"], ck["sampler"]["batch"]
        (engine.random.default_generator if gen is None else gen).set_state(ck["sampler"]["generator"])
    step = 0
    for epoch in range(start_epoch, EPOCHS):
        sampler_state = (engine.random.default_generator if gen is None else gen).get_state()
        batches = iter(loader)  # the epoch's permutation is drawn from sampler_state
        if checkpoint is not None and epoch == start_epoch:
            batches = itertools.islice(batches, skip, None)
            first = next(batches, None)  # draws the permutation, skips the batches already trained
            engine.set_rng_state(ck["rng"])  # after the permutation draw, for dropout
            batches = itertools.chain([] if first is None else [first], batches)
            step = ck["step"]
        for b, (x, y) in enumerate(batches, start=skip if checkpoint is not None and epoch == start_epoch else 0):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            sched.step()
            step += 1
            if step == stop_after:
                buf = io.BytesIO()
                engine.save({"model": model.state_dict(), "optim": opt.state_dict(), "sched": sched.state_dict(),
                             "rng": engine.get_rng_state(), "step": step,
                             "sampler": {"epoch": epoch, "batch": b + 1, "generator": sampler_state}}, buf)
                return buf.getvalue()
    return model.state_dict(), opt.state_dict(), sched.get_last_lr()


@pytest.mark.parametrize("shared_rng", [False, True], ids=["own-generator", "global-generator"])
def test_interrupted_and_resumed_equals_uninterrupted_bitwise(shared_rng):
    ref_model, ref_opt, ref_lr = _train(shared_rng)
    for stop in (1, 5, 7, 14):  # first step, an epoch boundary, mid-epoch, the one before last
        ck = _train(shared_rng, stop_after=stop)
        model, opt_state, lr = _train(shared_rng, checkpoint=ck)
        assert lr == ref_lr
        for k, v in ref_model.items():
            assert np.array_equal(model[k]._data, v._data), (stop, k)
        for i, s in ref_opt["state"].items():
            for k, v in s.items():
                assert np.array_equal(opt_state["state"][i][k]._data, v._data), (stop, i, k)
    different, *_ = _train(not shared_rng)
    assert not all(np.array_equal(different[k]._data, v._data) for k, v in ref_model.items())
