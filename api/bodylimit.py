"""A request body may carry at most ``max_bytes``, counted as it arrives (Content-Length,
chunked transfer encoding or anything else): past it the app stops receiving and the client
gets a 413, so no framing makes the API read or spool more than the limit."""
from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class BodyTooLarge(Exception):
    """Raised into the app's read of the body once it passed the limit."""


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    def _refusal(self) -> tuple[Message, Message]:
        body = json.dumps({"detail": [{"loc": ["body"], "pointer": "/", "type": "value_error",
                                       "msg": f"request body exceeds {self.max_bytes} bytes (max_request_bytes)"}]})
        start = {"type": "http.response.start", "status": 413,
                 "headers": [(b"content-type", b"application/json"), (b"connection", b"close"),
                             (b"content-length", str(len(body)).encode())]}
        return start, {"type": "http.response.body", "body": body.encode()}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length" and value.isdigit() and int(value) > self.max_bytes:
                for message in self._refusal():
                    await send(message)
                return
        received = 0
        over = False
        started = False

        async def counted_receive() -> Message:
            nonlocal received, over
            if over:
                raise BodyTooLarge()
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    over = True
                    raise BodyTooLarge()
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:  # whatever the app answers to the cut body, the client hears the 413
                if not started:
                    started = True
                    for m in self._refusal():
                        await send(m)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            if not over:
                raise
            if not started:
                for m in self._refusal():
                    await send(m)
