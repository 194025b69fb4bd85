"""Failure classes: whose fault is an exception, and is it worth another attempt."""
from __future__ import annotations

USER = "user"
OOM = "oom"
INFRASTRUCTURE = "infrastructure"
TIMEOUT = "timeout"
CANCELLED = "cancelled"


class Cancelled(Exception):
    """The job was cancelled; the loop stopped at a step boundary."""


class RankLost(RuntimeError):
    """A data-parallel job lost one of its rank processes (killed, crashed, out of memory)."""


class TimeLimitExceeded(Exception):
    """The job ran past its time limit."""


def classify(exc: BaseException) -> str:
    """Database, broker and network errors are infrastructure (retried); running out of
    memory is ``oom``; anything else raised while training is the job's own (not retried)."""
    if isinstance(exc, TimeLimitExceeded):
        return TIMEOUT
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
        return OOM
    module = type(exc).__module__ or ""
    if module.startswith(("sqlalchemy", "psycopg", "sqlite3", "redis", "kombu")):
        return INFRASTRUCTURE
    if isinstance(exc, (ConnectionError, TimeoutError, RankLost)):
        return INFRASTRUCTURE
    return USER
