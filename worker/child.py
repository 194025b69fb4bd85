"""One attempt's training in a supervised child process of the worker.

The worker (the parent) claims the job, keeps its lease and watches; a spawned child loads
the data and trains under a memory cap (``RLIMIT_AS``, from the plan's estimate: see
``resources.cap_bytes``), recording every outcome it reaches itself. A job that outgrows
its memory therefore ends its own child, never the worker: a ``MemoryError`` under the cap,
or the kernel's OOM killer taking the child, fails the job as ``oom`` with the measured peak
and the estimate, and is not restarted elsewhere.

The parent forwards what the heartbeat learns (cancel, lease lost), the worker's shutdown
and the time limit to the child, which stops at its next step boundary; a child that does
not get there within ``step_grace_s`` (one very long step) is killed and the parent records
the outcome: cancelled, timed out, or requeued from the last checkpoint after a shutdown.
The child dies with the parent (``PR_SET_PDEATHSIG``; and its order pipe closing), so a
killed worker leaves no training behind, and the lease lapses as before.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from typing import Any

from config.settings import Settings
from store import live
from store.db import session_scope
from store.models import JobStatus
from store.repositories import jobs
from worker import failures, lifecycle, parallel, resources
from worker.supervision import WORKER_SHUTDOWN, Control, Heartbeat

log = logging.getLogger(__name__)

# what the parent tells the child (the child then stops at its next step boundary)
CANCEL, LOST, SHUTDOWN, TIMEOUT = "cancel", "lost", "shutdown", "timeout"
# deaths that are the training's own doing (the job fails); any other signal is someone's kill
CRASHES = {signal.SIGSEGV, signal.SIGBUS, signal.SIGFPE, signal.SIGILL, signal.SIGABRT}


def run_supervised(job_id: str, settings: Settings) -> str:
    """Claim a job and train it in a supervised child; the same outcomes as ``run_job``."""
    claimed = lifecycle.claim_or_defer(job_id, settings)
    if isinstance(claimed, str):
        return claimed
    outcome = Supervisor(claimed, settings).run()
    lifecycle.ended(claimed.job_id, outcome, settings)
    return outcome


class Supervisor:
    """The parent's side of one attempt: start the child, keep the lease, pass orders on,
    enforce the grace period, and account for a child that ended without an outcome."""

    def __init__(self, claimed: lifecycle.Claimed, settings: Settings, poll_s: float = 0.1):
        self.claimed, self.settings, self.poll_s = claimed, settings, poll_s
        self.peak_rss = 0
        self.reports: dict[str, Any] = {}

    def run(self) -> str:
        c, s = self.claimed, self.settings
        control = Control()
        beat = Heartbeat(s.resolved_database_url, c.job_id, c.attempt, s.lease_s, control)
        ctx = mp.get_context("spawn")
        orders_r, orders_w = ctx.Pipe(duplex=False)
        reports_r, reports_w = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=child_main, args=(c, s.model_dump(mode="json"), orders_r, reports_w, os.getpid()),
                           name=f"job-{c.job_id}-train")
        oom_kills = resources.kernel_oom_kills()
        proc.start()
        orders_r.close()
        reports_w.close()
        beat.start()
        try:
            order, killed, exitcode = self._watch(proc, control, orders_w, reports_r)
        finally:
            beat.stop()
            orders_w.close()
            reports_r.close()
        outcome = self.reports.get("outcome")
        if outcome is not None:
            return outcome
        if self.reports.get("kind") == failures.INFRASTRUCTURE:
            # trained or failed, but could not say so: the lease lapses and the reaper resumes it
            log.warning("job %s: outcome not recorded (%s)", self.claimed.job_id, self.reports.get("unrecorded"))
            return "skipped"
        if killed:
            return self._killed(order)
        return self._died(exitcode, oom=resources.kernel_oom_kills() > oom_kills)

    def _watch(self, proc, control: Control, orders, reports) -> tuple[str | None, bool, int]:
        """Until the child exits: (the order given, whether we killed it, its exit code)."""
        order, kill_at, killed = None, None, False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                exitcode = os.waitstatus_to_exitcode(status)
                proc._popen.returncode = exitcode  # reaped here (wait4 for its rusage): tell multiprocessing
                self.peak_rss = max(self.peak_rss, usage.ru_maxrss * 1024)
                self._drain(reports)
                return order, killed, exitcode
            self.peak_rss = max(self.peak_rss, resources.status_bytes("VmHWM", proc.pid) or 0)
            self._drain(reports, timeout=self.poll_s)
            if order is None:
                order = (LOST if control.lost.is_set() else CANCEL if control.cancel.is_set()
                         else SHUTDOWN if WORKER_SHUTDOWN.is_set()
                         else TIMEOUT if time.time() > self.claimed.deadline else None)
                if order is not None:
                    log.info("job %s: %s; the training process has %.0fs to reach its next step",
                             self.claimed.job_id, order, self.settings.step_grace_s)
                    try:
                        orders.send(order)
                    except OSError:
                        pass  # already gone
                    kill_at = time.monotonic() + self.settings.step_grace_s
            if kill_at is not None and not killed and not self.reports.get("stopped") and time.monotonic() > kill_at:
                log.warning("job %s: the training process did not reach its next step within %.0fs of %s; killing it",
                            self.claimed.job_id, self.settings.step_grace_s, order)
                proc.kill()
                killed = True

    def _drain(self, reports, timeout: float = 0.0) -> None:
        try:
            while reports.poll(timeout):
                self.reports.update(reports.recv())
                timeout = 0.0
        except (EOFError, OSError):
            if timeout:
                time.sleep(timeout)  # the child closed its end: it is exiting

    def _killed(self, order: str | None) -> str:
        """Record the outcome of a child killed after its grace period."""
        c, url = self.claimed, self.settings.resolved_database_url
        grace = self.settings.step_grace_s
        why = f"the training process did not reach its next step within {grace:.0f}s and was killed"
        if order == SHUTDOWN:
            return lifecycle.requeue(c, self.settings, f"worker stopped ({why}); resuming from the last checkpoint")
        if order == LOST:
            return "skipped"
        with session_scope(url) as session:
            if order == CANCEL:
                jobs.finish(session, job_id=c.job_id, attempt=c.attempt, status=JobStatus.CANCELLED,
                            failure_kind=failures.CANCELLED, error=f"cancelled by the user ({why})")
                return "cancelled"
            jobs.finish(session, job_id=c.job_id, attempt=c.attempt, status=JobStatus.FAILED,
                        failure_kind=failures.TIMEOUT,
                        error=f"TimeLimitExceeded: the job ran past its time limit ({why})")
        return "failed"

    def _died(self, exitcode: int, *, oom: bool) -> str:
        """A child that ended without recording an outcome: the OOM killer's (fail as ``oom``),
        killed by someone else (a lost worker: resume elsewhere) or crashed (fail)."""
        c, url = self.claimed, self.settings.resolved_database_url
        estimate = c.plan.memory_bytes
        how = f"signal {signal.Signals(-exitcode).name}" if exitcode < 0 else f"exit code {exitcode}"
        peak = f"peak RSS {self.peak_rss / 2**20:.0f} MiB"
        cap = self.reports.get("cap_bytes")
        if cap:
            peak += f", memory cap {cap / 2**20:.0f} MiB of address space"
        if exitcode == -signal.SIGKILL and oom:
            kind = failures.OOM
            error = (f"out of memory: the kernel's OOM killer ended the training process ({peak}; the plan "
                     f"estimates {estimate / 2**20:.1f} MiB for training at this batch size)")
        elif -exitcode in CRASHES:
            kind, error = failures.USER, f"the training process crashed ({how}; {peak})"
        else:  # killed by someone (SIGKILL, SIGTERM to the worker's group...) or gone without a word
            log.warning("job %s: the training process was killed (%s); resuming elsewhere", c.job_id, how)
            kind, error = failures.INFRASTRUCTURE, f"the training process was killed ({how})"
        log.error("job %s attempt %d: %s", c.job_id, c.attempt, error)
        with session_scope(url) as session:
            if kind == failures.INFRASTRUCTURE and c.attempt <= c.max_restarts:
                released = jobs.release(session, job_id=c.job_id, attempt=c.attempt,
                                        reason=f"{error}; resuming from the last checkpoint")
                if not released:
                    return "skipped"
            else:
                jobs.finish(session, job_id=c.job_id, attempt=c.attempt, status=JobStatus.FAILED,
                            error=error, failure_kind=kind)
                return "failed"
        try:
            lifecycle._send(c.job_id)
        except Exception as exc:  # noqa: BLE001 - unsent: the reaper's next pass sends it
            log.warning("job %s released but not sent: %s", c.job_id, exc)
            return "requeued"
        with session_scope(url) as session:
            jobs.mark_enqueued(session, job_id=c.job_id)
        return "requeued"


# -- the child --------------------------------------------------------------------------------

def child_main(claimed: lifecycle.Claimed, settings_fields: dict[str, Any], orders, reports, parent_pid: int) -> None:
    """The training child's whole life: follow the parent's orders, cap memory once the data
    is loaded, train, report the outcome (after recording it) and exit."""
    _die_with(parent_pid)
    os.setsid()  # signals to the worker's process group are the parent's to handle (it forwards a stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"[%(asctime)s: %(levelname)s/train-{os.getpid()}] %(name)s: %(message)s")
    settings = Settings(**settings_fields)
    live.install(settings.redis_url)  # a spawned interpreter: the worker's publisher is not here
    control = Control()
    threading.Thread(target=_follow_orders, args=(orders, control), name="orders", daemon=True).start()

    def report(**values: Any) -> None:
        try:
            reports.send(values)
        except OSError:
            pass

    def cap_memory(claim) -> None:
        if parallel.pick_device(settings.device) != "cpu":
            log.info("job %s: no address-space cap on a GPU worker (the driver maps far more than it uses)",
                     claim.job_id)
            return
        data = claim.inputs.nbytes + sum(t.nbytes for t in claim.targets.values())
        if claim.val_data is not None:
            data += claim.val_data[0].nbytes + sum(t.nbytes for t in claim.val_data[1].values())
        baseline = resources.status_bytes("VmSize") or 0
        cap = resources.cap_bytes(estimate=claim.plan.memory_bytes, data_bytes=data, baseline=baseline,
                                  margin=settings.child_memory_margin, overhead=settings.child_memory_overhead_bytes,
                                  ceiling=settings.worker_memory_bytes, ranks=claim.plan.training.devices)
        resources.apply_cap(cap, claim.plan.memory_bytes)
        report(cap_bytes=cap)
        log.info("job %s: memory cap %.0f MiB of address space (estimate %.1f MiB, data %.1f MiB, mapped %.0f MiB)",
                 claim.job_id, cap / 2**20, claim.plan.memory_bytes / 2**20, data / 2**20, baseline / 2**20)

    try:
        outcome = lifecycle.run_attempt(claimed, settings, control, heartbeat=False, on_loaded=cap_memory,
                                        on_stopped=lambda: report(stopped=True))
    except Exception as exc:  # noqa: BLE001 - an outcome it could not record (the database is away)
        log.exception("job %s: the outcome could not be recorded", claimed.job_id)
        report(unrecorded=f"{type(exc).__name__}: {exc}", kind=failures.classify(exc))
        reports.close()
        sys.exit(3)
    report(outcome=outcome)
    reports.close()


def _die_with(parent_pid: int) -> None:
    """Get SIGKILL when the parent dies (Linux), and leave now if it already has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(1)


def _follow_orders(orders, control: Control) -> None:
    while True:
        try:
            order = orders.recv()
        except (EOFError, OSError):
            os._exit(1)  # the parent is gone: so is this attempt (its lease lapses)
        if order == CANCEL:
            control.cancel.set()
        elif order == LOST:
            control.lost.set()
        elif order == SHUTDOWN:
            WORKER_SHUTDOWN.set()
