"""Sweeps on the worker: launching a sweep's next trials and stopping trials early.

``advance`` / ``advance_all`` launch the trials a sweep has room for (see
``store.repositories.sweeps.advance``; safe under any number of concurrent callers) and send
their messages. The reaper calls ``advance_all`` on each pass, and ``job_finished`` runs right
after a job ends on this worker, so the next trial starts at once; the API launches the
first ones when the sweep is created.

``RungCheck`` is the training loop's end-of-epoch question for a sweep trial with
``early_terminate`` (asynchronous successive halving): at each rung epoch ``min_iter *
eta**k`` the trial records its metric and goes on only if it is in the top ``1/eta`` of the
trials that reached that rung so far (``plan.sweep.continues``); otherwise the loop ends the
job as succeeded with ``stopped_at_epoch``. Decisions are made on arrival (no trial waits to
be promoted) and recorded on the trial, so a resumed attempt gets the same answer.
"""
from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from config.settings import Settings
from plan import sweep as sweep_plan
from store.db import session_scope
from store.repositories import jobs
from store.repositories import sweeps as repo
from worker.retry import with_db_retry

if TYPE_CHECKING:
    from worker.loop import Claim

log = logging.getLogger(__name__)


def _send_train(job_id: str) -> None:
    from worker.celery_app import send_train

    send_train(job_id)


def advance(url: str, sweep_id: str, send: Callable[[str], None] | None = None) -> list[str]:
    """Launch what the sweep has room for, commit, then send each new job's message."""
    with session_scope(url) as session:
        launched = repo.advance(session, sweep_id=sweep_id)
    send = send or _send_train
    for job_id in launched:
        try:
            send(job_id)
            with session_scope(url) as session:
                jobs.mark_enqueued(session, job_id=job_id)
        except Exception:  # noqa: BLE001 - the job is queued and committed; the reaper sends it
            log.exception("could not send sweep trial job %s; the reaper will", job_id)
    if launched:
        log.info("sweep %s: launched %s", sweep_id, launched)
    return launched


def advance_all(url: str, send: Callable[[str], None] | None = None) -> None:
    """Advance every running sweep (the reaper's pass). Never raises."""
    try:
        with session_scope(url) as session:
            ids = repo.running_ids(session)
    except Exception as exc:  # noqa: BLE001 - the next pass retries
        log.warning("sweeps: could not list running sweeps: %s", exc)
        return
    for sweep_id in ids:
        try:
            advance(url, sweep_id, send)
        except Exception as exc:  # noqa: BLE001 - one sweep's trouble must not stop the others
            log.warning("sweep %s: could not advance: %s", sweep_id, exc)


def job_finished(job_id: str, settings: Settings, send: Callable[[str], None] | None = None) -> None:
    """After a job ended here: if it is a sweep's trial, launch the sweep's next. Never raises."""
    url = settings.resolved_database_url
    try:
        with session_scope(url) as session:
            job = jobs.get(session, job_id=job_id)
            sweep_id = job.sweep_id if job is not None else None
        if sweep_id:
            advance(url, sweep_id, send)
    except Exception as exc:  # noqa: BLE001 - the reaper's pass launches it instead
        log.warning("sweep of job %s: could not advance: %s", job_id, exc)


class RungCheck:
    """``check(epoch, metrics) -> stop?`` for the training loop (rank 0), for any job: a job
    that is not a sweep trial with early termination answers False without asking again."""

    def __init__(self, claim: Claim, settings: Settings):
        self.job_id, self.epochs = claim.job_id, claim.plan.training.epochs
        self.url = settings.resolved_database_url
        self._rule: tuple[str, str, int, list[int]] | None = None  # metric, goal, eta, rung epochs
        self._off = False

    def _resolve(self) -> bool:
        with session_scope(self.url) as session:
            context = repo.rung_context(session, job_id=self.job_id)
        config = context[0] if context else {}
        try:
            et = sweep_plan.EarlyTerminate.model_validate(config.get("early_terminate") or {})
            metric = sweep_plan.SweepMetric.model_validate(config.get("metric") or {})
        except ValidationError:
            self._off = True  # not a trial, or a sweep without early termination
            return False
        goal = context[1] or metric.goal
        self._rule = (metric.name, goal, et.eta, sweep_plan.rungs(et.min_iter, et.eta, self.epochs))
        return True

    def __call__(self, epoch: int, metrics: dict[str, Any]) -> bool:
        if self._off:
            return False
        try:
            if self._rule is None and not self._resolve():
                return False
            name, goal, eta, rungs = self._rule
            value = metrics.get(name)
            if epoch not in rungs or isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                return False
            value = float(value)

            def decide() -> bool | None:
                with session_scope(self.url) as session:
                    return repo.record_rung(session, job_id=self.job_id, rung=epoch, value=value,
                                            decide=lambda others: sweep_plan.continues(value, others, goal, eta))

            go_on = with_db_retry(decide, what=f"rung decision for job {self.job_id}", retry_for_s=30.0)
        except Exception as exc:  # noqa: BLE001 - when in doubt the trial trains on
            log.warning("rung check for job %s at epoch %d failed (%s); it continues", self.job_id, epoch, exc)
            return False
        if go_on is False:
            log.info("sweep trial %s stopped at rung epoch %d (%s=%g)", self.job_id, epoch, name, value)
        return go_on is False
