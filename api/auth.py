"""Who is calling: the owner behind the request's API key.

Keys come from settings (``TRAINYARD_API_KEYS``), sent as ``Authorization: Bearer <key>``
or ``X-API-Key: <key>``. With no keys configured the API is open and everything belongs to
the owner ``local``. Another owner's resources answer 404, never 403, so ids do not leak.
"""
from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status

from api.deps import SettingsDep
from config.settings import Settings

LOCAL_OWNER = "local"


def _presented_key(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return request.headers.get("x-api-key")


def owner_of(request: Request, settings: Settings) -> str | None:
    """The owner of the request's API key (``local`` without keys), or None for no valid key."""
    if not settings.api_keys:
        return LOCAL_OWNER
    key = _presented_key(request)
    if key:
        for known, owner in settings.api_keys.items():
            if hmac.compare_digest(known.encode(), key.encode()):
                return owner
    return None


def current_owner(request: Request, settings: SettingsDep) -> str:
    owner = owner_of(request, settings)
    if owner is not None:
        return owner
    raise HTTPException(
        status.HTTP_401_UNAUTHORIZED,
        "a valid API key is required (Authorization: Bearer <key> or X-API-Key)",
        headers={"WWW-Authenticate": "Bearer"},
    )


OwnerDep = Annotated[str, Depends(current_owner)]
