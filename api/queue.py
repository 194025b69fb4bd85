"""Enqueues work for the worker by task name (api never imports worker's modules)."""
from __future__ import annotations

from functools import lru_cache

from celery import Celery

from config import queues
from config.settings import Settings


@lru_cache
def _client(broker_url: str) -> Celery:
    app = Celery("trainyard-api", broker=broker_url)
    app.conf.update(task_serializer="json", accept_content=["json"])
    return app


def _kind_of(settings: Settings, *, job_id: str | None = None, evaluation_id: str | None = None) -> str:
    """The device kind (queue) a committed job, or an evaluation's job, was routed to."""
    from store.db import session_scope
    from store.models import Evaluation
    from store.repositories import workers

    with session_scope(settings.resolved_database_url) as session:
        if evaluation_id is not None:
            job_id = session.get(Evaluation, evaluation_id).job_id
        return workers.device_kind_of_job(session, job_id=job_id)


def enqueue_training(settings: Settings, job_id: str, kind: str | None = None) -> None:
    """Send the train task for a committed job to its device kind's queue (read from its plan
    in a session of its own unless given: pass it while holding a write transaction, which
    SQLite would make that read wait for); raises if the broker is unreachable."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: no broker to send the job to")
    kind = kind or _kind_of(settings, job_id=job_id)
    _client(settings.redis_url).send_task(
        queues.TRAIN, args=[job_id], queue=queues.name(settings.queue, kind), retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )


def enqueue_evaluation(settings: Settings, evaluation_id: str) -> None:
    """Send the evaluate task for a committed evaluation to its job's queue; raises if the
    broker is unreachable."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: no broker to send the evaluation to")
    queue = queues.name(settings.queue, _kind_of(settings, evaluation_id=evaluation_id))
    _client(settings.redis_url).send_task(
        queues.EVALUATE, args=[evaluation_id], queue=queue, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )
