"""Celery tasks. They take ids, never objects, and are safe to deliver twice."""
from __future__ import annotations

from store import tasks
from worker.celery_app import app, settings
from worker.training import run_job


@app.task(name=tasks.TRAIN)
def train(job_id: str) -> str:
    """Train job ``job_id``; returns the outcome ('succeeded', 'failed' or 'skipped')."""
    return run_job(job_id, settings)
