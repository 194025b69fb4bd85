"""Celery tasks. They take ids, never objects, and are safe to deliver twice."""
from __future__ import annotations

from celery import signals

from config import queues
from worker import failures, fleet, nodes
from worker.celery_app import app, send_train, settings
from worker.child import run_supervised
from worker.evaluation import run_evaluation
from worker.lifecycle import run_job

RETRY_MAX_S = 5.0  # a train message that met a database outage is tried again this often


@app.task(name=queues.TRAIN, bind=True, max_retries=None)
def train(self, job_id: str) -> str:
    """Train job ``job_id`` (in a supervised child process unless ``train_in_child`` is off);
    returns the outcome ('succeeded', 'failed', 'cancelled', 'requeued', 'deferred' or
    'skipped'). A message that cannot reach the database is retried with backoff (a new
    message, published before this one is acknowledged), never dropped. The job's GPUs on this
    host are held around the claim and the attempt (``worker.fleet.hold``); too few free now:
    'deferred', the message goes back to the queue."""
    try:
        with fleet.hold(job_id, settings) as held:
            if held is None:
                send_train(job_id, countdown=settings.cap_retry_s)
                return "deferred"
            return run_supervised(job_id, settings) if settings.train_in_child else run_job(job_id, settings)
    except Exception as exc:
        if failures.classify(exc) != failures.INFRASTRUCTURE:
            raise
        raise self.retry(exc=exc, countdown=min(RETRY_MAX_S, 0.5 * 2 ** self.request.retries)) from exc


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


@signals.worker_init.connect
def _refuse_prefork(sender=None, **_) -> None:
    """The prefork pool runs tasks in forked pool processes that never hear the worker's
    warm shutdown, so SIGTERM could neither checkpoint nor requeue a running job: refuse it."""
    from celery import concurrency

    pool = getattr(sender, "pool_cls", None)
    try:
        cls = concurrency.get_implementation(pool) if pool is not None else None
    except Exception:  # noqa: BLE001 - an unknown pool fails on its own later
        return
    if cls is not None and cls.__module__.endswith("prefork"):
        raise SystemExit("trainyard workers do not support Celery's prefork pool (a SIGTERM could neither "
                         "checkpoint nor requeue a running job): run with --pool solo (one job per worker "
                         "process; start more workers for more jobs) or --pool threads")
