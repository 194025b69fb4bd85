"""What a user sends to submit a job (POST /v1/jobs), validated strictly: unknown keys are
errors. Kept verbatim on the job; the planner turns it into a ``TrainingPlan``."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class SGDConfig(_Strict):
    type: Literal["SGD"]
    lr: float = Field(gt=0)
    momentum: float = Field(default=0.0, ge=0)
    dampening: float = 0.0
    weight_decay: float = Field(default=0.0, ge=0)
    nesterov: bool = False


class AdamConfig(_Strict):
    type: Literal["Adam"]
    lr: float = Field(default=1e-3, gt=0)
    betas: tuple[Annotated[float, Field(ge=0, lt=1)], Annotated[float, Field(ge=0, lt=1)]] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    amsgrad: bool = False


class AdamWConfig(AdamConfig):
    type: Literal["AdamW"]  # type: ignore[assignment]
    weight_decay: float = Field(default=1e-2, ge=0)


class RMSpropConfig(_Strict):
    type: Literal["RMSprop"]
    lr: float = Field(default=1e-2, gt=0)
    alpha: float = Field(default=0.99, ge=0, lt=1)
    eps: float = Field(default=1e-8, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    momentum: float = Field(default=0.0, ge=0)
    centered: bool = False


class AdagradConfig(_Strict):
    type: Literal["Adagrad"]
    lr: float = Field(default=1e-2, gt=0)
    lr_decay: float = Field(default=0.0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    initial_accumulator_value: float = Field(default=0.0, ge=0)
    eps: float = Field(default=1e-10, gt=0)


class EarlyStopping(_Strict):
    """Stop when ``metric`` (an epoch metric such as val_loss or val_accuracy) has not improved
    by ``min_delta`` for ``patience`` epochs."""

    metric: str = Field(default="val_loss", min_length=1, max_length=64)
    mode: Literal["min", "max"] = "min"
    patience: int = Field(default=3, ge=1, le=10_000)
    min_delta: float = Field(default=0.0, ge=0, allow_inf_nan=False)


class SchedulerConfig(BaseModel):
    """``{"type": <engine.optim.lr_scheduler class>, <its arguments>}``; checked against the
    class's signature at submit time. Stepped once per epoch."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(min_length=1, max_length=64)


class CheckpointPolicy(_Strict):
    """Which checkpoints a job keeps as it runs: the newest ``keep_last`` (the newest is what a
    resume needs, so at least one) and the ``keep_best`` best by ``metric`` (an epoch metric;
    default val_loss with validation data, else train_loss) in ``mode`` (default: max for
    accuracy-like names, else min). The others are deleted as new ones are written."""

    keep_last: int = Field(default=2, ge=1, le=10_000)
    keep_best: int = Field(default=1, ge=0, le=10_000)
    metric: str | None = Field(default=None, min_length=1, max_length=64)
    mode: Literal["min", "max"] | None = None


class InitConfig(_Strict):
    """Start from trained weights instead of a fresh initialisation (fine-tuning, warm start):
    a job's checkpoint (``job_id`` with ``checkpoint`` latest, best or an id) or uploaded
    weights (``weights_id``, POST /v1/weights). ``strict`` (default) needs every parameter
    name of the model in the file and nothing else; shapes must match either way. ``freeze``
    lists parameter-name prefixes (``0.``, ``encoder.``) that keep their weights: no
    gradients, left out of the optimizer."""

    job_id: str | None = Field(default=None, min_length=1, max_length=64)
    checkpoint: str = Field(default="latest", min_length=1, max_length=64)
    weights_id: str | None = Field(default=None, min_length=1, max_length=64)
    strict: bool = True
    freeze: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(default=[], max_length=256)

    @model_validator(mode="after")
    def _one_source(self) -> InitConfig:
        if (self.job_id is None) == (self.weights_id is None):
            raise ValueError("give exactly one of job_id and weights_id")
        return self


class TrainingConfig(_Strict):
    epochs: int = Field(ge=1, le=10_000)
    batch_size: int = Field(ge=1, le=65_536)
    optimizer: Annotated[SGDConfig | AdamConfig | AdamWConfig | RMSpropConfig | AdagradConfig,
                         Field(discriminator="type")]
    loss: dict[str, Any] | None = Field(default=None, description=(
        "{type, ...args} for one output, or head name -> {type, weight, ...args}; default: "
        "CrossEntropyLoss for classification heads, MSELoss for regression"))
    metrics: list[str] | dict[str, list[str]] | None = Field(default=None, description=(
        "per head (or for every head): accuracy, top<k>_accuracy, precision, recall, f1, "
        "confusion_matrix, mse, mae, r2"))
    scheduler: SchedulerConfig | None = None
    clip_grad_norm: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    clip_grad_value: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    early_stopping: EarlyStopping | None = None
    validation_dataset_id: str | None = Field(default=None, min_length=1, max_length=64)
    devices: int = Field(default=1, ge=1, le=64, description="data-parallel ranks (GPUs, or CPU processes on a "
                                                               "CPU worker); batch_size is per rank")
    seed: int = Field(default=0, ge=0, lt=2**32)
    validation_split: float = Field(default=0.2, ge=0.0, lt=1.0, allow_inf_nan=False)
    checkpoint_every: int | None = Field(default=None, ge=1,
                                         description="steps between checkpoints; default: each epoch")
    time_limit_s: int | None = Field(default=None, ge=1, description="wall-clock limit; capped by the server's")
    max_restarts: int | None = Field(default=None, ge=0, le=100, description="attempts after a lost worker")
    stop_on_nan: bool = True
    precision: Literal["32", "16-mixed", "bf16-mixed"] = Field(default="32", description=(
        "32: float32 throughout; 16-mixed: autocast to float16 with a GradScaler (GPU jobs only); "
        "bf16-mixed: refused, the engine has no bfloat16"))
    checkpoints: CheckpointPolicy = CheckpointPolicy()
    init: InitConfig | None = None
    device: Literal["cpu", "gpu"] | None = Field(default=None, description=(
        "the kind of worker that trains it (its queue); default: gpu while a GPU worker is live, else cpu"))


class JobCreate(_Strict):
    name: str = Field(min_length=1, max_length=200)
    dataset_id: str = Field(min_length=1, max_length=64)
    model: dict[str, Any]
    training: TrainingConfig
