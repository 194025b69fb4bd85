"""One retry policy for a worker's database writes: exponential backoff while the database
is away (a restart, a failover), giving up after ``retry_for_s``."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError

log = logging.getLogger(__name__)
T = TypeVar("T")


def with_db_retry(write: Callable[[], T], *, what: str, retry_for_s: float = 60.0) -> T:
    """``write()``, retried on database errors with delays of 0.1 s doubling to 5 s; the last
    error is raised once the next delay would pass ``retry_for_s``."""
    deadline = time.monotonic() + retry_for_s
    delay = 0.1
    while True:
        try:
            return write()
        except DBAPIError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1fs", what, exc.orig, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
