"""Evaluation bodies: what POST /v1/jobs/{id}/evaluate takes and what it (and the reads) answer."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas import UTCDateTime


class EvaluateRequest(BaseModel):
    """Evaluate one of the job's checkpoints on one of the caller's datasets."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: str = Field(min_length=1, max_length=64, description="the dataset to evaluate on (yours)")
    checkpoint: str = Field("latest", min_length=1, max_length=32,
                            description="'latest', 'best' (by the job's retention metric) or a checkpoint id")


class EvaluationOut(BaseModel):
    """An evaluation. ``results`` (once succeeded): ``num_samples``, ``loss`` (the job's
    total: the weighted sum of the heads' losses) and ``heads``, per head its ``target``,
    ``task``, ``weight``, ``loss`` and every metric of its task (classification: accuracy,
    precision, recall, f1, any top-k the job reports and ``confusion_matrix``, rows the true
    class; regression: mse, mae, r2)."""

    id: str
    job_id: str
    dataset_id: str
    checkpoint: str  # what was asked: latest, best or an id
    checkpoint_id: str | None  # the checkpoint evaluated
    status: str  # queued, running, succeeded, failed
    results: dict[str, Any]
    error: str | None
    created_at: UTCDateTime
    finished_at: UTCDateTime | None

    @classmethod
    def from_row(cls, ev: Any) -> EvaluationOut:
        return cls(id=ev.id, job_id=ev.job_id, dataset_id=ev.dataset_id, checkpoint=ev.checkpoint,
                   checkpoint_id=ev.checkpoint_id, status=ev.status, results=ev.results or {}, error=ev.error,
                   created_at=ev.created_at, finished_at=ev.finished_at)


class EvaluationList(BaseModel):
    items: list[EvaluationOut]  # newest first
