"""Checkpoints: safetensors files stored in the database."""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, undefer

from store.models import Checkpoint


def add(session: Session, *, job_id: str, epoch: int, step: int, data: bytes,
        attempt: int = 0, state: bytes | None = None, metric_value: float | None = None) -> Checkpoint:
    ckpt = Checkpoint(job_id=job_id, epoch=epoch, step=step, attempt=attempt, size_bytes=len(data),
                      data=data, state=state, metric_value=metric_value)
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


def _newest_first(job_id: str):
    return (select(Checkpoint.id, Checkpoint.step, Checkpoint.metric_value).where(Checkpoint.job_id == job_id)
            .order_by(Checkpoint.step.desc(), Checkpoint.created_at.desc()))


def best_id(session: Session, *, job_id: str, mode: str) -> str | None:
    """The checkpoint with the best retention metric (the newest among equals)."""
    rows = [r for r in session.execute(_newest_first(job_id)) if r.metric_value is not None]
    if not rows:
        return None
    best = (min if mode == "min" else max)(rows, key=lambda r: r.metric_value)
    return best.id


def marks(session: Session, *, job_id: str, mode: str) -> tuple[str | None, str | None]:
    """(latest id, best id)."""
    latest = session.execute(_newest_first(job_id).limit(1)).first()
    return (latest.id if latest else None), best_id(session, job_id=job_id, mode=mode)


def prune(session: Session, *, job_id: str, keep_last: int, keep_best: int, mode: str) -> list[str]:
    """Delete all but the newest ``keep_last`` and the best ``keep_best`` checkpoints. Called
    in the transaction that adds a checkpoint, so the job always keeps a resumable one."""
    rows = list(session.execute(_newest_first(job_id)))
    keep = {r.id for r in rows[:max(1, keep_last)]}
    scored = [r for r in rows if r.metric_value is not None]
    scored.sort(key=lambda r: r.metric_value, reverse=mode == "max")  # stable: newest first among equals
    keep |= {r.id for r in scored[:keep_best]}
    doomed = [r.id for r in rows if r.id not in keep]
    if doomed:
        session.execute(delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.id.in_(doomed)))
    return doomed


def named(session: Session, *, job_id: str, which: str, mode: str) -> Checkpoint | None:
    """The checkpoint ``which`` names, its file loaded: ``latest`` (the newest), ``best`` (the
    best retention metric in ``mode``) or an id of the job's; None if there is no such one."""
    if which == "latest":
        return latest_with_data(session, job_id=job_id)
    checkpoint_id = best_id(session, job_id=job_id, mode=mode) if which == "best" else which
    return get_with_data(session, job_id=job_id, checkpoint_id=checkpoint_id) if checkpoint_id else None


def retention_mode(stored_plan: dict | None) -> str:
    """min or max: how a job's stored plan ranks its checkpoints (min for plans without one)."""
    return ((stored_plan or {}).get("retention") or {}).get("mode", "min")
