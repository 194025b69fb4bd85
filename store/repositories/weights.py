"""Initial weights a job may start from: a checked safetensors file (the blob
weights/<id>/file, ``store.blobs``) and its tensors' names and shapes. Rows from before the
blob store (``layout`` NULL) keep their file inline and read the same."""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.blobs import Blobs, open_blobs
from store.models import Weights, new_id

BLOBS = "blobs"


def _key(weights_id: str) -> str:
    return f"weights/{weights_id}/file"


def create(session: Session, *, owner: str, name: str, data: bytes | Iterable[bytes], tensors: dict[str, Any],
           blobs: Blobs | None = None) -> Weights:
    """Store a checked file: ``data`` whole, or as pieces (a checkpoint's blob copied chunk by
    chunk, never whole in memory)."""
    blobs = blobs or open_blobs(session)
    row = Weights(id=new_id(), owner=owner, name=name, data=b"", tensors=tensors, size_bytes=0, layout=BLOBS)
    session.add(row)
    session.flush()
    row.size_bytes = blobs.put(_key(row.id), data, weights_id=row.id).size_bytes
    session.flush()
    return row


def get(session: Session, *, weights_id: str, owner: str | None = None) -> Weights | None:
    row = session.get(Weights, weights_id)
    return row if row is not None and owner in (None, row.owner) else None


def data(session: Session, *, weights_id: str) -> bytes | None:
    """The file, or None if the weights were deleted."""
    row = session.execute(select(Weights.layout).where(Weights.id == weights_id)).first()
    if row is None:
        return None
    if row.layout == BLOBS:
        return open_blobs(session).get(_key(weights_id))
    return session.scalars(select(Weights.data).where(Weights.id == weights_id)).one()


def list_all(session: Session, *, owner: str, limit: int = 100) -> list[Weights]:
    query = select(Weights).where(Weights.owner == owner).order_by(Weights.created_at.desc()).limit(limit)
    return list(session.scalars(query))


def delete(session: Session, *, weights_id: str) -> bool:
    open_blobs(session).delete_owned(weights_id=weights_id)  # the filesystem backend's files too
    return session.execute(sa_delete(Weights).where(Weights.id == weights_id)).rowcount == 1
