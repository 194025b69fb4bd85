"""Getting queued jobs' messages to the broker, and noticing when the broker lost them.

The database is the outbox: a queued job whose ``enqueued_at`` is NULL has no message yet.
Whoever sends one marks it sent only after the broker accepted the message; a failed send
leaves it NULL, so the reaper's next pass (seconds later) sends it again.

A broker that lost its data (restarted without persistence, FLUSHALL) silently drops every
message it held. ``BrokerWatch`` keeps a marker key in the broker; when it is gone, every
queued job is due for a new message at once instead of after ``requeue_after_s``. (The extra
messages this may send are harmless: the database decides who runs a job.)
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Callable

from store.db import session_scope
from store.repositories import jobs

log = logging.getLogger(__name__)


def send_due(url: str, job_ids: list[str], send: Callable[[str], None]) -> list[str]:
    """Send each job's message; mark the accepted ones sent and the rest unsent (the first
    failure ends the pass: the broker is away). Returns the ids sent."""
    if not job_ids:
        return []
    sent: list[str] = []
    error: Exception | None = None
    for job_id in job_ids:
        try:
            send(job_id)
        except Exception as exc:  # noqa: BLE001 - the job stays due; the next pass retries
            error = exc
            break
        sent.append(job_id)
    unsent = job_ids[len(sent):]
    with session_scope(url) as session:
        jobs.mark_sent(session, job_ids=sent)
        jobs.mark_unsent(session, job_ids=unsent)
    if error is not None:
        log.warning("could not send %d queued job(s) (%s); the next pass retries", len(unsent), error)
    return sent


class BrokerWatch:
    """Tells whether the broker lost its data since the last look, by a marker key in it."""

    def __init__(self, redis_url: str | None, queue: str):
        self.url, self.key = redis_url, f"trainyard:broker-marker:{queue}"
        self._client = None

    def lost(self) -> bool:
        """True once after the marker disappeared (and the first time a broker has none: a
        new or emptied broker). Raises if the broker cannot be reached."""
        if not self.url:
            return False
        if self._client is None:
            import redis

            self._client = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)
        created = self._client.set(self.key, uuid.uuid4().hex, nx=True)
        if created:
            log.warning("the broker has no marker (new, restarted without data, or flushed): "
                        "re-sending every queued job")
        return bool(created)
