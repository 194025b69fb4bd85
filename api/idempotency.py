"""``Idempotency-Key`` on POST /v1/jobs, /v1/sweeps and the dataset creates (/v1/datasets,
/upload, /builtin): a client that timed out can send the same request again with the same key
and get the first answer (its status and body, with ``Idempotent-Replayed: true``) instead of a
second resource. The answer is stored in the transaction that created the resource, so either
both exist or neither does; the same key with another request (another route or body) is a 422
naming the header. Keys are the owner's and expire after ``idempotency_ttl_s``."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.auth import OwnerDep
from api.deps import SettingsDep
from api.errors import FieldError, Replayed
from config.settings import Settings
from store.repositories import idempotency

HEADER = "Idempotency-Key"


@dataclass
class Idempotency:
    key: str | None
    owner: str
    scope: str
    fingerprint: str
    ttl_s: float

    def replay(self, session: Session) -> None:
        """Raise ``Replayed`` with the stored answer if this key was used for this request."""
        if self.key is None:
            return
        row = idempotency.find(session, owner=self.owner, key=self.key)
        if row is None:
            return
        if row.scope != self.scope or row.fingerprint != self.fingerprint:
            what = "another body" if row.scope == self.scope else row.scope
            raise FieldError(["header", HEADER], f"this key was used for {what} within the last "
                                                 f"{self.ttl_s:g} s; send a new key with a new request")
        raise Replayed(JSONResponse(row.response, status_code=row.status_code,
                                    headers={"Idempotent-Replayed": "true"}))

    def remember(self, session: Session, status_code: int, answer: BaseModel) -> None:
        """Store ``answer`` under the key in the session's transaction (before its commit). If a
        concurrent request with the same key committed first, this transaction is rolled back and
        that request's answer is the reply."""
        if self.key is None:
            return
        try:
            idempotency.remember(session, owner=self.owner, key=self.key, scope=self.scope,
                                 fingerprint=self.fingerprint, status_code=status_code,
                                 response=jsonable_encoder(answer), ttl_s=self.ttl_s)
        except IntegrityError:
            session.rollback()
            self.replay(session)
            raise


KeyHeader = Annotated[str | None, Header(alias=HEADER, min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$",
                                         description="send the request again with the same key to get the "
                                                     "first answer instead of a second resource")]


def keyed(request: Request, owner: str, settings: Settings, key: str | None, parts: Iterable[bytes]) -> Idempotency:
    """The request's key with its fingerprint: SHA-256 of the route and ``parts``, the bytes that
    make the request (a retry sends the same ones); ``parts`` is read only when a key was sent."""
    scope = f"{request.method} {request.url.path}"
    fingerprint = ""
    if key:
        h = hashlib.sha256(scope.encode() + b"\n")
        for part in parts:
            h.update(part)
        fingerprint = h.hexdigest()
    return Idempotency(key=key, owner=owner, scope=scope, fingerprint=fingerprint, ttl_s=settings.idempotency_ttl_s)


async def idempotency_of(request: Request, owner: OwnerDep, settings: SettingsDep,
                         key: KeyHeader = None) -> Idempotency:
    """For a JSON request: the fingerprint is of its body's bytes."""
    return keyed(request, owner, settings, key, [await request.body()] if key else [])


IdempotencyDep = Annotated[Idempotency, Depends(idempotency_of)]
