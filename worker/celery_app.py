"""The Celery application the worker process runs (``celery -A worker.celery_app worker``)."""
from __future__ import annotations

from celery import Celery

from store.settings import get_settings

settings = get_settings()

app = Celery("trainyard", broker=settings.redis_url, include=["worker.tasks"])
app.conf.update(
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    task_ignore_result=True,
    task_default_queue=settings.queue,
    # Long tasks: take one message at a time and acknowledge it only when done.
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 24 * 3600},
    worker_cancel_long_running_tasks_on_connection_loss=True,
)
