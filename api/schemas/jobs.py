"""Job answers: a job with its plan's derived facts, its metrics and checkpoints. (What a
user sends to submit one is ``plan.request.JobCreate``.)"""
from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schemas import UTCDateTime
from plan import HeadPlan
from plan.model import InitPlan, RetentionPlan


class Progress(BaseModel):
    epoch: int
    epochs: int
    step: int
    total_steps: int


class FinalMetrics(BaseModel):
    model_config = ConfigDict(extra="allow")

    train_loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class PlanOut(BaseModel):
    """What the planner resolved at submit time."""

    input_shape: list[int]
    num_outputs: int | None  # the output count a zoo model was sized to
    heads: dict[str, HeadPlan]
    train_samples: int
    steps_per_epoch: int
    total_steps: int
    memory_bytes: int
    max_restarts: int
    time_limit_s: int
    retention: RetentionPlan
    init: InitPlan | None = None
    flops_per_sample: int = 0
    val_samples: int = 0
    device_kind: str = "cpu"  # the queue (worker kind) it runs from: cpu | gpu


class JobOut(BaseModel):
    id: str
    name: str
    status: str
    dataset_id: str
    model: dict[str, Any]
    training: dict[str, Any]  # the training config as submitted, defaults filled in
    plan: PlanOut | None
    attempt: int
    error: str | None
    failure_kind: str | None
    cancel_requested: bool
    created_at: UTCDateTime
    started_at: UTCDateTime | None
    finished_at: UTCDateTime | None
    progress: Progress
    metrics: FinalMetrics
    event_seq: int  # the id of the job's newest event: GET .../events?after=<event_seq> streams what follows
    tags: list[str] = []
    notes: str | None = None
    sweep_id: str | None = None
    # estimated training time per device kind ({"cpu": {"seconds", "flops_per_s", "calibrated",
    # "measurements"}, "cuda": ...}); in the submit answer and GET /jobs/{id}
    estimate: dict[str, Any] | None = None

    @classmethod
    def from_row(cls, job: Any) -> JobOut:
        plan = job.plan or {}
        return cls(
            id=job.id,
            name=job.name,
            status=job.status,
            dataset_id=job.dataset_id,
            model=job.model_spec,
            training=plan.get("training", job.training),
            plan=PlanOut.model_validate(plan) if plan else None,
            attempt=job.attempt,
            error=job.error,
            failure_kind=job.failure_kind,
            cancel_requested=job.cancel_requested,
            created_at=job.created_at,
            started_at=job.started_at,
            finished_at=job.finished_at,
            progress=Progress(
                epoch=job.epoch, epochs=job.training["epochs"],
                step=job.step, total_steps=job.total_steps,
            ),
            metrics=FinalMetrics(**(job.final_metrics or {})),
            event_seq=job.event_seq or 0,
            tags=job.tags,
            notes=job.notes,
            sweep_id=job.sweep_id,
        )


class JobList(BaseModel):
    items: list[JobOut]
    next_cursor: str | None = None  # pass as ``cursor`` for the next page; None on the last one


Tag = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:/@+=-]+$")]
_SORT = r"^-?(created|name|metric:[A-Za-z_][A-Za-z0-9_]{0,63})$"


class JobQuery(BaseModel):
    """GET /v1/jobs: every filter given must hold; any other query parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    tag: list[Tag] = Field(default=[], max_length=16, description="repeat for several: a job must carry all")
    dataset_id: str | None = Field(None, max_length=64)
    sweep_id: str | None = Field(None, max_length=64)
    q: str | None = Field(None, min_length=1, max_length=200, description="a substring of the name (any case)")
    created_after: datetime | None = None
    created_before: datetime | None = None
    sort: str = Field("-created", pattern=_SORT, description="created, name or metric:<final metric>; "
                                                              "a leading - sorts descending")
    limit: int = Field(100, ge=1, le=1000)
    cursor: str | None = Field(None, max_length=2000)


class JobPatch(BaseModel):
    """PATCH /v1/jobs/{id}: only tags and notes can change."""

    model_config = ConfigDict(extra="forbid")

    tags: list[Tag] | None = Field(None, max_length=32)
    notes: str | None = Field(None, max_length=10_000)


class StepMetric(BaseModel):
    """One point of the ``loss`` series."""

    step: int
    epoch: int
    loss: float


class EpochMetric(BaseModel):
    """One epoch's epoch-kind metrics (train_loss, val_*, epoch_time_s, ...), by name."""

    model_config = ConfigDict(extra="allow")

    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class MetricSeries(BaseModel):
    """One metric's points as parallel lists, in step order."""

    kind: Literal["step", "epoch"]
    step: list[int]
    epoch: list[int]
    value: list[float]


class JobMetrics(BaseModel):
    """A job's metric history (rows past ``after_step``, at most ``max_points`` per series).
    Poll with ``after_step=<last_step>`` for what came since."""

    job_id: str
    last_step: int = Field(description="the largest step among the rows selected (before downsampling); "
                                       "after_step, or 0, when there were none")
    steps: list[StepMetric] = Field(description="the loss series, as the series['loss'] points")
    epochs: list[EpochMetric] = Field(description="the epoch-kind rows selected, one entry per epoch")
    series: dict[str, MetricSeries] = Field(
        description="every selected metric by name ('step:<name>' and 'epoch:<name>' where both kinds have it)")


class CheckpointOut(BaseModel):
    id: str
    epoch: int
    step: int
    size_bytes: int
    created_at: UTCDateTime
    download_url: str
    metric_value: float | None = None  # the retention metric at this checkpoint (epoch ends)
    latest: bool = False
    best: bool = False


class CheckpointList(BaseModel):
    items: list[CheckpointOut]
