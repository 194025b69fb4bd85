"""A job's life on a worker: claim it, keep its lease, run the training loop (in this
process and, for data-parallel jobs, in follower ranks) and record how it ended: succeeded,
failed (classified), cancelled, or released back to the queue to resume elsewhere.

A job may run in several attempts (worker lost, graceful stop, infrastructure error); each
resumes from the last checkpoint so that the final weights equal an uninterrupted run's.
"""
from __future__ import annotations

import logging
import os
import socket
import traceback
from datetime import UTC

import numpy as np
from pydantic import ValidationError

from config.settings import Settings
from plan import TrainingPlan, splits
from store.db import session_scope
from store.models import JobStatus
from store.repositories import checkpoints, jobs, metrics, throughput, weights
from worker import data, failures, loop, parallel, resources, sweeps
from worker.joblog import job_log
from worker.reporting import JobLost, Reporter
from worker.retry import with_db_retry
from worker.supervision import Control, Heartbeat

log = logging.getLogger(__name__)

CAPPED = object()  # _claim's answer when the job's owner is at its concurrency cap


def worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_job(job_id: str, settings: Settings) -> str:
    """Run (or resume) one job. A job that is not queued, already finished or running
    under another delivery, is skipped, so a redelivered message never trains twice.
    Returns 'succeeded', 'failed', 'cancelled', 'requeued', 'deferred' or 'skipped'. A sweep
    trial that ended (whichever way) launches its sweep's next trial at once."""
    outcome = _run(job_id, settings)
    if outcome in ("succeeded", "failed", "cancelled"):
        sweeps.job_finished(job_id, settings)
    return outcome


def _run(job_id: str, settings: Settings) -> str:
    url = settings.resolved_database_url
    try:
        claimed = _claim(job_id, settings)
    except Exception as exc:
        if failures.classify(exc) == failures.INFRASTRUCTURE:
            raise  # the message is redelivered, or the reaper re-sends the queued job
        log.exception("job %s could not start", job_id)
        with session_scope(url) as session:
            jobs.finish(session, job_id=job_id, status=JobStatus.FAILED, failure_kind=failures.USER,
                        error=f"could not start: {type(exc).__name__}: {exc}")
        return "failed"
    if claimed is None:
        return "skipped"
    if claimed is CAPPED:  # the owner runs as many jobs as allowed: try again shortly
        _send(job_id, countdown=settings.cap_retry_s)
        return "deferred"
    attempt = claimed.attempt

    control = Control()
    heartbeat = Heartbeat(url, job_id, attempt, settings.lease_s, control)
    reporter = Reporter(url, job_id, attempt, total_steps=claimed.plan.total_steps,
                        epochs=claimed.plan.training.epochs, flush_s=settings.metrics_flush_s,
                        flush_rows=settings.metrics_flush_rows, buffer_rows=settings.metrics_buffer_rows,
                        max_log_lines=settings.max_log_lines, on_lost=control.lost.set,
                        retention=claimed.plan.retention)
    # from here every way out stops the heartbeat: a lease renewed by a stray thread would keep
    # a dead attempt "running" for ever
    with job_log(reporter):
        try:
            heartbeat.start()
            resources.reset_peak()
            device = parallel.pick_device(settings.device)
            log.info("job %s attempt %d on %s (%s)%s", job_id, attempt, worker_name(), device,
                     f"; resuming from step {claimed.resume_step}" if claimed.resume else "")
            with parallel.process_group(claimed, settings, device, claimed.plan.training.devices,
                                        loop.follow) as ranks:
                training = loop.TrainingLoop(claimed, settings, control, ranks, reporter,
                                             rung_check=sweeps.RungCheck(claimed, settings))
                if claimed.resume:
                    training.restore(*claimed.resume)
                final = training.run()
        except JobLost as exc:
            log.warning("%s", exc)
            return "skipped"
        except failures.Cancelled:
            log.info("job %s cancelled by the user", job_id)
            reporter.close()
            with session_scope(url) as session:
                jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.CANCELLED,
                            failure_kind=failures.CANCELLED, error="cancelled by the user")
            return "cancelled"
        except Exception as exc:  # noqa: BLE001 - every failure is the job's to report
            return _fail(claimed, settings, reporter, exc)
        finally:
            heartbeat.stop()
            reporter.close()
    if final is None:  # graceful stop: checkpointed, back in the queue
        with session_scope(url) as session:
            released = jobs.release(session, job_id=job_id, attempt=attempt, reason="worker stopped; resuming")
            if released:
                jobs.mark_enqueued(session, job_id=job_id)
        if released:
            _send(job_id)
        return "requeued"
    with session_scope(url) as session:
        jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics=final)
        _record_throughput(session, claimed, device, final)
    return "succeeded"


def _claim(job_id: str, settings: Settings) -> loop.Claim | object | None:
    """Claim a queued job and load what training needs; None if it is not ours to run.
    Resuming drops the metrics a lost attempt logged after its last checkpoint."""
    data.prefetch(job_id, settings)  # sharded datasets into the local cache, a shard per transaction
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        if job is None or job.status != JobStatus.QUEUED:
            log.info("job %s is %s; skipping", job_id, job and job.status)
            return None
        try:
            plan = TrainingPlan.model_validate(job.plan)
        except ValidationError as exc:
            raise ValueError(f"the job has no valid training plan (resubmit it): {exc}") from exc
        training = plan.training
        if jobs.owner_at_cap(session, job_id=job_id, max_running=settings.max_running_per_owner):
            return CAPPED
        inputs, targets = data.load(session, dataset_id=job.dataset_id, settings=settings)  # mapped if sharded
        val_data = None
        if training.validation_dataset_id:
            val_data = data.load(session, dataset_id=training.validation_dataset_id, settings=settings)
            train_idx, val_idx = np.arange(len(inputs)), np.arange(0)
        else:
            train_idx, val_idx = splits.split_indices(len(inputs), training.validation_split, training.seed)
        attempt = jobs.claim(session, job_id=job_id, worker=worker_name(), lease_s=settings.lease_s)
        if attempt is None:
            return None
        session.refresh(job)
        latest = checkpoints.latest_with_data(session, job_id=job_id, with_state=True)
        resume = (latest.data, latest.state) if latest is not None and latest.state else None
        metrics.delete_after(session, job_id=job_id, step=latest.step if resume else 0)
        return loop.Claim(job_id, attempt, plan, job.max_restarts, _timestamp(job.started_at) + plan.time_limit_s,
                          inputs, targets, train_idx, val_idx, resume, val_data,
                          resume_step=latest.step if resume else 0,
                          init_weights=weights.data(session, weights_id=plan.init.weights_id) if plan.init else None)


def _record_throughput(session, claim: loop.Claim, device: str, final: dict) -> None:
    """What this job's last epoch achieved per device, in FLOP/s: calibrates estimates."""
    plan, seconds = claim.plan, final.get("epoch_time_s")
    if not plan.flops_per_sample or not seconds or seconds <= 0:
        return
    throughput.record(session, device="cuda" if device.startswith("cuda") else "cpu", job_id=claim.job_id,
                      flops_per_s=plan.epoch_flops / seconds / plan.training.devices)


def _timestamp(value) -> float:
    # SQLite hands back naive datetimes; every stored time is UTC
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def _send(job_id: str, countdown: float | None = None) -> None:
    from worker.celery_app import send_train

    send_train(job_id, countdown=countdown)


def _fail(claim: loop.Claim, settings: Settings, reporter: Reporter, exc: Exception) -> str:
    """Record a failed attempt: infrastructure failures go back to the queue while restarts
    are left, everything else fails the job with its class and message. What the attempt
    trained and logged (the traceback included) is written first."""
    kind = failures.classify(exc)
    job_id, attempt = claim.job_id, claim.attempt
    log.error("job %s attempt %s: %s failure:\n%s", job_id, attempt, kind, traceback.format_exc())
    reporter.close()
    message = f"{type(exc).__name__}: {exc}"
    if kind == failures.OOM:
        message += f" (the plan estimates {claim.plan.memory_bytes / 2**20:.1f} MiB for training at this batch size)"

    def record() -> str:
        with session_scope(settings.resolved_database_url) as session:
            if kind == failures.INFRASTRUCTURE and attempt <= claim.max_restarts:
                if jobs.release(session, job_id=job_id, attempt=attempt, reason=f"retrying after {message}"):
                    jobs.mark_enqueued(session, job_id=job_id)
                    session.commit()
                    _send(job_id)
                    return "requeued"
                return "skipped"
            jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.FAILED,
                        error=message, failure_kind=kind)
        return "failed"

    try:
        return with_db_retry(record, what=f"recording the failure of job {job_id}", retry_for_s=15.0)
    except Exception as db_exc:  # noqa: BLE001 - the lease will lapse and the reaper takes over
        log.warning("could not record failure of job %s: %s", job_id, db_exc)
        return "failed"
