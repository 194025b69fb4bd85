"""Evaluations: a trained job's loss and metrics over a dataset, computed by a worker task.

Status goes ``queued -> running -> succeeded | failed``. ``start`` takes a queued *or*
running evaluation, so a message redelivered after a worker died (acks_late) runs it again;
computing it is idempotent, and ``finish`` only moves a running one, so of two deliveries
that overlap the first to finish is recorded and the other's result is dropped."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import Evaluation, JobStatus, utcnow

QUEUED, RUNNING, SUCCEEDED, FAILED = JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.SUCCEEDED, JobStatus.FAILED


def create(session: Session, *, job_id: str, dataset_id: str, checkpoint: str, checkpoint_id: str) -> Evaluation:
    ev = Evaluation(job_id=job_id, dataset_id=dataset_id, checkpoint=checkpoint, checkpoint_id=checkpoint_id,
                    status=QUEUED, results={})
    session.add(ev)
    session.flush()
    return ev


def get(session: Session, *, evaluation_id: str, job_id: str | None = None) -> Evaluation | None:
    """The evaluation, or None (also when ``job_id`` is given and it is another job's)."""
    ev = session.get(Evaluation, evaluation_id)
    return ev if ev is not None and job_id in (None, ev.job_id) else None


def for_job(session: Session, *, job_id: str, limit: int = 1000) -> list[Evaluation]:
    """The job's evaluations, newest first."""
    query = (select(Evaluation).where(Evaluation.job_id == job_id)
             .order_by(Evaluation.created_at.desc(), Evaluation.id.desc()).limit(limit))
    return list(session.scalars(query))


def delete(session: Session, *, evaluation_id: str) -> None:
    session.execute(Evaluation.__table__.delete().where(Evaluation.id == evaluation_id))


def start(session: Session, *, evaluation_id: str) -> bool:
    """Mark it running; False if it is finished (or gone), i.e. not to be run again."""
    result = session.execute(update(Evaluation).where(Evaluation.id == evaluation_id,
                                                      Evaluation.status.in_((QUEUED, RUNNING)))
                             .values(status=RUNNING, error=None))
    return result.rowcount == 1


def set_checkpoint(session: Session, *, evaluation_id: str, checkpoint_id: str) -> None:
    """Record which checkpoint is evaluated (``latest``/``best`` re-resolved after a prune)."""
    session.execute(update(Evaluation).where(Evaluation.id == evaluation_id).values(checkpoint_id=checkpoint_id))


def finish(session: Session, *, evaluation_id: str, status: str, results: dict[str, Any] | None = None,
           error: str | None = None) -> bool:
    """Record the outcome of a running evaluation; False if it was not running any more."""
    if status not in (SUCCEEDED, FAILED):
        raise ValueError(f"an evaluation finishes as succeeded or failed, not {status!r}")
    result = session.execute(update(Evaluation).where(Evaluation.id == evaluation_id, Evaluation.status == RUNNING)
                             .values(status=status, results=results or {}, error=error, finished_at=utcnow()))
    return result.rowcount == 1


def target_heads(job_targets: Mapping[str, str], dataset_heads: Iterable[str]) -> dict[str, str | None]:
    """The dataset head each job head (head -> the target it trained on) is evaluated against:
    the head of the same name as its training target; a single-head job on a single-head
    dataset takes that head whatever its name, as the planner does. None where there is none."""
    available = list(dataset_heads)
    if len(job_targets) == 1 and len(available) == 1:
        return {h: available[0] for h in job_targets}
    return {h: (t if t in available else None) for h, t in job_targets.items()}
