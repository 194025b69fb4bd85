"""Metrics: scalar rows per step and per epoch, written in batches."""
from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from store.models import Metric


def add_many(session: Session, *, job_id: str, rows: Iterable[dict]) -> int:
    """Insert rows of ``{kind, name, epoch, step, value}`` in one statement."""
    payload = [{"job_id": job_id, **row} for row in rows]
    if payload:
        session.execute(insert(Metric), payload)
    return len(payload)


def for_job(session: Session, *, job_id: str, kind: str | None = None) -> list[Metric]:
    query = select(Metric).where(Metric.job_id == job_id)
    if kind:
        query = query.where(Metric.kind == kind)
    return list(session.scalars(query.order_by(Metric.step, Metric.epoch, Metric.id)))


def delete_after(session: Session, *, job_id: str, step: int) -> int:
    """Drop rows past ``step``: what a lost attempt logged after its last checkpoint."""
    return session.execute(delete(Metric).where(Metric.job_id == job_id, Metric.step > step)).rowcount
