"""Checkpoints: the model's safetensors file and the resume state, each a chunked blob
(``store.blobs``: checkpoints/<id>/model and /state), so a checkpoint of any size the limits
admit is stored in pieces far below PostgreSQL's 1 GB message limit and downloads streamed.
Rows from before the blob store (``layout`` NULL) keep their files inline and read the same.

Readers that need a file whole (resume, predict, export) get it on ``data`` / ``state`` as
before; ``stream`` hands a download its chunks one at a time."""
from __future__ import annotations

import io
from collections.abc import Iterator
from typing import BinaryIO

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, undefer
from sqlalchemy.orm.attributes import set_committed_value

from store.blobs import Blobs, open_blobs
from store.models import Checkpoint, new_id

BLOBS = "blobs"


def _key(checkpoint_id: str, part: str) -> str:
    return f"checkpoints/{checkpoint_id}/{part}"


def add(session: Session, *, job_id: str, epoch: int, step: int, data: bytes,
        attempt: int = 0, state: bytes | None = None, metric_value: float | None = None,
        blobs: Blobs | None = None) -> Checkpoint:
    """Store a checkpoint: its row, then both files as blobs in the same transaction."""
    blobs = blobs or open_blobs(session)
    ckpt = Checkpoint(id=new_id(), job_id=job_id, epoch=epoch, step=step, attempt=attempt, size_bytes=len(data),
                      data=b"", state=None, layout=BLOBS, metric_value=metric_value)
    session.add(ckpt)
    session.flush()
    blobs.put(_key(ckpt.id, "model"), data, checkpoint_id=ckpt.id)
    blobs.put(_key(ckpt.id, "state"), state or b"", checkpoint_id=ckpt.id)
    _attach(session, ckpt, data=data, state=state)
    return ckpt


def _attach(session: Session, ckpt: Checkpoint, *, data: bytes, state: bytes | None) -> None:
    """Put the files on the row without marking them changed (nothing is written back)."""
    set_committed_value(ckpt, "data", data)
    set_committed_value(ckpt, "state", state)


def _load(session: Session, ckpt: Checkpoint | None, *, with_state: bool = False) -> Checkpoint | None:
    """A blob-stored checkpoint's files read into ``data`` (and ``state``)."""
    if ckpt is None or ckpt.layout != BLOBS:
        return ckpt
    blobs = open_blobs(session)
    state = blobs.get(_key(ckpt.id, "state")) if with_state else None
    _attach(session, ckpt, data=blobs.get(_key(ckpt.id, "model")), state=state or None)
    return ckpt


def stream(session: Session, ckpt: Checkpoint, piece_bytes: int = 4 * 1024**2) -> Iterator[bytes]:
    """The model file in pieces of ``piece_bytes``, each read from the store by itself (a
    download holds one piece, not a whole chunk, whatever the chunk size)."""
    if ckpt.layout == BLOBS:
        yield from open_blobs(session).stream(_key(ckpt.id, "model"), piece_bytes=piece_bytes)
        return
    view = memoryview(session.scalar(select(Checkpoint.data).where(Checkpoint.id == ckpt.id)) or b"")
    for start in range(0, len(view), piece_bytes):
        yield bytes(view[start:start + piece_bytes])


def open_model(session: Session, ckpt: Checkpoint) -> BinaryIO:
    """The model file as a seekable binary file, read a chunk at a time (to parse its header
    without loading it)."""
    if ckpt.layout == BLOBS:
        return open_blobs(session).open(_key(ckpt.id, "model"))
    return io.BytesIO(session.scalar(select(Checkpoint.data).where(Checkpoint.id == ckpt.id)) or b"")


def find(session: Session, *, job_id: str, which: str, mode: str) -> Checkpoint | None:
    """The row ``which`` names (latest, best or an id), its files not loaded."""
    if which == "latest":
        return session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)
                               .order_by(Checkpoint.step.desc(), Checkpoint.created_at.desc()).limit(1)).first()
    checkpoint_id = best_id(session, job_id=job_id, mode=mode) if which == "best" else which
    if not checkpoint_id:
        return None
    return session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id,
                                                    Checkpoint.id == checkpoint_id)).one_or_none()


def for_job(session: Session, *, job_id: str) -> list[Checkpoint]:
    query = select(Checkpoint).where(Checkpoint.job_id == job_id)
    return list(session.scalars(query.order_by(Checkpoint.step, Checkpoint.created_at)))


def get_with_data(session: Session, *, job_id: str, checkpoint_id: str) -> Checkpoint | None:
    query = (
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.id == checkpoint_id)
        .options(undefer(Checkpoint.data))
    )
    return _load(session, session.scalars(query).one_or_none())


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
    return _load(session, session.scalars(query).one_or_none(), with_state=with_state)


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
        blobs = open_blobs(session)
        for checkpoint_id in doomed:
            blobs.delete_owned(checkpoint_id=checkpoint_id)
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
