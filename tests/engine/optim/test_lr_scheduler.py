"""lr_scheduler against torch: the lr sequence over 30 epochs and state_dict resume."""
import pytest

import engine
from engine import nn, optim

CASES = [
    ("StepLR", dict(step_size=4, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 10, 20], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.9)),
    ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
    ("LinearLR", dict(start_factor=0.25, total_iters=7)),
    ("ConstantLR", dict(factor=0.5, total_iters=3)),
    ("LambdaLR", dict(lr_lambda=lambda e: 1 / (1 + e))),
]


@pytest.mark.parametrize("name,kw", CASES, ids=[c[0] for c in CASES])
def test_lr_sequence_matches_torch(torch, name, kw):
    eopt = optim.SGD([nn.Parameter(engine.ones(1))], lr=0.1, momentum=0.9)
    topt = torch.optim.SGD([torch.nn.Parameter(torch.ones(1))], lr=0.1, momentum=0.9)
    es = getattr(optim.lr_scheduler, name)(eopt, **kw)
    ts = getattr(torch.optim.lr_scheduler, name)(topt, **kw)
    for _ in range(30):
        assert es.get_last_lr() == pytest.approx(ts.get_last_lr(), rel=1e-12, abs=1e-15)
        eopt.step(), topt.step()
        es.step(), ts.step()
    state = es.state_dict()
    es2 = getattr(optim.lr_scheduler, name)(eopt, **kw)
    es2.load_state_dict(state)
    assert es2.last_epoch == 30
