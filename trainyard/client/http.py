"""The client's HTTP layer: base URL, API key, JSON errors as exceptions, and retries with
backoff on connection errors and 503 (never on other answers: a 4xx is the caller's to fix,
and a request that may have reached the server is not sent twice)."""
from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
from httpx_sse import ServerSentEvent, connect_sse

from trainyard.client.errors import Unreachable, for_status

DEFAULT_URL = "http://127.0.0.1:8000"


class Http:
    """One connection pool to the API. ``retries`` attempts after the first, waiting
    ``backoff_s`` doubling (or the server's Retry-After) between them."""

    def __init__(self, url: str | None = None, api_key: str | None = None, *, timeout: float = 30.0,
                 retries: int = 5, backoff_s: float = 0.5, transport: httpx.BaseTransport | None = None):
        self.url = (url or os.environ.get("TRAINYARD_URL") or DEFAULT_URL).rstrip("/")
        key = api_key if api_key is not None else os.environ.get("TRAINYARD_API_KEY")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, transport=transport)
        self.retries, self.backoff_s = retries, backoff_s

    def close(self) -> None:
        self.client.close()

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """The answer to ``method path``; raises the matching ApiError for an error answer."""
        delay = self.backoff_s
        for attempt in range(self.retries + 1):
            last = attempt == self.retries
            try:
                response = self.client.request(method, path, **kwargs)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:  # not sent: safe to send again
                if last:
                    raise Unreachable(f"cannot reach the Trainyard API at {self.url}: {exc}") from exc
                time.sleep(delay)
                delay *= 2
                continue
            if response.status_code == 503 and not last:
                time.sleep(_retry_after(response, delay))
                delay *= 2
                continue
            if response.is_error:
                raise for_status(response.status_code, _detail(response), method, path)
            return response
        raise AssertionError("unreachable")

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()

    @contextmanager
    def events(self, path: str, last_event_id: int | None = None) -> Iterator[Iterator[ServerSentEvent]]:
        """A Server-Sent Events stream (no read timeout: a stream may be quiet for long)."""
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        timeout = httpx.Timeout(self.client.timeout.connect, read=None)
        with connect_sse(self.client, "GET", path, headers=headers, timeout=timeout) as source:
            if source.response.is_error:
                source.response.read()
                raise for_status(source.response.status_code, _detail(source.response), "GET", path)
            yield source.iter_sse()


def _retry_after(response: httpx.Response, default: float) -> float:
    try:
        return min(float(response.headers.get("retry-after", default)), 60.0)
    except ValueError:
        return default


def _detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    return body.get("detail", body) if isinstance(body, dict) else body
