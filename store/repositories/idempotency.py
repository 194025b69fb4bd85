"""Idempotency keys: find the unexpired answer stored under an owner's key, or store one in
the caller's transaction (beside the row it created)."""
from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from store.models import IdempotencyKey, utcnow


def find(session: Session, *, owner: str, key: str) -> IdempotencyKey | None:
    return session.scalar(select(IdempotencyKey).where(
        IdempotencyKey.owner == owner, IdempotencyKey.key == key, IdempotencyKey.expires_at > utcnow()))


def remember(session: Session, *, owner: str, key: str, scope: str, fingerprint: str, status_code: int,
             response: Any, ttl_s: float) -> IdempotencyKey:
    """Store the answer (flushed now: a concurrent request with the same key then waits for this
    transaction and fails on the primary key). The owner's expired keys go first."""
    now = utcnow()
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.owner == owner, IdempotencyKey.expires_at <= now))
    row = IdempotencyKey(owner=owner, key=key, scope=scope, fingerprint=fingerprint, status_code=status_code,
                         response=response, created_at=now, expires_at=now + timedelta(seconds=ttl_s))
    session.add(row)
    session.flush()
    return row
