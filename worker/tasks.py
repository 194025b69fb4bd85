"""Celery tasks. They take ids, never objects, and are safe to deliver twice."""
from __future__ import annotations

from config import queues
from worker.celery_app import app, settings
from worker.evaluation import run_evaluation
from worker.lifecycle import run_job


@app.task(name=queues.TRAIN)
def train(job_id: str) -> str:
    """Train job ``job_id``; returns the outcome ('succeeded', 'failed' or 'skipped')."""
    return run_job(job_id, settings)


@app.task(name=queues.EVALUATE, bind=True, max_retries=8)
def evaluate(self, evaluation_id: str) -> str:
    """Evaluate ``evaluation_id``; returns 'succeeded', 'failed' or 'skipped'. A database or
    broker error is retried with backoff (the evaluation stays running and is run again)."""
    try:
        return run_evaluation(evaluation_id, settings)
    except Exception as exc:  # run_evaluation records every other failure itself
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
