"""The fleet registry: each worker process writes its row every few seconds (what it is, the
GPUs it may use, the jobs it runs); a row whose heartbeat is older than the TTL is a worker
that is gone. The API lists the fleet and checks a job's GPU count against it at submit."""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from store.models import Job, WorkerPresence, utcnow


def beat(session: Session, *, name: str, hostname: str, address: str, kind: str, queue: str, gpus: list[str],
         ranks: int, jobs: list[dict[str, Any]], forget_after_s: float = 86400.0) -> None:
    """Write worker ``name``'s row (insert on its first beat); rows silent for
    ``forget_after_s`` go (a worker killed without leaving)."""
    now = utcnow()
    values = dict(hostname=hostname, address=address, kind=kind, queue=queue, gpus=list(gpus), ranks=ranks,
                  jobs=list(jobs), heartbeat_at=now)
    if session.execute(update(WorkerPresence).where(WorkerPresence.name == name).values(**values)).rowcount == 0:
        session.add(WorkerPresence(name=name, started_at=now, **values))
    session.execute(delete(WorkerPresence).where(WorkerPresence.heartbeat_at < now - timedelta(seconds=forget_after_s)))


def leave(session: Session, *, name: str) -> None:
    """A worker that stops takes its row with it."""
    session.execute(delete(WorkerPresence).where(WorkerPresence.name == name))


def live(session: Session, *, ttl_s: float) -> list[WorkerPresence]:
    """Workers whose last heartbeat is at most ``ttl_s`` old, by host then name."""
    since = utcnow() - timedelta(seconds=ttl_s)
    return list(session.scalars(select(WorkerPresence).where(WorkerPresence.heartbeat_at >= since)
                                .order_by(WorkerPresence.address, WorkerPresence.name)))


@dataclass
class Capacity:
    """What the live fleet can run: GPUs per GPU host (by address) and CPU workers."""

    gpu_hosts: dict[str, int] = field(default_factory=dict)
    cpu_workers: int = 0

    @property
    def gpus(self) -> int:
        """GPUs over every host: the most ranks one job can have (multi-node across hosts)."""
        return sum(self.gpu_hosts.values())


def capacity(session: Session, *, ttl_s: float) -> Capacity:
    cap = Capacity()
    per_host: dict[str, set[str]] = {}
    for w in live(session, ttl_s=ttl_s):
        if w.kind == "gpu":
            per_host.setdefault(w.address, set()).update(w.gpus)  # a host's processes share its GPUs
        else:
            cap.cpu_workers += 1
    cap.gpu_hosts = {host: len(ids) for host, ids in per_host.items()}
    return cap


def device_kind_of_job(session: Session, *, job_id: str) -> str:
    """The queue kind (cpu | gpu) the job's plan was routed to; cpu for plans from before queues."""
    plan = session.scalar(select(Job.plan).where(Job.id == job_id)) or {}
    return plan.get("device_kind") or "cpu"
