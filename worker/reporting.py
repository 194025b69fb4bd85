"""Writes a running job's progress, metrics, log lines and checkpoints, fenced by its
attempt, and records each write as job events for the live stream.

Metrics and log lines are buffered and written by a background thread every
``flush_s`` seconds (or sooner once ``flush_rows`` rows wait), in one transaction each, so a
step's loss reaches the database and the stream within about a second and the training
loop never waits for the database: while it is away, the buffer (bounded by
``buffer_rows``; the oldest rows go first) keeps filling and the writer retries with
backoff. A checkpoint is written synchronously together with everything buffered before
it, so a resume never finds metrics missing before its checkpoint.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.exc import DBAPIError

from plan.model import RetentionPlan
from store.db import session_scope
from store.repositories import checkpoints, events, jobs, metrics
from worker.retry import with_db_retry

log = logging.getLogger(__name__)


class JobLost(RuntimeError):
    """This attempt no longer owns the job (finished, cancelled or taken over elsewhere)."""


class SilentReporter:
    """What a follower rank of a data-parallel job reports: nothing (rank 0 writes)."""

    epoch = step_no = 0

    def step(self, *_, **__) -> None:
        pass

    def flush(self, **_) -> None:
        pass

    def log_line(self, *_) -> None:
        pass

    def pause_clock(self) -> None:
        pass

    def close(self) -> None:
        pass


class Reporter:
    """The writer of one attempt's results (see the module docstring). ``on_lost`` is called
    (from the writer thread) once the database says this attempt no longer owns the job."""

    def __init__(self, database_url: str, job_id: str, attempt: int, *, total_steps: int, epochs: int,
                 flush_s: float = 0.5, flush_rows: int = 5000, buffer_rows: int = 1_000_000,
                 max_log_lines: int = 10_000, retry_for_s: float = 60.0, on_lost: Callable[[], None] = lambda: None,
                 retention: RetentionPlan | None = None):
        self.url, self.job_id, self.attempt = database_url, job_id, attempt
        self.total_steps, self.epochs = total_steps, epochs
        self.flush_s, self.flush_rows, self.buffer_rows = flush_s, max(1, flush_rows), buffer_rows
        self.retry_for_s, self.on_lost = retry_for_s, on_lost
        self.retention = retention or RetentionPlan()
        self.epoch = self.step_no = 0
        self.samples_per_s = self.step_time_s = 0.0  # moving averages
        self._rows: list[dict] = []
        self._held: list[dict] = []  # rows only a flush() writes (see step)
        self._logs: list[dict] = []
        self._dropped = 0
        self._lock = threading.Lock()  # guards the buffers; never held during I/O
        self._write_lock = threading.Lock()  # one write at a time
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._last_step_at: float | None = None
        self.max_log_lines = max_log_lines
        self._log_room: int | None = None  # lines this job may still store: counted at the first write
        self._thread = threading.Thread(target=self._run, name=f"reporter-{job_id}", daemon=True)
        self._thread.start()

    # -- called by the training loop ----------------------------------------------------------
    def step(self, epoch: int, step: int, values: dict[str, float], samples: int, *, hold: bool = False) -> None:
        """One optimizer step's scalars (loss, per-head losses, learning rates); samples/s is
        measured here, from the time since the previous step. ``hold`` (an epoch's last step)
        keeps them for the next ``flush``, so they commit together with the epoch's metrics at
        the same step: a client polling past a step never misses rows of that step."""
        now = time.perf_counter()
        rows = [{"kind": "step", "name": k, "epoch": epoch, "step": step, "value": v} for k, v in values.items()]
        if self._last_step_at is not None and now > self._last_step_at:
            took = now - self._last_step_at
            rows.append({"kind": "step", "name": "samples_per_s", "epoch": epoch, "step": step,
                         "value": samples / took})
            self.step_time_s = took if not self.step_time_s else 0.9 * self.step_time_s + 0.1 * took
            self.samples_per_s = samples / self.step_time_s
        self._last_step_at = now
        with self._lock:
            self.epoch, self.step_no = epoch, step
            if hold:
                self._held.extend(rows)
                return
            self._rows.extend(rows)
            over = len(self._rows) - self.buffer_rows
            if over > 0:
                del self._rows[:over]
                self._dropped += over
            full = len(self._rows) >= self.flush_rows
        if full:
            self._wake.set()

    def pause_clock(self) -> None:
        """Do not measure the next step's samples/s across what happens now (evaluation,
        checkpointing)."""
        self._last_step_at = None

    def log_line(self, level: str, logger: str, message: str, when: float) -> None:
        with self._lock:
            if len(self._logs) < self.max_log_lines:  # trimmed to the job's room when written
                self._logs.append({"time": when, "level": level, "logger": logger, "message": message})

    def flush(self, *, epoch_metrics: dict[str, float] | None = None,
              checkpoint: tuple[bytes, bytes] | None = None) -> None:
        """Write everything buffered now (with epoch metrics and a checkpoint, which the
        retention policy then weighs against the older ones), retrying while the database is
        away; raises if it stays away for ``retry_for_s``."""
        with self._lock:
            extra, self._held = self._held, []
        extra += [{"kind": "epoch", "name": k, "epoch": self.epoch, "step": self.step_no, "value": v}
                  for k, v in (epoch_metrics or {}).items()]
        if checkpoint is not None:
            value = (epoch_metrics or {}).get(self.retention.metric)
            checkpoint = (*checkpoint, value if isinstance(value, float) and math.isfinite(value) else None)
        with_db_retry(lambda: self._write_buffered(extra, checkpoint),
                      what=f"results write for job {self.job_id}", retry_for_s=self.retry_for_s)

    def close(self) -> None:
        """Stop the writer after a last best-effort write of what is buffered."""
        with self._lock:
            self._rows += self._held
            self._held = []
        self._closed.set()
        self._wake.set()
        self._thread.join(timeout=30)

    # -- the writer ---------------------------------------------------------------------------
    def _run(self) -> None:
        delay = self.flush_s
        while True:
            self._wake.wait(delay)
            self._wake.clear()
            closing = self._closed.is_set()
            try:
                self._write_buffered([], None)
                delay = self.flush_s
            except JobLost:
                self.on_lost()
                return
            except DBAPIError as exc:
                delay = min(max(delay, self.flush_s) * 2, 5.0)
                log.warning("results write for job %s failed (%s); %d rows buffered, retrying in %.1fs",
                            self.job_id, exc.orig, len(self._rows), delay)
            except Exception:  # noqa: BLE001 - the writer must survive a bad batch; the loop goes on
                log.exception("results write for job %s failed", self.job_id)
            if closing:
                return

    def _write_buffered(self, extra: list[dict], checkpoint: tuple[bytes, bytes, float | None] | None) -> None:
        """One transaction: the buffered rows and log lines, ``extra`` rows, progress, the
        checkpoint and the events saying so. What it took goes back to the buffer on failure."""
        with self._write_lock:
            with self._lock:
                rows, logs, dropped = self._rows, self._logs, self._dropped
                self._rows, self._logs, self._dropped = [], [], 0
                epoch, step = self.epoch, self.step_no
            try:
                self._write(epoch, step, rows + extra, logs, dropped, checkpoint)
            except BaseException:
                self._log_room = None  # counted again from what was committed
                with self._lock:
                    self._rows = rows + self._rows
                    self._logs = logs + self._logs
                    self._dropped += dropped
                raise

    def _write(self, epoch: int, step: int, rows: list[dict], logs: list[dict], dropped: int,
               checkpoint: tuple[bytes, bytes, float | None] | None) -> None:
        if dropped:
            logs = logs + [{"time": time.time(), "level": "WARNING", "logger": __name__,
                            "message": f"{dropped} metric rows were dropped while the database was unreachable"}]
        if not rows and not logs and checkpoint is None:
            return
        with session_scope(self.url) as session:
            if not jobs.set_progress(session, job_id=self.job_id, attempt=self.attempt, epoch=epoch, step=step):
                raise JobLost(f"job {self.job_id} attempt {self.attempt} no longer owns the job")
            if logs:
                logs = self._within_room(session, logs)
            metrics.add_many(session, job_id=self.job_id, rows=rows)
            batch: list[tuple[str, dict[str, Any]]] = []
            if rows:
                batch += [(events.METRIC, {"rows": rows}), (events.PROGRESS, self._progress(epoch, step))]
            if logs:
                batch.append((events.LOG, {"attempt": self.attempt, "lines": logs}))
            if checkpoint is not None:
                ckpt = checkpoints.add(session, job_id=self.job_id, epoch=epoch, step=step, attempt=self.attempt,
                                       data=checkpoint[0], state=checkpoint[1], metric_value=checkpoint[2])
                r = self.retention
                checkpoints.prune(session, job_id=self.job_id, keep_last=r.keep_last, keep_best=r.keep_best,
                                  mode=r.mode)
                url = f"/v1/jobs/{self.job_id}/checkpoints/{ckpt.id}/download"
                batch.append((events.CHECKPOINT, {"id": ckpt.id, "epoch": epoch, "step": step,
                                                  "size_bytes": ckpt.size_bytes, "download_url": url,
                                                  "created_at": ckpt.created_at.isoformat()}))
            events.record(session, job_id=self.job_id, attempt=self.attempt, events=batch)

    def _within_room(self, session, logs: list[dict]) -> list[dict]:
        """The lines the job's cap still admits; the last admitted one says the log was truncated."""
        if self._log_room is None:
            self._log_room = self.max_log_lines - events.log_line_count(session, job_id=self.job_id)
        room = max(0, self._log_room)
        if len(logs) >= room:
            logs = logs[:room]
            if logs:
                logs[-1] = {**logs[-1], "message": events.TRUNCATED}
        self._log_room = room - len(logs)
        return logs

    def _progress(self, epoch: int, step: int) -> dict[str, Any]:
        eta = (self.total_steps - step) * self.step_time_s if self.step_time_s else None
        return {"epoch": epoch, "epochs": self.epochs, "step": step, "total_steps": self.total_steps,
                "samples_per_s": self.samples_per_s or None, "eta_s": eta}
