"""Celery tasks. They take ids, never objects, and are safe to deliver twice."""
from __future__ import annotations

from config import queues
from worker import fleet, nodes
from worker.celery_app import app, send_train, settings
from worker.evaluation import run_evaluation
from worker.lifecycle import run_job


@app.task(name=queues.TRAIN)
def train(job_id: str) -> str:
    """Train job ``job_id``; returns the outcome ('succeeded', 'failed', 'skipped' or 'deferred').
    The job's GPUs on this host are held around the claim and the attempt (``worker.fleet.hold``);
    too few free now: 'deferred', the message goes back to the queue."""
    with fleet.hold(job_id, settings) as held:
        if held is None:
            send_train(job_id, countdown=settings.cap_retry_s)
            return "deferred"
        return run_job(job_id, settings)


@app.task(name=queues.JOIN)
def join(job_id: str, attempt: int, address: str, port: int, world: int, per_node: int) -> str:
    """Run this host's ranks of a multi-node job (``worker.nodes.join``)."""
    return nodes.join(job_id, attempt, address, port, world, per_node, settings)


@app.task(name=queues.EVALUATE, bind=True, max_retries=8)
def evaluate(self, evaluation_id: str) -> str:
    """Evaluate ``evaluation_id``; returns 'succeeded', 'failed' or 'skipped'. A database or
    broker error is retried with backoff (the evaluation stays running and is run again)."""
    try:
        return run_evaluation(evaluation_id, settings)
    except Exception as exc:  # run_evaluation records every other failure itself
        raise self.retry(exc=exc, countdown=min(60, 2 ** self.request.retries)) from exc
