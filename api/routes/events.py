"""/v1/jobs/{id}/events (the live stream, Server-Sent Events) and /v1/jobs/{id}/logs.

A stream first replays the job's stored events after the client's position
(``Last-Event-ID`` or ``after``), then forwards what arrives on the job's Redis channel.
Event ids are the job's event ``seq``: a reconnecting client gets what it missed and
nothing twice. A gap in the live sequence (a publish that was lost) and a Redis outage are
covered from the database. After a terminal ``status`` the stream sends ``end`` and closes.
The stream holds no database connection between its short reads.
"""
from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import anyio
import redis
import redis.asyncio as aioredis
from fastapi import APIRouter, Header, Query
from fastapi.concurrency import run_in_threadpool
from sse_starlette import EventSourceResponse, ServerSentEvent

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.routes.jobs import get_job_or_404
from api.schemas.events import LogLine, LogPage
from store import live
from store.db import session_scope
from store.models import Job, JobStatus
from store.repositories import events

MAX_SEQ = 2**31 - 1  # event numbers, attempts and log positions are 32-bit columns
router = APIRouter(prefix="/jobs/{job_id}", tags=["events"])
log = logging.getLogger(__name__)
KEEPALIVE_S = 15.0
CHECK_S = 15.0  # with Redis, how often an idle stream asks the database whether it missed something
POLL_S = 1.0  # without Redis (or while it is down), how often the stream reads the database
PAGE = 500


def _position(after: int | None, last_event_id: str | None) -> int:
    if last_event_id is not None and last_event_id.strip():
        try:
            return max(0, int(last_event_id.strip()))
        except ValueError:
            raise FieldError(["header", "last-event-id"],
                             "must be the id of an event this stream sent (an integer)") from None
    return after or 0


@router.get("/events", response_class=EventSourceResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "events status, progress, metric, checkpoint, log; then end"}})
async def job_events(job_id: str, owner: OwnerDep, settings: SettingsDep,
                     after: Annotated[int | None, Query(ge=0, le=MAX_SEQ,
                                                        description="replay events after this id")] = None,
                     last_event_id: Annotated[str | None, Header()] = None) -> EventSourceResponse:
    """The job's events as Server-Sent Events, from after ``Last-Event-ID`` (or ``after``;
    default: the whole history) until it ends. Keep-alive comments every 15 s."""
    start = _position(after, last_event_id)
    url = settings.resolved_database_url

    def check() -> None:
        with session_scope(url) as session:
            get_job_or_404(session, job_id, owner)

    await run_in_threadpool(check)
    return EventSourceResponse(_stream(job_id, start, url, settings.redis_url), ping=KEEPALIVE_S,
                               headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _read(url: str, job_id: str, seq: int) -> tuple[list[dict[str, Any]], str | None, int]:
    """(up to PAGE stored events after ``seq``, the job's status, its newest seq)."""
    with session_scope(url) as session:
        rows = [events.as_message(e) for e in events.after(session, job_id=job_id, seq=seq, limit=PAGE)]
        job = session.get(Job, job_id)
        return rows, job.status if job else None, job.event_seq if job else 0


def _sse(message: dict[str, Any]) -> ServerSentEvent:
    return ServerSentEvent(data=json.dumps(message["data"]), event=message["kind"], id=str(message["seq"]))


def _ends(message: dict[str, Any]) -> bool:
    return message["kind"] == events.STATUS and message["data"].get("status") in JobStatus.TERMINAL


async def _stream(job_id: str, last: int, url: str, redis_url: str | None) -> AsyncIterator[ServerSentEvent]:
    client = pubsub = None
    try:
        if redis_url:
            client, pubsub = await _subscribe(redis_url, job_id)
        checked = time.monotonic()
        while True:
            # catch up from the database: the history, or what the live channel missed
            while True:
                rows, job_status, newest = await run_in_threadpool(_read, url, job_id, last)
                for m in rows:
                    yield _sse(m)
                    last = m["seq"]
                    if _ends(m):
                        yield _end(m["data"]["status"], m["seq"])
                        return
                if job_status is None:
                    return  # the job was deleted
                if len(rows) < PAGE:
                    break
            if job_status in JobStatus.TERMINAL and last >= newest:
                yield _end(job_status, last)
                return
            # live: forward the channel's events in order until a gap, a lull or an outage
            while True:
                if pubsub is None:
                    await anyio.sleep(POLL_S)
                    if redis_url:
                        try:
                            client, pubsub = await _subscribe(redis_url, job_id)
                        except redis.RedisError:
                            client = pubsub = None
                    break
                try:
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                except (redis.RedisError, OSError) as exc:
                    log.warning("live channel of job %s lost (%s); reading the database", job_id, exc)
                    await _close(client, pubsub)
                    client = pubsub = None
                    break
                if message is None:
                    if time.monotonic() - checked > CHECK_S:
                        checked = time.monotonic()
                        break  # a cheap look at the database in case a publish was lost
                    continue
                gap = False
                for m in json.loads(message["data"]):
                    if m["seq"] <= last:
                        continue
                    if m["seq"] != last + 1:
                        gap = True
                        break
                    yield _sse(m)
                    last = m["seq"]
                    if _ends(m):
                        yield _end(m["data"]["status"], m["seq"])
                        return
                if gap:
                    break
    finally:
        with anyio.CancelScope(shield=True):  # a client that left cancelled us: still unsubscribe
            await _close(client, pubsub)


def _end(status: str, seq: int) -> ServerSentEvent:
    """The stream's last event: the job's terminal status, with the id of the event that set it."""
    return ServerSentEvent(data=json.dumps({"status": status}), event="end", id=str(seq))


async def _subscribe(redis_url: str, job_id: str):
    client = aioredis.Redis.from_url(redis_url, socket_connect_timeout=2)
    pubsub = client.pubsub()
    try:
        await pubsub.subscribe(live.channel(job_id))
    except BaseException:
        await _close(client, pubsub)
        raise
    return client, pubsub


async def _close(client, pubsub) -> None:
    try:
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()
    except (redis.RedisError, OSError):
        pass


@router.get("/logs", response_model=LogPage)
def job_logs(job_id: str, session: SessionDep, owner: OwnerDep,
             attempt: Annotated[int | None, Query(ge=1, le=MAX_SEQ, description="only this attempt's lines")] = None,
             after: Annotated[int, Query(ge=0, le=MAX_SEQ, description="the last_seq of the previous page")] = 0,
             limit: Annotated[int, Query(ge=1, le=10_000, description="log events per page")] = 1000) -> LogPage:
    """A job's log lines (the training loop's messages, warnings, failure tracebacks), oldest
    first, per attempt; page with ``after`` = the previous answer's ``last_seq``."""
    get_job_or_404(session, job_id, owner)
    rows = events.after(session, job_id=job_id, seq=after, kinds=(events.LOG,), attempt=attempt, limit=limit)
    lines = [LogLine(seq=e.seq, attempt=e.attempt, **line) for e in rows for line in e.data.get("lines", [])]
    newest = events.newest(session, job_id=job_id, kind=events.LOG)
    truncated = newest is not None and newest.data.get("lines", [{}])[-1].get("message") == events.TRUNCATED
    return LogPage(job_id=job_id, lines=lines, last_seq=rows[-1].seq if rows else after, truncated=truncated)
