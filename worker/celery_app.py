"""The Celery application the worker process runs (``celery -A worker.celery_app worker``)."""
from __future__ import annotations

from celery import Celery, signals

from config import queues
from config.settings import get_settings
from store import live
from worker.fleet import Presence
from worker.outbox import BrokerWatch
from worker.supervision import WORKER_SHUTDOWN, Reaper

settings = get_settings()
live.install(settings.redis_url)

app = Celery("trainyard", broker=settings.redis_url, include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_default_queue=settings.queue,
    # Long tasks: one message at a time, acknowledged when done. The database, not the
    # broker, decides whether a job runs (see store.repositories.jobs.claim), so redelivered
    # or duplicated messages are harmless and the reaper's attempt cap prevents loops.
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": settings.max_job_seconds + 3600},
    worker_cancel_long_running_tasks_on_connection_loss=True,
)


def send_train(job_id: str, countdown: float | None = None) -> None:
    """Send job ``job_id``'s train task to the queue of its plan's device kind."""
    from store.db import session_scope
    from store.repositories import workers

    with session_scope(settings.resolved_database_url) as session:
        kind = workers.device_kind_of_job(session, job_id=job_id)
    app.send_task(queues.TRAIN, args=[job_id], queue=queues.name(settings.queue, kind), countdown=countdown)


def send_join(job_id: str, attempt: int, address: str, port: int, world: int, per_node: int,
              countdown: float | None = None) -> None:
    """Ask another host of this worker's kind to run its share of a multi-node job (``worker.nodes``)."""
    from worker.fleet import _identity

    app.send_task(queues.JOIN, args=[job_id, attempt, address, port, world, per_node],
                  queue=_identity(settings).queue, countdown=countdown)


_reaper: Reaper | None = None


@signals.worker_ready.connect
def _start_reaper(**_) -> None:
    global _reaper
    _reaper = Reaper(settings.resolved_database_url, settings.reaper_interval_s, settings.requeue_after_s, send_train,
                     broker_lost=BrokerWatch(settings.redis_url, settings.queue).lost)
    _reaper.start()


_presence: Presence | None = None


@signals.worker_ready.connect
def _join_fleet(**_) -> None:
    global _presence
    _presence = Presence(settings)
    _presence.start()


@signals.worker_shutdown.connect
def _leave_fleet(**_) -> None:
    if _presence is not None:
        _presence.stop()


@signals.worker_shutting_down.connect
def _shutting_down(**_) -> None:
    WORKER_SHUTDOWN.set()
    if _reaper is not None:
        _reaper.stop()
