"""Celery tasks. They take ids, never objects, and are safe to deliver twice."""
from __future__ import annotations

from config import queues
from worker.celery_app import app, settings
from worker.lifecycle import run_job


@app.task(name=queues.TRAIN)
def train(job_id: str) -> str:
    """Train job ``job_id``; returns the outcome ('succeeded', 'failed' or 'skipped')."""
    return run_job(job_id, settings)
