"""Learning-rate schedulers (torch.optim.lr_scheduler) in torch's chainable form.

Like torch, each ``step()`` derives the new lr from the current ``group['lr']``
(so schedulers compose under ChainedScheduler); ``step(epoch)`` and SequentialLR's
milestone restarts use the closed form. ``state_dict`` is the scheduler's
``__dict__`` without the optimizer (lambdas as None), as in torch, and contains only
numbers, strings, lists and dicts so ``engine.save`` can store it.

Layout (imports flow one way: simple and composite import base, this package imports the three):
``base`` holds LRScheduler and its helpers, ``simple`` the schedulers over one optimizer's
lrs, ``composite`` SequentialLR, ChainedScheduler and ReduceLROnPlateau.
"""
from engine.optim.lr_scheduler.base import LRScheduler
from engine.optim.lr_scheduler.composite import ChainedScheduler, ReduceLROnPlateau, SequentialLR
from engine.optim.lr_scheduler.simple import (
    ConstantLR,
    CosineAnnealingLR,
    CosineAnnealingWarmRestarts,
    ExponentialLR,
    LambdaLR,
    LinearLR,
    MultiStepLR,
    OneCycleLR,
    StepLR,
)

__all__ = [
    "ChainedScheduler",
    "ConstantLR",
    "CosineAnnealingLR",
    "CosineAnnealingWarmRestarts",
    "ExponentialLR",
    "LRScheduler",
    "LambdaLR",
    "LinearLR",
    "MultiStepLR",
    "OneCycleLR",
    "ReduceLROnPlateau",
    "SequentialLR",
    "StepLR",
]
