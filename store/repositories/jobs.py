"""Jobs: creation, reads, and the state transitions the worker makes.

Transitions are compare-and-set UPDATEs on ``status`` so two workers can never both
claim a job, and a finished job is never reopened.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import Job, JobStatus, utcnow


def create(
    session: Session, *, name: str, dataset_id: str, model_spec: dict, training: dict
) -> Job:
    job = Job(name=name, dataset_id=dataset_id, model_spec=model_spec, training=training)
    session.add(job)
    session.flush()
    return job


def get(session: Session, *, job_id: str) -> Job | None:
    return session.get(Job, job_id)


def list_all(session: Session, *, limit: int = 100, status: str | None = None) -> list[Job]:
    query = select(Job).order_by(Job.created_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def claim(session: Session, *, job_id: str, total_steps: int) -> int | None:
    """queued -> running; returns the new attempt number, or None if the job was not queued."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING,
            attempt=Job.attempt + 1,
            started_at=utcnow(),
            total_steps=total_steps,
            error=None,
        )
    )
    if result.rowcount != 1:
        return None
    return session.scalar(select(Job.attempt).where(Job.id == job_id))


def set_progress(session: Session, *, job_id: str, attempt: int, epoch: int, step: int) -> bool:
    """Record progress; False if this attempt no longer owns the job."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.RUNNING)
        .values(epoch=epoch, step=step)
    )
    return result.rowcount == 1


def finish(
    session: Session,
    *,
    job_id: str,
    status: str,
    attempt: int | None = None,
    error: str | None = None,
    final_metrics: dict[str, Any] | None = None,
) -> bool:
    """Move a non-terminal job to a terminal ``status``; fenced by ``attempt`` when given."""
    assert status in JobStatus.TERMINAL
    query = update(Job).where(Job.id == job_id, Job.status.not_in(JobStatus.TERMINAL))
    if attempt is not None:
        query = query.where(Job.attempt == attempt)
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error}
    if final_metrics is not None:
        values["final_metrics"] = final_metrics
    return session.execute(query.values(**values)).rowcount == 1
