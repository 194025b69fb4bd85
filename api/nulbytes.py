"""No NUL character in any string a request carries: PostgreSQL cannot store one in text, so
it would be a 500 there and a silent difference from SQLite. Query parameters are checked
before routing (a 422 naming the parameter); path parameters, JSON bodies and form fields by a
dependency of every route (a 422 at the field's ``loc``); the dashboard's files answer 404."""
from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from starlette.datastructures import UploadFile
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Receive, Scope, Send

from api.errors import field_error

MESSAGE = "must not contain NUL (\\u0000) characters"


def _error(loc: list[Any]) -> dict[str, Any]:
    return {"loc": loc, "msg": MESSAGE, "type": "string_nul"}


class NulByteMiddleware:
    """422 for a NUL in a query parameter's name or value, naming it, before any route runs."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            query = scope.get("query_string", b"").decode("latin-1")
            errors = [field_error(["query", key.replace("\x00", "\\u0000")], MESSAGE, "string_nul")
                      for key, value in parse_qsl(query, keep_blank_values=True) if "\x00" in key + value]
            if errors:
                body = json.dumps({"detail": errors}).encode()
                await send({"type": "http.response.start", "status": 422,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


class Dashboard(StaticFiles):
    """The dashboard's files; a path with a NUL names no file (a 404, not an OS error)."""

    def lookup_path(self, path: str):
        if "\x00" in path:
            return "", None
        return super().lookup_path(path)


def _walk(value: Any, loc: list[Any], found: list[dict]) -> None:
    if isinstance(value, str):
        if "\x00" in value:
            found.append(_error(loc))
    elif isinstance(value, dict):
        for k, v in value.items():
            if "\x00" in k:
                found.append(_error([*loc, k]))
            _walk(v, [*loc, k], found)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _walk(v, [*loc, i], found)


async def reject_nul_in_body(request: Request) -> None:
    """A route dependency: a NUL in a path parameter, anywhere in the JSON body or in a form
    field is a 422 at its loc."""
    found = [_error(["path", k]) for k, v in request.path_params.items() if "\x00" in str(v)]
    if found or request.method in ("GET", "HEAD", "OPTIONS", "DELETE"):
        if found:
            raise RequestValidationError(found)
        return
    kind = request.headers.get("content-type", "")
    if kind.startswith(("multipart/form-data", "application/x-www-form-urlencoded")):
        form = await request.form()
        for key, value in form.multi_items():
            if isinstance(value, UploadFile):
                if value.filename and "\x00" in value.filename:
                    found.append(_error(["body", key, "filename"]))
            elif "\x00" in key or "\x00" in value:
                found.append(_error(["body", key]))
    elif not kind or "json" in kind:  # FastAPI reads a body without a content type as JSON too
        if b"\\u0000" in await request.body():
            try:
                _walk(await request.json(), ["body"], found)  # parsed once: the route reads the same
            except ValueError:
                return  # not JSON: the route's own parsing answers
    if found:
        raise RequestValidationError(found[:20])
