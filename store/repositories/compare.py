"""Reads behind /v1/jobs/compare and /v1/jobs/groups: several of an owner's jobs at once, and
which kinds of a metric they have. (Their metric histories come from ``metrics.history``.)"""
from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Job, Metric
from store.repositories.metrics import KINDS


def owned(session: Session, *, owner: str, ids: Sequence[str]) -> dict[str, Job]:
    """The owner's jobs among ``ids``, by id (another owner's and unknown ids are absent)."""
    return {j.id: j for j in session.scalars(select(Job).where(Job.owner == owner, Job.id.in_(list(ids))))}


def selection(session: Session, *, owner: str, ids: Sequence[str] | None = None, status: str | None = None,
              limit: int) -> list[Job]:
    """The owner's jobs (only ``ids`` / in ``status`` when given), oldest first, at most ``limit``."""
    query = select(Job).where(Job.owner == owner)
    if ids is not None:
        query = query.where(Job.id.in_(list(ids)))
    if status is not None:
        query = query.where(Job.status == status)
    return list(session.scalars(query.order_by(Job.created_at, Job.id).limit(limit)))


def metric_kinds(session: Session, *, job_ids: Sequence[str], name: str) -> list[str]:
    """The kinds (``step``, ``epoch``) in which any of the jobs has a series called ``name``:
    per kind, the jobs by primary key, each probing the (job_id, kind, name, step) index
    until one has a row (never a scan of the metrics table for a name the jobs lack)."""
    if not job_ids:
        return []
    ids = list(job_ids)

    def has(kind: str) -> bool:
        probe = select(Metric.id).where(Metric.job_id == Job.id, Metric.kind == kind, Metric.name == name)
        return session.scalar(select(Job.id).where(Job.id.in_(ids), probe.exists()).limit(1)) is not None
    return [kind for kind in KINDS if has(kind)]
