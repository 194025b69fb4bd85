"""Job events: a job's ordered history. ``record`` numbers events on the job row (an
UPDATE ... RETURNING that also serializes concurrent writers of one job, so events commit in
``seq`` order) and queues them for ``store.live`` to publish once the transaction commits."""
from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from store.models import Job, JobEvent, utcnow

STATUS, PROGRESS, METRIC, CHECKPOINT, LOG = "status", "progress", "metric", "checkpoint", "log"
PENDING = "trainyard.events"  # session.info key: events to publish after commit
# the last log line a job stores once it reached its limit (settings.max_log_lines)
TRUNCATED = "log truncated: this job reached its limit of log lines; further lines are dropped"


def record(session: Session, *, job_id: str, events: list[tuple[str, dict[str, Any]]], attempt: int = 0) -> int:
    """Append ``events`` ((kind, data), ...) to the job's history; returns the newest seq."""
    if not events:
        return 0
    last = session.execute(update(Job).where(Job.id == job_id).values(event_seq=Job.event_seq + len(events))
                           .returning(Job.event_seq)).scalar_one()
    now = utcnow()
    rows = [{"job_id": job_id, "seq": last - len(events) + i + 1, "kind": kind, "attempt": attempt,
             "data": json_safe(data), "created_at": now} for i, (kind, data) in enumerate(events)]
    session.execute(JobEvent.__table__.insert(), rows)
    session.info.setdefault(PENDING, []).extend(as_message(r) for r in rows)
    return last


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as null: JSON (and PostgreSQL's json) has no such numbers.
    Metric batches (``{"rows": [...]}``, thousands of flat rows) take a fast path."""
    if isinstance(value, dict) and isinstance(value.get("rows"), list) and len(value) == 1:
        return {"rows": [r if _finite_row(r) else json_safe(r) for r in value["rows"]]}
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _finite_row(row: Any) -> bool:
    v = row.get("value") if isinstance(row, dict) else None
    return isinstance(v, (int, str)) or (isinstance(v, float) and math.isfinite(v))


def status_changed(session: Session, job_ids: list[str] | str) -> None:
    """A ``status`` event with each job's state as it now is in this transaction."""
    for job_id in [job_ids] if isinstance(job_ids, str) else job_ids:
        job = session.execute(select(Job.status, Job.attempt, Job.worker, Job.error, Job.failure_kind,
                                     Job.cancel_requested).where(Job.id == job_id)).one_or_none()
        if job is not None:
            record(session, job_id=job_id, attempt=job.attempt, events=[(STATUS, {
                "status": job.status, "attempt": job.attempt, "worker": job.worker, "error": job.error,
                "failure_kind": job.failure_kind, "cancel_requested": job.cancel_requested})])


def as_message(row: dict[str, Any] | JobEvent) -> dict[str, Any]:
    """An event as the stream and Redis carry it."""
    get = row.get if isinstance(row, dict) else lambda k: getattr(row, k)
    created = get("created_at")
    return {"job_id": get("job_id"), "seq": get("seq"), "kind": get("kind"), "attempt": get("attempt"),
            "data": get("data"), "time": created.isoformat() if created is not None else None}


def after(session: Session, *, job_id: str, seq: int, kinds: tuple[str, ...] | None = None,
          attempt: int | None = None, limit: int = 1000) -> list[JobEvent]:
    """Events with a larger ``seq``, oldest first."""
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.seq > seq)
    if kinds:
        query = query.where(JobEvent.kind.in_(kinds))
    if attempt is not None:
        query = query.where(JobEvent.attempt == attempt)
    return list(session.scalars(query.order_by(JobEvent.seq).limit(limit)))


def newest(session: Session, *, job_id: str, kind: str) -> JobEvent | None:
    query = select(JobEvent).where(JobEvent.job_id == job_id, JobEvent.kind == kind)
    return session.scalars(query.order_by(JobEvent.seq.desc()).limit(1)).first()


def log_line_count(session: Session, *, job_id: str) -> int:
    """Log lines the job stored so far (bounded by settings.max_log_lines, so cheap to count)."""
    return sum(len(data.get("lines", [])) for data in session.scalars(
        select(JobEvent.data).where(JobEvent.job_id == job_id, JobEvent.kind == LOG)))


def latest_seq(session: Session, *, job_id: str) -> int | None:
    return session.scalar(select(Job.event_seq).where(Job.id == job_id))
