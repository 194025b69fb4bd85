"""What a plan turns into on the worker: the heads' loss modules, the optimizer and the
learning-rate scheduler, built from the plan's typed configs with no defaults of their own."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import engine
from engine import nn, optim
from plan import HeadPlan
from plan.request import SchedulerConfig, TrainingConfig


@dataclass
class Head:
    """One output head: the model output it reads, its loss and weight, its metrics."""

    name: str
    target: str
    task: str
    loss: nn.Module
    weight: float
    metrics: list[str]

    @classmethod
    def from_plan(cls, name: str, plan: HeadPlan) -> Head:
        loss = getattr(nn, plan.loss.type)(**plan.loss.args)
        return cls(name, plan.target, plan.task, loss, plan.loss.weight, list(plan.metrics))

    def prepare(self, out: engine.Tensor, y: engine.Tensor) -> engine.Tensor:
        """Regression targets take the output's shape ((N,) targets for an (N, 1) output)."""
        if self.task == "regression" and tuple(y.shape) != tuple(out.shape):
            return y.reshape(tuple(out.shape))
        return y


def build_heads(heads: dict[str, HeadPlan]) -> list[Head]:
    return [Head.from_plan(name, h) for name, h in heads.items()]


def build_optimizer(params: Iterable[nn.Parameter], training: TrainingConfig) -> optim.Optimizer:
    config = training.optimizer
    kwargs = config.model_dump(exclude={"type"})
    if "betas" in kwargs:
        kwargs["betas"] = tuple(kwargs["betas"])
    return getattr(optim, config.type)(params, **kwargs)


def build_scheduler(optimizer: optim.Optimizer,
                    config: SchedulerConfig | None) -> optim.lr_scheduler.LRScheduler | None:
    """The scheduler with its JSON arguments; lists become tuples except ``milestones``."""
    if config is None:
        return None
    kwargs = {k: tuple(v) if isinstance(v, list) and k != "milestones" else v
              for k, v in (config.model_extra or {}).items()}
    return getattr(optim.lr_scheduler, config.type)(optimizer, **kwargs)
