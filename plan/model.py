"""``TrainingPlan``: everything a worker needs to train a job, resolved at submit time."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from plan.estimate import epoch_flops
from plan.request import TrainingConfig


class _Plan(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LossPlan(_Plan):
    """An ``engine.nn`` loss class, its constructor arguments and its weight in the total."""

    type: str
    weight: float = Field(ge=0)
    args: dict[str, Any] = {}


class HeadPlan(_Plan):
    """One model output: the dataset head it learns, its task, loss and metrics."""

    target: str
    task: Literal["classification", "regression"]
    loss: LossPlan
    metrics: list[str]


class RetentionPlan(_Plan):
    """The resolved checkpoint policy (``plan.request.CheckpointPolicy``)."""

    keep_last: int = Field(default=2, ge=1)
    keep_best: int = Field(default=1, ge=0)
    metric: str = "train_loss"
    mode: Literal["min", "max"] = "min"


class InitPlan(_Plan):
    """Weights a job starts from: a stored weights row (an upload, or a copy of the job
    checkpoint the request named, taken at submit so retention cannot take it away)."""

    weights_id: str
    strict: bool = True
    freeze: list[str] = []


class TrainingPlan(_Plan):
    """The resolved job. ``training`` is the user's training config with every default
    filled in; the rest is derived from it, the model spec and the dataset's facts."""

    version: Literal[1] = 1
    model: dict[str, Any]
    training: TrainingConfig
    input_shape: list[int]
    num_outputs: int | None = Field(description="the output count a zoo model is sized to (single head)")
    heads: dict[str, HeadPlan]
    train_samples: int = Field(ge=1, description="samples in the training split")
    steps_per_epoch: int = Field(ge=1, description="optimizer steps per epoch (on every rank)")
    total_steps: int = Field(ge=1)
    memory_bytes: int = Field(ge=0, description="static estimate of training memory at batch_size")
    max_restarts: int = Field(ge=0)
    time_limit_s: int = Field(ge=1)
    retention: RetentionPlan = RetentionPlan()
    init: InitPlan | None = None
    flops_per_sample: int = Field(default=0, ge=0, description="one forward pass of one sample")
    val_samples: int = Field(default=0, ge=0)
    device_kind: Literal["cpu", "gpu"] = Field(default="cpu", description="the queue it runs from (config.queues)")

    @property
    def epoch_flops(self) -> int:
        """FLOPs of one epoch's training and validation (``plan.estimate``), over every rank."""
        return epoch_flops(self.flops_per_sample, self.train_samples, self.val_samples)

    @property
    def training_flops(self) -> int:
        """FLOPs of the whole training."""
        return self.training.epochs * self.epoch_flops

    @property
    def per_step_schedule(self) -> bool:
        """OneCycleLR and CyclicLR count optimizer steps; the other schedulers count epochs."""
        sched = self.training.scheduler
        return sched is not None and sched.type in ("OneCycleLR", "CyclicLR")
