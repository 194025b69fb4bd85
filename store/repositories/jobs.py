"""Jobs: creation, reads, and the state machine the worker and reaper drive.

Every transition is a compare-and-set UPDATE (status and, for workers, ``attempt`` in the
WHERE clause), so two workers never both run a job, a finished job is never reopened, and
a stale worker's writes are refused. Every change of status (or of a cancel request) also
records a ``status`` event, in the same transaction.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy import delete as sa_delete
from sqlalchemy.orm import Session

from store.models import Job, JobStatus, JobTag, utcnow
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


def _kind(plan: dict | None) -> str:
    return (plan or {}).get("device_kind") or "cpu"


def fair_pick(session: Session, *, job: Job) -> Job:
    """The queued job a message about queued ``job`` should start: ``job`` itself, unless
    another owner with a queued job of the same device kind runs fewer jobs than ``job``'s
    owner; then that owner's oldest such job (the least-running owner first, ties by its oldest
    job). So a second owner's job starts on the next free worker however many jobs the first
    owner queued. One grouped read of the queued and running jobs."""
    kind_of = func.coalesce(Job.plan["device_kind"].as_string(), "cpu")
    same_kind = kind_of == _kind(job.plan)
    running = dict(session.execute(
        select(Job.owner, func.count()).where(Job.status == JobStatus.RUNNING).group_by(Job.owner)).all())
    waiting = session.execute(
        select(Job.owner, func.min(Job.created_at)).where(Job.status == JobStatus.QUEUED, same_kind)
        .group_by(Job.owner)).all()
    mine = running.get(job.owner, 0)
    others = sorted((running.get(owner, 0), oldest, owner) for owner, oldest in waiting if owner != job.owner)
    if not others or others[0][0] >= mine:
        return job
    owner = others[0][2]
    return session.scalars(
        select(Job).where(Job.status == JobStatus.QUEUED, Job.owner == owner, same_kind)
        .order_by(Job.created_at, Job.id).limit(1)).first() or job


def count_queued(session: Session, *, owner: str) -> int:
    return session.scalar(select(func.count()).select_from(Job).where(Job.owner == owner,
                                                                      Job.status == JobStatus.QUEUED))


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
    """Move a non-terminal job to a terminal ``status``; fenced by ``attempt`` when given: only
    that attempt, still running (an attempt whose lease lapsed and was requeued is over)."""
    assert status in JobStatus.TERMINAL
    query = update(Job).where(Job.id == job_id, Job.status.not_in(JobStatus.TERMINAL))
    if attempt is not None:
        query = query.where(Job.attempt == attempt, Job.status == JobStatus.RUNNING)
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
        .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, enqueued_at=None, error=reason)
    )  # not yet sent: the releasing worker marks it once the broker has the message
    if result.rowcount != 1:
        return False
    events.status_changed(session, job_id)
    return True


DEAD_AFTER_BEATS = 5  # a running job's worker renews its lease every second: this many missed, it is gone


def request_cancel(session: Session, *, job_id: str, lease_s: float | None = None) -> str | None:
    """Cancel: a queued job becomes cancelled at once; a running one is flagged for its worker
    to stop at the next step boundary, unless its worker is dead (given the workers'
    ``lease_s``: its lease not renewed for DEAD_AFTER_BEATS seconds, or lapsed), which is
    cancelled at once too, spending no attempt. Returns the resulting status, None if already
    terminal."""
    now = utcnow()
    at_once = Job.status == JobStatus.QUEUED
    if lease_s is not None:  # the lease was last renewed at lease_expires_at - lease_s
        silent = Job.lease_expires_at < now + timedelta(seconds=lease_s - DEAD_AFTER_BEATS)
        at_once = or_(at_once, and_(Job.status == JobStatus.RUNNING, silent))
    if session.execute(
        update(Job).where(Job.id == job_id, at_once)
        .values(status=JobStatus.CANCELLED, cancel_requested=True, finished_at=now, failure_kind="cancelled",
                lease_expires_at=None)
        .execution_options(synchronize_session="fetch")  # SQLite's naive datetimes do not compare in Python
    ).rowcount:
        events.status_changed(session, job_id)
        return JobStatus.CANCELLED
    if session.execute(
        update(Job).where(Job.id == job_id, Job.status == JobStatus.RUNNING).values(cancel_requested=True)
    ).rowcount:
        events.status_changed(session, job_id)
        return JobStatus.RUNNING
    return None


def reap(session: Session, *, now: datetime | None = None, requeue_after_s: float,
         send_retry_s: float = 10.0) -> tuple[list[str], list[str]]:
    """One reaper pass. Running jobs whose lease lapsed go back to queued (or fail once they
    used up ``max_restarts``); queued jobs never sent, or not (re)sent for ``requeue_after_s``,
    are due for a message. Returns (job ids to send, job ids failed).

    A due job is only reserved for this pass (its ``enqueued_at`` set so that it is due again
    after ``send_retry_s``, so two reapers do not both send it and a reaper that died before
    sending does not leave it waiting): the caller marks it sent (``mark_sent``) once the broker
    accepted the message, or gives it back (``mark_unsent``) if the send failed."""
    now = now or utcnow()
    cancelled = list(session.scalars(  # a cancelled job whose worker died: done, no new attempt
        update(Job).where(Job.status == JobStatus.RUNNING, Job.lease_expires_at < now, Job.cancel_requested)
        .values(status=JobStatus.CANCELLED, finished_at=now, failure_kind="cancelled", lease_expires_at=None,
                error="cancelled by the user (its worker was lost)")
        .returning(Job.id)
    ))
    events.status_changed(session, cancelled)
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
        .values(status=JobStatus.QUEUED, worker=None, lease_expires_at=None, enqueued_at=None,
                error="worker lost; resuming from the last checkpoint")
        .returning(Job.id)
    ))
    events.status_changed(session, failed + requeued)
    stale = now - timedelta(seconds=requeue_after_s)
    reserved = now - timedelta(seconds=max(requeue_after_s - send_retry_s, 0))
    due = list(session.scalars(
        update(Job).where(Job.status == JobStatus.QUEUED,
                          or_(Job.enqueued_at.is_(None), Job.enqueued_at < stale))
        .values(enqueued_at=reserved)
        .returning(Job.id)
    ))
    return due, failed


def mark_sent(session: Session, *, job_ids: list[str]) -> None:
    """The broker accepted these jobs' messages."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
                        .values(enqueued_at=utcnow()))


def mark_unsent(session: Session, *, job_ids: list[str]) -> None:
    """These queued jobs' messages did not reach the broker: due at the next pass."""
    if job_ids:
        session.execute(update(Job).where(Job.id.in_(job_ids), Job.status == JobStatus.QUEUED)
                        .values(enqueued_at=None))


def forget_sent(session: Session) -> int:
    """The broker lost its data: every queued job is due for a new message. Returns how many."""
    return session.execute(update(Job).where(Job.status == JobStatus.QUEUED).values(enqueued_at=None)).rowcount


# -- experiments: search, labels, deletion ------------------------------------------------------
SORTS = ("created", "-created", "name", "-name")  # plus "metric:<name>" and "-metric:<name>"


@dataclass(frozen=True)
class Filters:
    """What GET /v1/jobs narrows the owner's jobs to; every given filter must hold."""

    status: str | None = None
    tags: tuple[str, ...] = ()
    dataset_id: str | None = None
    sweep_id: str | None = None
    name_contains: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def sort_key(sort: str):
    """(the SQL expression, descending) a sort names: created, name or metric:<final metric>."""
    descending = sort.startswith("-")
    field = sort.lstrip("-")
    if field == "created":
        return Job.created_at, descending
    if field == "name":
        return Job.name, descending
    return Job.final_metrics[field.removeprefix("metric:")].as_float(), descending


def search(session: Session, *, owner: str, filters: Filters, sort: str = "-created", limit: int = 100,
           after: tuple[Any, str] | None = None) -> list[Job]:
    """One page of the owner's jobs in ``sort`` order (ties by id; a metric's missing values
    last), starting after the (sort value, id) of the previous page's last job: keyset
    pagination, stable while jobs are added."""
    key, descending = sort_key(sort)
    query = select(Job).where(Job.owner == owner)
    f = filters
    if f.status:
        query = query.where(Job.status == f.status)
    for tag in f.tags:
        query = query.where(Job.id.in_(select(JobTag.job_id).where(JobTag.tag == tag)))
    if f.dataset_id:
        query = query.where(Job.dataset_id == f.dataset_id)
    if f.sweep_id:
        query = query.where(Job.sweep_id == f.sweep_id)
    if f.name_contains:
        escaped = f.name_contains.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(Job.name.ilike(f"%{escaped}%", escape="\\"))
    if f.created_after:
        query = query.where(Job.created_at >= f.created_after)
    if f.created_before:
        query = query.where(Job.created_at < f.created_before)
    nullable = sort.lstrip("-").startswith("metric:")  # created and name are never null
    if after is not None:
        value, last_id = after
        next_id = Job.id < last_id if descending else Job.id > last_id
        if value is None:  # in the trailing run of missing values
            query = query.where(key.is_(None), next_id)
        else:
            beyond = key < value if descending else key > value
            query = query.where(or_(beyond, and_(key == value, next_id), *([key.is_(None)] if nullable else [])))
    order = key.desc() if descending else key.asc()
    # NULLS LAST only where values can be missing: on created it would keep PostgreSQL from
    # reading the (owner, created_at, id) index backwards
    query = query.order_by(order.nulls_last() if nullable else order, Job.id.desc() if descending else Job.id.asc())
    return list(session.scalars(query.limit(limit)))


def sort_value(job: Job, sort: str) -> Any:
    """The value of ``sort``'s key for ``job`` (what a cursor carries)."""
    field = sort.lstrip("-")
    if field == "created":
        return job.created_at
    if field == "name":
        return job.name
    value = (job.final_metrics or {}).get(field.removeprefix("metric:"))
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def set_labels(session: Session, job: Job, *, tags: list[str] | None = None, notes: str | None = None,
               clear_notes: bool = False) -> Job:
    """Replace the job's tags and/or notes (the only fields a user may edit)."""
    if tags is not None:
        job.tag_rows = [JobTag(job_id=job.id, tag=t) for t in dict.fromkeys(tags)]
    if notes is not None or clear_notes:
        job.notes = notes
    session.flush()
    return job


def delete(session: Session, *, job_id: str) -> bool:
    """Delete a job with its metrics, events, tags and checkpoints (ON DELETE CASCADE); a
    queued or running job is cancelled first, so its worker stops at its next step."""
    request_cancel(session, job_id=job_id)
    return session.execute(sa_delete(Job).where(Job.id == job_id)).rowcount == 1


def using_dataset(session: Session, *, dataset_id: str) -> list[str]:
    """Queued or running jobs that train or validate on the dataset."""
    active = select(Job.id, Job.plan).where(Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))
    rows = session.execute(active).all()
    direct = set(session.scalars(select(Job.id).where(Job.dataset_id == dataset_id,
                                                      Job.status.in_((JobStatus.QUEUED, JobStatus.RUNNING)))))
    validating = {r.id for r in rows
                  if ((r.plan or {}).get("training") or {}).get("validation_dataset_id") == dataset_id}
    return sorted(direct | validating)
