"""The fleet as GET /v1/workers shows it."""
from __future__ import annotations

from pydantic import BaseModel

from api.schemas import UTCDateTime


class RunningJob(BaseModel):
    """A job a worker runs: its id when it is the caller's (another owner's job shows no id),
    the ranks of it this worker runs and the GPUs (physical ids) they hold."""

    job_id: str | None
    ranks: list[int]
    gpus: list[str]


class WorkerOut(BaseModel):
    name: str  # hostname:pid, as a job's ``worker``
    hostname: str
    address: str  # where other hosts reach it (multi-node rendezvous)
    kind: str  # cpu | gpu
    queue: str
    gpus: list[str]
    ranks: int  # ranks of one job this host runs
    jobs: list[RunningJob]
    started_at: UTCDateTime
    last_heartbeat: UTCDateTime


class FleetOut(BaseModel):
    items: list[WorkerOut]
    gpu_hosts: dict[str, int]  # address -> GPUs
    gpus: int  # over every live GPU host: the most GPUs one job may ask for
    cpu_workers: int
