"""Checkpoints: safetensors files stored in the database."""
from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from store.models import Checkpoint


def add(session: Session, *, job_id: str, epoch: int, step: int, data: bytes,
        attempt: int = 0, state: bytes | None = None) -> Checkpoint:
    ckpt = Checkpoint(job_id=job_id, epoch=epoch, step=step, attempt=attempt, size_bytes=len(data),
                      data=data, state=state)
    session.add(ckpt)
    session.flush()
    return ckpt


def for_job(session: Session, *, job_id: str) -> list[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    return list(session.scalars(query.order_by(Checkpoint.step, Checkpoint.created_at)))


def get_with_data(session: Session, *, job_id: str, checkpoint_id: str) -> Checkpoint | None:
    query = (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.id == checkpoint_id)
        .options(undefer(Checkpoint.data))
    )
    return session.scalars(query).one_or_none()


def latest_with_data(session: Session, *, job_id: str, with_state: bool = False) -> Checkpoint | None:
    """The newest checkpoint (highest step), its file loaded (and its resume state)."""
    options = [undefer(Checkpoint.data)] + ([undefer(Checkpoint.state)] if with_state else [])
    query = (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id)
        .order_by(Checkpoint.step.desc(), Checkpoint.created_at.desc())
        .options(*options)
        .limit(1)
    )
    return session.scalars(query).one_or_none()
