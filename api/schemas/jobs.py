"""Job answers: a job with its plan's derived facts, its metrics and checkpoints. (What a
user sends to submit one is ``plan.request.JobCreate``.)"""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from api.schemas import UTCDateTime
from plan import HeadPlan


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

    heads: dict[str, HeadPlan]
    train_samples: int
    steps_per_epoch: int
    total_steps: int
    memory_bytes: int
    max_restarts: int
    time_limit_s: int


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
            plan=PlanOut.model_validate(plan, from_attributes=False) if plan else None,
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
        )


class JobList(BaseModel):
    items: list[JobOut]


class StepMetric(BaseModel):
    step: int
    epoch: int
    loss: float


class EpochMetric(BaseModel):
    model_config = ConfigDict(extra="allow")

    epoch: int
    train_loss: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None


class JobMetrics(BaseModel):
    job_id: str
    steps: list[StepMetric]
    epochs: list[EpochMetric]


class CheckpointOut(BaseModel):
    id: str
    epoch: int
    step: int
    size_bytes: int
    created_at: UTCDateTime
    download_url: str


class CheckpointList(BaseModel):
    items: list[CheckpointOut]
