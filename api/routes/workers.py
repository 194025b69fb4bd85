"""GET /v1/workers: the live fleet (host, GPUs, current jobs, last heartbeat, queue), from the
workers' heartbeats; and the submit-time routing of a job to a queue by the fleet's capacity."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.workers import FleetOut, RunningJob, WorkerOut
from config import queues
from config.settings import Settings
from plan.request import TrainingConfig
from store.models import Job
from store.repositories import workers

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=FleetOut)
def list_workers(session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> FleetOut:
    """Workers that sent a heartbeat within TRAINYARD_WORKER_TTL_S, by host."""
    rows = workers.live(session, ttl_s=settings.worker_ttl_s)
    ids = {j["job_id"] for w in rows for j in w.jobs}
    mine = set(session.scalars(select(Job.id).where(Job.id.in_(ids), Job.owner == owner))) if ids else set()
    cap = workers.capacity(session, ttl_s=settings.worker_ttl_s)
    items = [WorkerOut(name=w.name, hostname=w.hostname, address=w.address, kind=w.kind, queue=w.queue,
                       gpus=w.gpus, ranks=w.ranks, started_at=w.started_at, last_heartbeat=w.heartbeat_at,
                       jobs=[RunningJob(job_id=j["job_id"] if j["job_id"] in mine else None,
                                        ranks=j.get("ranks", []), gpus=j.get("gpus", [])) for j in w.jobs])
             for w in rows]
    return FleetOut(items=items, gpu_hosts=cap.gpu_hosts, gpus=cap.gpus, cpu_workers=cap.cpu_workers)


def route(session: Session, training: TrainingConfig, settings: Settings) -> str:
    """The device kind (queue) a new job goes to: ``training.device`` if given, else gpu while
    a GPU worker is live and cpu otherwise. A GPU job asking for more GPUs than the live GPU
    hosts have together is a 422 naming ``training.devices``. With no GPU worker live the job
    is accepted and waits (a GPU fleet may be scaling from zero); ``max_devices`` still caps it."""
    cap = workers.capacity(session, ttl_s=settings.worker_ttl_s)
    kind = training.device or (queues.GPU if cap.gpu_hosts else queues.CPU)
    if kind == queues.GPU and cap.gpu_hosts and training.devices > cap.gpus:
        hosts = ", ".join(f"{h}: {n}" for h, n in sorted(cap.gpu_hosts.items()))
        raise FieldError(["body", "training", "devices"],
                         f"asks for {training.devices} GPUs; the live GPU workers have {cap.gpus} in all ({hosts})")
    return kind
