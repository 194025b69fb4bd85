"""Uploaded initial weights: a checked safetensors file and its tensors' names and shapes."""
from __future__ import annotations

from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import select
from sqlalchemy.orm import Session

from store.models import Weights


def create(session: Session, *, owner: str, name: str, data: bytes, tensors: dict[str, Any]) -> Weights:
    row = Weights(owner=owner, name=name, data=data, tensors=tensors, size_bytes=len(data))
    session.add(row)
    session.flush()
    return row


def get(session: Session, *, weights_id: str, owner: str | None = None) -> Weights | None:
    row = session.get(Weights, weights_id)
    return row if row is not None and owner in (None, row.owner) else None


def data(session: Session, *, weights_id: str) -> bytes | None:
    """The file, or None if the weights were deleted."""
    return session.scalars(select(Weights.data).where(Weights.id == weights_id)).one_or_none()


def list_all(session: Session, *, owner: str, limit: int = 100) -> list[Weights]:
    query = select(Weights).where(Weights.owner == owner).order_by(Weights.created_at.desc()).limit(limit)
    return list(session.scalars(query))


def delete(session: Session, *, weights_id: str) -> bool:
    return session.execute(sa_delete(Weights).where(Weights.id == weights_id)).rowcount == 1


