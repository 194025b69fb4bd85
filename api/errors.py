"""Error responses: every 4xx names the failing field as ``loc`` and a JSON ``pointer``."""
from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc

from engine.spec import SpecError
from plan import PlanError

log = logging.getLogger(__name__)

# the database is away, hung or out of connections: the request may succeed if retried
DATABASE_UNAVAILABLE = (sa_exc.OperationalError, sa_exc.InterfaceError, sa_exc.DisconnectionError,
                        sa_exc.TimeoutError, psycopg.OperationalError, psycopg.InterfaceError)


def field_error(loc: list[Any], msg: str, type_: str = "value_error") -> dict[str, Any]:
    pointer = "".join(f"/{p}" for p in loc[1:]) if loc and loc[0] == "body" else ""
    return {"loc": loc, "pointer": pointer or "/", "msg": msg, "type": type_}


class Replayed(Exception):
    """An answer given before (``Idempotency-Key``), sent again as it is."""

    def __init__(self, response: JSONResponse):
        self.response = response


class FieldError(Exception):
    """A request field that validated alone but is wrong in context (e.g. unknown id)."""

    def __init__(self, loc: list[Any], msg: str, status_code: int = 422):
        self.loc, self.msg, self.status_code = loc, msg, status_code


def install(app: FastAPI, *, retry_after_s: int = 5) -> None:
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable during %s %s: %s", request.method, request.url.path,
                    str(exc).splitlines()[0][:300] if str(exc) else exc.__class__.__name__)
        return JSONResponse(
            status_code=503, headers={"Retry-After": str(retry_after_s)},
            content={"detail": f"the database is unavailable ({exc.__class__.__name__}); retry in {retry_after_s} s"})

    for cls in DATABASE_UNAVAILABLE:
        app.add_exception_handler(cls, _database)

    @app.exception_handler(Replayed)
    async def _replayed(_: Request, exc: Replayed) -> JSONResponse:
        return exc.response

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        detail = [
            field_error(list(e.get("loc", ())), str(e.get("msg", "")), str(e.get("type", "")))
            for e in exc.errors()
        ]
        return JSONResponse(status_code=422, content=jsonable_encoder({"detail": detail}))

    @app.exception_handler(SpecError)
    async def _spec(_: Request, exc: SpecError) -> JSONResponse:
        loc = ["body", "model", *exc.path]
        return JSONResponse(status_code=422, content={"detail": [field_error(loc, exc.message)]})

    @app.exception_handler(PlanError)
    async def _plan(_: Request, exc: PlanError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": [field_error(exc.loc, exc.message)]})

    @app.exception_handler(FieldError)
    async def _field(_: Request, exc: FieldError) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"detail": [field_error(exc.loc, exc.msg)]}
        )
