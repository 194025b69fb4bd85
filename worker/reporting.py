"""Writes a running job's progress, metrics and checkpoints, fenced by its attempt."""
from __future__ import annotations

from store.db import session_scope
from store.repositories import checkpoints, jobs, metrics
from worker.retry import with_db_retry


class JobLost(RuntimeError):
    """This attempt no longer owns the job (finished, cancelled or taken over elsewhere)."""


class SilentReporter:
    """What a follower rank of a data-parallel job reports: nothing (rank 0 writes)."""

    epoch = step = 0

    def step_loss(self, epoch: int, step: int, loss: float) -> None:
        pass

    def flush(self, **_) -> None:
        pass


class Reporter:
    """Buffers per-step losses and writes them with progress (and, at checkpoints, the
    checkpoint) in one transaction, retried with backoff while the database is away."""

    def __init__(self, database_url: str, job_id: str, attempt: int, flush_every: int, retry_for_s: float = 60.0):
        self.url, self.job_id, self.attempt = database_url, job_id, attempt
        self.flush_every = max(1, flush_every)
        self.retry_for_s = retry_for_s
        self._rows: list[dict] = []
        self.epoch = self.step = 0

    def step_loss(self, epoch: int, step: int, loss: float) -> None:
        self.epoch, self.step = epoch, step
        self._rows.append({"kind": "step", "name": "loss", "epoch": epoch, "step": step, "value": loss})
        if len(self._rows) >= self.flush_every:
            self.flush()

    def flush(self, *, epoch_metrics: dict[str, float] | None = None,
              checkpoint: tuple[bytes, bytes] | None = None) -> None:
        rows = list(self._rows)
        if epoch_metrics:
            rows += [{"kind": "epoch", "name": k, "epoch": self.epoch, "step": self.step, "value": v}
                     for k, v in epoch_metrics.items()]
        with_db_retry(lambda: self._write(rows, checkpoint), what=f"metrics write for job {self.job_id}",
                      retry_for_s=self.retry_for_s)
        self._rows = []

    def _write(self, rows: list[dict], checkpoint: tuple[bytes, bytes] | None) -> None:
        with session_scope(self.url) as session:
            if not jobs.set_progress(session, job_id=self.job_id, attempt=self.attempt, epoch=self.epoch,
                                     step=self.step):
                raise JobLost(f"job {self.job_id} attempt {self.attempt} no longer owns the job")
            metrics.add_many(session, job_id=self.job_id, rows=rows)
            if checkpoint is not None:
                checkpoints.add(session, job_id=self.job_id, epoch=self.epoch, step=self.step,
                                attempt=self.attempt, data=checkpoint[0], state=checkpoint[1])
