"""A job's log: while it runs, the worker's log records (the training loop's messages,
Python warnings, the traceback of a failure) go to the job's reporter as well, to be stored
per attempt and streamed as ``log`` events."""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from worker.reporting import Reporter

# threads whose records are not the job's: the reaper sweeps for every job
_OTHER_THREADS = ("reaper",)


class JobLogHandler(logging.Handler):
    def __init__(self, reporter: Reporter, level: int = logging.INFO):
        super().__init__(level)
        self.reporter = reporter
        self.setFormatter(logging.Formatter("%(message)s"))

    def filter(self, record: logging.LogRecord) -> bool:
        return record.threadName not in _OTHER_THREADS and not record.name.startswith(("celery", "kombu", "amqp"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.log_line(record.levelname, record.name, self.format(record), record.created)
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


@contextmanager
def job_log(reporter: Reporter) -> Iterator[None]:
    """Route log records and Python warnings to ``reporter`` for the duration."""
    handler = JobLogHandler(reporter)
    root = logging.getLogger()
    root.addHandler(handler)
    old_level = root.level
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        root.setLevel(old_level)
