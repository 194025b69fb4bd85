"""Log pages: a job's stored log lines."""
from __future__ import annotations

from pydantic import BaseModel


class LogLine(BaseModel):
    seq: int  # the log event's id on the job's stream
    attempt: int
    time: float  # Unix time
    level: str
    logger: str
    message: str


class LogPage(BaseModel):
    job_id: str
    lines: list[LogLine]
    last_seq: int
    truncated: bool
