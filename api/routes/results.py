"""/v1/jobs/{id}/metrics and /v1/jobs/{id}/checkpoints: what a job produced."""
from __future__ import annotations

from fastapi import APIRouter, HTTPException, Response, status

from api.auth import OwnerDep
from api.deps import SessionDep
from api.routes.jobs import get_job_or_404
from api.schemas.jobs import CheckpointList, CheckpointOut, EpochMetric, JobMetrics, StepMetric
from store.repositories import checkpoints, metrics

router = APIRouter(prefix="/jobs/{job_id}", tags=["results"])


@router.get("/metrics", response_model=JobMetrics)
def job_metrics(job_id: str, session: SessionDep, owner: OwnerDep) -> JobMetrics:
    get_job_or_404(session, job_id, owner)
    rows = metrics.for_job(session, job_id=job_id)
    steps = [StepMetric(step=r.step, epoch=r.epoch, loss=r.value) for r in rows if r.kind == "step"]
    by_epoch: dict[int, dict] = {}
    for r in rows:
        if r.kind == "epoch":
            by_epoch.setdefault(r.epoch, {"epoch": r.epoch})[r.name] = r.value
    epochs = [EpochMetric(**by_epoch[e]) for e in sorted(by_epoch)]
    return JobMetrics(job_id=job_id, steps=steps, epochs=epochs)


@router.get("/checkpoints", response_model=CheckpointList)
def list_checkpoints(job_id: str, session: SessionDep, owner: OwnerDep) -> CheckpointList:
    get_job_or_404(session, job_id, owner)
    items = [
        CheckpointOut(
            id=c.id, epoch=c.epoch, step=c.step, size_bytes=c.size_bytes, created_at=c.created_at,
            download_url=f"/v1/jobs/{job_id}/checkpoints/{c.id}/download",
        )
        for c in checkpoints.for_job(session, job_id=job_id)
    ]
    return CheckpointList(items=items)


@router.get(
    "/checkpoints/{checkpoint_id}/download",
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_checkpoint(job_id: str, checkpoint_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """The checkpoint as a .safetensors file; ``latest`` names the newest one."""
    get_job_or_404(session, job_id, owner)
    if checkpoint_id == "latest":
        ckpt = checkpoints.latest_with_data(session, job_id=job_id)
    else:
        ckpt = checkpoints.get_with_data(session, job_id=job_id, checkpoint_id=checkpoint_id)
    if ckpt is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "checkpoint not found")
    filename = f"job-{job_id}-epoch-{ckpt.epoch}.safetensors"
    return Response(
        content=ckpt.data,
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
