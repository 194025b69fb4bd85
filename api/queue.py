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


def enqueue_training(settings: Settings, job_id: str) -> None:
    """Send the train task for a committed job; raises if the broker is unreachable."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: no broker to send the job to")
    _client(settings.redis_url).send_task(
        queues.TRAIN, args=[job_id], queue=settings.queue, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )


def enqueue_evaluation(settings: Settings, evaluation_id: str) -> None:
    """Send the evaluate task for a committed evaluation; raises if the broker is unreachable."""
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: no broker to send the evaluation to")
    _client(settings.redis_url).send_task(
        queues.EVALUATE, args=[evaluation_id], queue=settings.queue, retry=True,
        retry_policy={"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5},
    )
