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
from collections.abc import Callable
from dataclasses import dataclass
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
    """Run (or resume) one job in this process. A job that is not queued, already finished or
    running under another delivery, is skipped, so a redelivered message never trains twice.
    Returns 'succeeded', 'failed', 'cancelled', 'requeued', 'deferred' or 'skipped'. A sweep
    trial that ended (whichever way) launches its sweep's next trial at once. (The Celery task
    runs the attempt in a supervised child process instead: ``worker.child``.)"""
    claimed = claim_or_defer(job_id, settings)
    if isinstance(claimed, str):
        return claimed
    outcome = run_attempt(claimed, settings, Control(), heartbeat=True)
    ended(claimed.job_id, outcome, settings)
    return outcome


def ended(job_id: str, outcome: str, settings: Settings) -> None:
    """After an attempt: a sweep trial that finished launches its sweep's next trial."""
    if outcome in ("succeeded", "failed", "cancelled"):
        sweeps.job_finished(job_id, settings)


@dataclass(frozen=True)
class Claimed:
    """A job this worker claimed (as ``attempt``), before its data is loaded."""

    job_id: str
    attempt: int
    plan: TrainingPlan
    max_restarts: int
    deadline: float  # epoch seconds: the job's start plus its time limit


def claim_or_defer(job_id: str, settings: Settings) -> Claimed | str:
    """Claim the job a message names (or, for fairness, another owner's: see ``jobs.claim_next``);
    an outcome string ('skipped', 'deferred', 'failed') when there is nothing to train."""
    try:
        claimed = _claim(job_id, settings)
    except Exception as exc:
        if failures.classify(exc) == failures.INFRASTRUCTURE:
            raise  # the message is retried, or the reaper re-sends the queued job
        log.exception("job %s could not start", job_id)
        with session_scope(settings.resolved_database_url) as session:
            jobs.finish(session, job_id=getattr(exc, "job_id", job_id), status=JobStatus.FAILED,
                        failure_kind=failures.USER, error=f"could not start: {type(exc).__name__}: {exc}")
        return "failed"
    if claimed is None:
        return "skipped"
    if claimed is CAPPED:  # the owner runs as many jobs as allowed: try again shortly
        _send(job_id, countdown=settings.cap_retry_s)
        return "deferred"
    return claimed


def run_attempt(claimed: Claimed, settings: Settings, control: Control, *, heartbeat: bool,
                on_loaded: Callable[[loop.Claim], None] | None = None,
                on_stopped: Callable[[], None] | None = None) -> str:
    """Load the claimed job's data and train it to an outcome, recorded here. ``heartbeat``:
    renew the lease from this process (a supervised child leaves that to its parent).
    ``on_loaded(claim)`` runs once the data is in memory (the child caps its memory there);
    ``on_stopped()`` once training left the loop (at a step boundary or by an exception)."""
    url = settings.resolved_database_url
    job_id, attempt = claimed.job_id, claimed.attempt
    beat = Heartbeat(url, job_id, attempt, settings.lease_s, control)
    plan = claimed.plan
    reporter = Reporter(url, job_id, attempt, total_steps=plan.total_steps,
                        epochs=plan.training.epochs, flush_s=settings.metrics_flush_s,
                        flush_rows=settings.metrics_flush_rows, buffer_rows=settings.metrics_buffer_rows,
                        max_log_lines=settings.max_log_lines, on_lost=control.lost.set,
                        retention=plan.retention)
    claim: loop.Claim | None = None
    # from here every way out stops the heartbeat: a lease renewed by a stray thread would keep
    # a dead attempt "running" for ever
    with job_log(reporter):
        try:
            if heartbeat:
                beat.start()
            resources.reset_peak()
            claim = _load(claimed, settings)
            if on_loaded is not None:
                on_loaded(claim)
            device = parallel.pick_device(settings.device)
            log.info("job %s attempt %d on %s (%s)%s", job_id, attempt, worker_name(), device,
                     f"; resuming from step {claim.resume_step}" if claim.resume else "")
            try:
                with parallel.process_group(claim, settings, device, plan.training.devices, loop.follow) as ranks:
                    training = loop.TrainingLoop(claim, settings, control, ranks, reporter,
                                                 rung_check=sweeps.RungCheck(claim, settings))
                    if claim.resume:
                        training.restore(*claim.resume)
                    final = training.run()
            finally:
                if on_stopped is not None:
                    on_stopped()
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
        except BaseException as exc:  # noqa: BLE001 - every failure is the job's to report
            if not isinstance(exc, Exception) and not isinstance(exc, MemoryError):
                raise  # KeyboardInterrupt, SystemExit
            return _fail(claimed, settings, reporter, exc)
        finally:
            beat.stop()
            reporter.close()
    if final is None:  # graceful stop: checkpointed, back in the queue
        return requeue(claimed, settings, "worker stopped; resuming")
    with session_scope(url) as session:
        jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.SUCCEEDED, final_metrics=final)
        _record_throughput(session, claim, device, final)
    return "succeeded"


def requeue(claimed: Claimed, settings: Settings, reason: str) -> str:
    """Give a running attempt's job back to the queue and send it ('requeued'; 'skipped' if
    this attempt no longer owns it). Marked as sent only once the broker took the message."""
    with session_scope(settings.resolved_database_url) as session:
        released = jobs.release(session, job_id=claimed.job_id, attempt=claimed.attempt, reason=reason)
    if not released:
        return "skipped"
    try:
        _send(claimed.job_id)
    except Exception as exc:  # noqa: BLE001 - unsent (enqueued_at NULL): the reaper's next pass sends it
        log.warning("job %s released but not sent (%s); the reaper will send it", claimed.job_id, exc)
        return "requeued"
    with session_scope(settings.resolved_database_url) as session:
        jobs.mark_enqueued(session, job_id=claimed.job_id)
    return "requeued"


class _Unplannable(ValueError):
    def __init__(self, job_id: str, message: str):
        super().__init__(message)
        self.job_id = job_id


def _claim(job_id: str, settings: Settings) -> Claimed | object | None:
    """Claim a queued job; None if it is not ours to run, CAPPED if its owner is at the cap.
    For fairness the job claimed may be another owner's (``jobs.fair_pick``): the message's own
    job is then marked unsent, so the reaper's next pass sends it again."""
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        if job is None or job.status != JobStatus.QUEUED:
            log.info("job %s is %s; skipping", job_id, job and job.status)
            return None
        if jobs.owner_at_cap(session, job_id=job_id, max_running=settings.max_running_per_owner):
            return CAPPED
        target = jobs.fair_pick(session, job=job)
        if target is not job and jobs.owner_at_cap(session, job_id=target.id,
                                                   max_running=settings.max_running_per_owner):
            target = job
        try:
            plan = TrainingPlan.model_validate(target.plan)
        except ValidationError as exc:
            raise _Unplannable(target.id, f"the job has no valid training plan (resubmit it): {exc}") from exc
        attempt = jobs.claim(session, job_id=target.id, worker=worker_name(), lease_s=settings.lease_s)
        if attempt is not None and target is not job:
            log.info("job %s (owner %s) starts before job %s (owner %s, which runs more jobs)",
                     target.id, target.owner, job_id, job.owner)
            jobs.mark_unsent(session, job_ids=[job_id])
        job = target
        if attempt is None:
            return None
        session.refresh(job)
        return Claimed(job.id, attempt, plan, job.max_restarts, _timestamp(job.started_at) + plan.time_limit_s)


def _load(claimed: Claimed, settings: Settings) -> loop.Claim:
    """What training needs: the data, the split, the checkpoint to resume from and the
    initial weights. Resuming drops the metrics a lost attempt logged after its checkpoint."""
    plan, job_id = claimed.plan, claimed.job_id
    training = plan.training
    data.prefetch(job_id, settings)  # sharded datasets into the local cache, a shard per transaction
    with session_scope(settings.resolved_database_url) as session:
        job = jobs.get(session, job_id=job_id)
        inputs, targets = data.load(session, dataset_id=job.dataset_id, settings=settings)  # mapped if sharded
        val_data = None
        if training.validation_dataset_id:
            val_data = data.load(session, dataset_id=training.validation_dataset_id, settings=settings)
            train_idx, val_idx = np.arange(len(inputs)), np.arange(0)
        else:
            train_idx, val_idx = splits.split_indices(len(inputs), training.validation_split, training.seed)
        latest = checkpoints.latest_with_data(session, job_id=job_id, with_state=True)
        resume = (latest.data, latest.state) if latest is not None and latest.state else None
        metrics.delete_after(session, job_id=job_id, step=latest.step if resume else 0)
        return loop.Claim(job_id, claimed.attempt, plan, claimed.max_restarts, claimed.deadline,
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


def _fail(claim: Claimed, settings: Settings, reporter: Reporter, exc: BaseException) -> str:
    """Record a failed attempt: infrastructure failures go back to the queue while restarts
    are left, everything else fails the job with its class and message. What the attempt
    trained and logged (the traceback included) is written first."""
    kind = failures.classify(exc)
    job_id, attempt = claim.job_id, claim.attempt
    log.error("job %s attempt %s: %s failure:\n%s", job_id, attempt, kind, traceback.format_exc())
    reporter.close()
    message = f"{type(exc).__name__}: {exc}"
    if kind == failures.OOM:
        message += (f" ({resources.cap_note()}; the plan estimates {claim.plan.memory_bytes / 2**20:.1f} MiB "
                    "for training at this batch size)")

    def record() -> str:
        with session_scope(settings.resolved_database_url) as session:
            if kind == failures.INFRASTRUCTURE and attempt <= claim.max_restarts:
                if not jobs.release(session, job_id=job_id, attempt=attempt, reason=f"retrying after {message}"):
                    return "skipped"
                session.commit()
                try:
                    _send(job_id)
                except Exception as send_exc:  # noqa: BLE001 - unsent (enqueued_at NULL): the reaper sends it
                    log.warning("job %s released but not sent (%s)", job_id, send_exc)
                    return "requeued"
                jobs.mark_enqueued(session, job_id=job_id)
                return "requeued"
            jobs.finish(session, job_id=job_id, attempt=attempt, status=JobStatus.FAILED,
                        error=message, failure_kind=kind)
        return "failed"

    try:
        return with_db_retry(record, what=f"recording the failure of job {job_id}", retry_for_s=15.0)
    except Exception as db_exc:  # noqa: BLE001 - the lease will lapse and the reaper takes over
        log.warning("could not record failure of job %s: %s", job_id, db_exc)
        return "failed"
