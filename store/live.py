"""The live side of job events: once a transaction that recorded events commits, they are
published on the job's Redis pub/sub channel, where the API's streams pick them up. The
database stays the source of truth: a lost publish is recovered from ``job_events`` (the
stream notices the gap in ``seq``), so publishing is best effort and never blocks a writer
for long (short timeouts, and a pause after a failure)."""
from __future__ import annotations

import json
import logging
import threading
import time

import redis
from sqlalchemy import event
from sqlalchemy.orm import Session

from store.repositories.events import PENDING

log = logging.getLogger(__name__)
PREFIX = "trainyard:job-events:"
RETRY_AFTER_S = 5.0  # after a failed publish, publishing pauses this long


def channel(job_id: str) -> str:
    return PREFIX + job_id


class Publisher:
    """Publishes committed events to Redis; after a failure it stays quiet for a while."""

    def __init__(self, url: str, timeout_s: float = 0.5):
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self._down_until = 0.0
        self._lock = threading.Lock()

    def publish(self, messages: list[dict]) -> None:
        if time.monotonic() < self._down_until:
            return
        by_job: dict[str, list[dict]] = {}
        for m in messages:
            by_job.setdefault(m["job_id"], []).append(m)
        try:
            with self._lock:
                pipe = self.client.pipeline(transaction=False)
                for job_id, batch in by_job.items():
                    pipe.publish(channel(job_id), json.dumps(batch))
                pipe.execute()
        except redis.RedisError as exc:
            self._down_until = time.monotonic() + RETRY_AFTER_S
            log.warning("could not publish job events (%s); subscribers will catch up from the database", exc)


_publisher: Publisher | None = None


def install(redis_url: str | None) -> None:
    """Publish the events of every session of this process after it commits (no Redis URL:
    nothing is published and streams read the database)."""
    global _publisher
    _publisher = Publisher(redis_url) if redis_url else None


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    pending = session.info.pop(PENDING, None)
    if pending and _publisher is not None:
        _publisher.publish(pending)


@event.listens_for(Session, "after_soft_rollback")
def _after_rollback(session: Session, _previous) -> None:
    session.info.pop(PENDING, None)
