"""Typed dependencies that keep route signatures short."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.orm import Session

from config.settings import Settings, get_settings
from store.db import session_scope


def get_db(settings: Annotated[Settings, Depends(get_settings)]) -> Iterator[Session]:
    with session_scope(settings.resolved_database_url) as session:
        yield session


# scope="function": the session commits when the route returns, before the answer is sent, so a
# client that got 201 can use what it created at once (and a failed commit is never a 201)
SessionDep = Annotated[Session, Depends(get_db, scope="function")]
SettingsDep = Annotated[Settings, Depends(get_settings)]
