"""Threads beside a training task: the lease heartbeat (which also notices cancellation)
and the reaper that requeues jobs whose worker vanished."""
from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from store.db import session_scope
from store.repositories import jobs
from worker import outbox, sweeps

log = logging.getLogger(__name__)


# Set by the worker's shutdown signal: every running job checkpoints and requeues itself.
WORKER_SHUTDOWN = threading.Event()


class Control:
    """What the training loop checks at each step boundary."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self.lost = threading.Event()

    @property
    def shutdown(self) -> bool:
        return WORKER_SHUTDOWN.is_set()


class Heartbeat(threading.Thread):
    """Renews a running job's lease every ``lease_s / 3`` seconds and reports, through
    ``control``, that the job was cancelled or that this attempt lost it."""

    def __init__(self, database_url: str, job_id: str, attempt: int, lease_s: float, control: Control):
        super().__init__(name=f"heartbeat-{job_id}", daemon=True)
        self.url, self.job_id, self.attempt, self.lease_s = database_url, job_id, attempt, lease_s
        self.control = control
        self._halt = threading.Event()

    def beat(self) -> None:
        with session_scope(self.url) as session:
            owned, cancel = jobs.heartbeat(session, job_id=self.job_id, attempt=self.attempt, lease_s=self.lease_s)
        if not owned:
            self.control.lost.set()
        if cancel:
            self.control.cancel.set()

    def run(self) -> None:
        interval = min(self.lease_s / 3, 1.0)
        while not self._halt.wait(interval):
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - a missed beat is retried; the lease has slack
                log.warning("heartbeat for job %s failed: %s", self.job_id, exc)

    def stop(self) -> None:
        self._halt.set()
        if self.ident is not None:  # started
            self.join(timeout=5)


class Reaper(threading.Thread):
    """Every ``interval`` seconds: requeue jobs whose lease lapsed (failing those out of
    restarts) and re-send queued jobs whose message may be lost. Safe to run in every worker:
    each job is taken by one atomic UPDATE."""

    def __init__(self, database_url: str, interval: float, requeue_after_s: float, send: Callable[[str], None],
                 broker_lost: Callable[[], bool] | None = None):
        super().__init__(name="reaper", daemon=True)
        self.url, self.interval, self.requeue_after_s, self.send = database_url, interval, requeue_after_s, send
        self.broker_lost = broker_lost  # outbox.BrokerWatch.lost: every queued job is due at once
        self._halt = threading.Event()

    def sweep(self) -> tuple[list[str], list[str]]:
        lost = False
        if self.broker_lost is not None:
            try:
                lost = self.broker_lost()
            except Exception as exc:  # noqa: BLE001 - broker away: the sends below fail and stay due
                log.warning("reaper: broker check failed: %s", exc)
        with session_scope(self.url) as session:
            if lost:
                jobs.forget_sent(session)
            to_send, failed = jobs.reap(session, requeue_after_s=self.requeue_after_s)
        to_send = outbox.send_due(self.url, to_send, self.send)  # marked sent once the broker took them
        sweeps.advance_all(self.url, self.send)  # launch sweeps' waiting trials, finish finished sweeps
        if to_send or failed:
            log.info("reaper: sent %s, failed %s", to_send, failed)
        return to_send, failed

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            try:
                self.sweep()
            except Exception as exc:  # noqa: BLE001 - the next sweep retries
                log.warning("reaper sweep failed: %s", exc)

    def stop(self) -> None:
        self._halt.set()
