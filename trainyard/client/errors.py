"""What the client raises: the API's own error, with the field it names."""
from __future__ import annotations

from typing import Any


class TrainyardError(Exception):
    """Base of the client's errors."""


class ApiError(TrainyardError):
    """An HTTP error answer. ``detail`` is the API's list of ``{loc, pointer, msg, type}``;
    ``pointer`` and ``message`` are its first entry's (the field at fault and why)."""

    def __init__(self, status_code: int, detail: Any, method: str = "", url: str = ""):
        self.status_code, self.detail, self.method, self.url = status_code, detail, method, url
        first = detail[0] if isinstance(detail, list) and detail and isinstance(detail[0], dict) else {}
        self.pointer: str | None = first.get("pointer")
        self.loc: list[Any] | None = first.get("loc")
        self.message: str = first.get("msg") or (detail if isinstance(detail, str) else str(detail))
        where = f" at {self.pointer}" if self.pointer and self.pointer != "/" else ""
        super().__init__(f"{status_code}{where}: {self.message}")


class NotFound(ApiError):
    """404: no such resource for this API key's owner."""


class InvalidRequest(ApiError):
    """422 (or another 4xx about the request): ``pointer`` names the field."""


class Unauthorized(ApiError):
    """401: a valid API key is needed (``TRAINYARD_API_KEY``)."""


class Conflict(ApiError):
    """409: the resource's state does not allow it (e.g. cancelling a finished job)."""


class ServerError(ApiError):
    """5xx after the retries."""


class Unreachable(TrainyardError):
    """The API could not be reached after the retries."""


class JobFailed(TrainyardError):
    """``wait(raise_on_failure=True)`` on a job that failed or was cancelled."""

    def __init__(self, job: Any):
        self.job = job
        super().__init__(f"job {job.id} {job.status}: {job.error or ''}".rstrip(": "))


def for_status(status_code: int, detail: Any, method: str, url: str) -> ApiError:
    cls = {401: Unauthorized, 404: NotFound, 409: Conflict}.get(status_code)
    if cls is None:
        cls = ServerError if status_code >= 500 else InvalidRequest
    return cls(status_code, detail, method, url)
