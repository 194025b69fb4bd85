"""/v1/usage and /v1/jobs/{id}/usage: what an owner and a job store."""
from __future__ import annotations

from fastapi import APIRouter

from api.auth import OwnerDep
from api.deps import SessionDep
from api.routes.jobs import get_job_or_404
from store import storage

router = APIRouter(tags=["usage"])


@router.get("/usage")
def owner_usage(session: SessionDep, owner: OwnerDep) -> dict:
    """Datasets and checkpoints (count and bytes), jobs and metric rows of the caller."""
    return {"owner": owner, **storage.owner_usage(session, owner=owner)}


@router.get("/jobs/{job_id}/usage")
def job_usage(job_id: str, session: SessionDep, owner: OwnerDep) -> dict:
    """A job's checkpoints (count and bytes) and the rows of its history."""
    get_job_or_404(session, job_id, owner)
    return {"job_id": job_id, **storage.job_usage(session, job_id=job_id)}
