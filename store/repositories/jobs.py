"""Jobs: creation, reads, and the state machine the worker and reaper drive.

Every transition is a compare-and-set UPDATE (status and, for workers, ``attempt`` in the
WHERE clause), so two workers never both run a job, a finished job is never reopened, and
a stale worker's writes are refused. Every change of status (or of a cancel request) also
records a ``status`` event, in the same transaction.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.orm import Session

from store.models import Job, JobStatus, utcnow
from store.repositories import events


def create(
    session: Session, *, name: str, dataset_id: str, model_spec: dict, training: dict, plan: dict | None = None,
    total_steps: int = 0, max_restarts: int = 3, time_limit_s: int | None = None, owner: str = "local",
) -> Job:
    """A queued job: ``training`` as the user sent it, ``plan`` the TrainingPlan built from it."""
    job = Job(name=name, dataset_id=dataset_id, model_spec=model_spec, training=training, plan=plan,
              total_steps=total_steps, max_restarts=max_restarts, time_limit_s=time_limit_s, owner=owner)
    session.add(job)
    session.flush()
    events.status_changed(session, job.id)
    return job


def get(session: Session, *, job_id: str, owner: str | None = None) -> Job | None:
    """The job, or None if it does not exist or (given ``owner``) belongs to another owner."""
    job = session.get(Job, job_id)
    return job if job is not None and owner in (None, job.owner) else None


def list_all(session: Session, *, owner: str, limit: int = 100, status: str | None = None) -> list[Job]:
    query = select(Job).where(Job.owner == owner).order_by(Job.created_at.desc()).limit(limit)
    if status:
        query = query.where(Job.status == status)
    return list(session.scalars(query))


def mark_enqueued(session: Session, *, job_id: str) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(enqueued_at=utcnow()))


def owner_at_cap(session: Session, *, job_id: str, max_running: int) -> bool:
    """True if the job's owner already runs ``max_running`` jobs (0: no cap). Call in the
    claiming transaction: it serializes claims per owner (an advisory lock on PostgreSQL;
    SQLite transactions here are already exclusive)."""
    if max_running <= 0:
        return False
    owner = session.scalar(select(Job.owner).where(Job.id == job_id))
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(func.hashtext(f"trainyard-owner:{owner}"))))
    running = session.scalar(
        select(func.count()).select_from(Job).where(Job.owner == owner, Job.status == JobStatus.RUNNING)
    )
    return running >= max_running


def claim(session: Session, *, job_id: str, worker: str, lease_s: float) -> int | None:
    """queued -> running for this worker; returns the new attempt, or None if not queued."""
    now = utcnow()
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(
            status=JobStatus.RUNNING, attempt=Job.attempt + 1, started_at=func.coalesce(Job.started_at, now),
            worker=worker, lease_expires_at=now + timedelta(seconds=lease_s),
        )
    )
    if result.rowcount != 1:
        return None
    events.status_changed(session, job_id)
    return session.scalar(select(Job.attempt).where(Job.id == job_id))


def _owned(job_id: str, attempt: int):
    return and_(Job.id == job_id, Job.attempt == attempt, Job.status == JobStatus.RUNNING)


def heartbeat(session: Session, *, job_id: str, attempt: int, lease_s: float) -> tuple[bool, bool]:
    """Renew the lease; returns (still owned, cancel requested)."""
    result = session.execute(
        update(Job).where(_owned(job_id, attempt))
        .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
    )
    if result.rowcount != 1:
        return False, False
    return True, bool(session.scalar(select(Job.cancel_requested).where(Job.id == job_id)))


def set_progress(session: Session, *, job_id: str, attempt: int, epoch: int, step: int) -> bool:
    """Record progress; False if this attempt no longer owns the job."""
    result = session.execute(update(Job).where(_owned(job_id, attempt)).values(epoch=epoch, step=step))
    return result.rowcount == 1


def finish(
    session: Session, *, job_id: str, status: str, attempt: int | None = None,
    error: str | None = None, failure_kind: str | None = None,
    final_metrics: dict[str, Any] | None = None,
) -> bool:
    """Move a non-terminal job to a terminal ``status``; fenced by ``attempt`` when given."""
    assert status in JobStatus.TERMINAL
    query = update(Job).where(Job.id == job_id, Job.status.not_in(JobStatus.TERMINAL))
    if attempt is not None:
        query = query.where(Job.attempt == attempt)
    values: dict[str, Any] = {"status": status, "finished_at": utcnow(), "error": error,
                              "failure_kind": failure_kind, "lease_expires_at": None}
    if final_metrics is not None:
        values["final_metrics"] = final_metrics
    if session.execute(query.values(**values)).rowcount != 1:
        return False
    events.status_changed(session, job_id)
    return True


def release(session: Session, *, job_id: str, attempt: int, reason: str) -> bool:
    """A worker gives a running job back to the queue (graceful stop, infrastructure error)."""
    result = session.execute(
        update(Job).where(_owned(job_id, attempt))
        .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, error=reason)
    )
    if result.rowcount != 1:
        return False
    events.status_changed(session, job_id)
    return True


def request_cancel(session: Session, *, job_id: str) -> str | None:
    """Cancel: a queued job becomes cancelled at once; a running one is flagged for its worker
    to stop at the next step boundary. Returns the resulting status, None if already terminal."""
    now = utcnow()
    if session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, failure_kind="cancelled")
    ).rowcount:
        events.status_changed(session, job_id)
        return JobStatus.CANCELLED
    if session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(cancel_requested=True)
    ).rowcount:
        events.status_changed(session, job_id)
        return JobStatus.RUNNING
    return None


def reap(session: Session, *, now: datetime | None = None, requeue_after_s: float) -> tuple[list[str], list[str]]:
    """One reaper pass. Running jobs whose lease lapsed go back to queued (or fail once they
    used up ``max_restarts``); queued jobs not (re)sent for ``requeue_after_s`` are due for a
    new message. Returns (job ids to send, job ids failed)."""
    now = now or utcnow()
    failed = list(session.scalars(
        update(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now,
                          Job.attempt > Job.max_restarts)
        .values(status=JobStatus.FAILED, finished_at=now, failure_kind="infrastructure",
                error="the worker running this job was lost too many times (max_restarts reached)",
                lease_expires_at=None)
        .returning(Job.id)
    ))
    requeued = list(session.scalars(
        update(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now)
        .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, enqueued_at=now,
                error="worker lost; resuming from the last checkpoint")
        .returning(Job.id)
    ))
    events.status_changed(session, failed + requeued)
    stale = now - timedelta(seconds=requeue_after_s)
    resend = list(session.scalars(
        update(Job).where(Job.status == JobStatus.QUEUED,
                          or_(Job.enqueued_at.is_(None), Job.enqueued_at < stale))
        .values(enqueued_at=now)
        .returning(Job.id)
    ))
    return requeued + resend, failed
