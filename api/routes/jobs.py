"""/v1/jobs: submit (validate, commit, then enqueue), list and read jobs."""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status

from api import queue
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.jobs import JobCreate, JobList, JobOut
from engine import spec
from store.models import Job
from store.repositories import datasets, jobs

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger(__name__)


def get_job_or_404(session: SessionDep, job_id: str) -> Job:
    job = jobs.get(session, job_id=job_id)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(body: JobCreate, session: SessionDep, settings: SettingsDep) -> JobOut:
    spec.validate(body.model)
    if datasets.get(session, dataset_id=body.dataset_id) is None:
        raise FieldError(["body", "dataset_id"], f"dataset {body.dataset_id} does not exist")
    if body.training.epochs > settings.max_epochs:
        raise FieldError(
            ["body", "training", "epochs"], f"exceeds the limit of {settings.max_epochs} epochs"
        )
    training = body.training
    job = jobs.create(
        session,
        name=body.name,
        dataset_id=body.dataset_id,
        model_spec=body.model,
        training=training.model_dump(mode="json"),
        max_restarts=settings.max_restarts if training.max_restarts is None else training.max_restarts,
        time_limit_s=min(training.time_limit_s or settings.max_job_seconds, settings.max_job_seconds),
    )
    session.commit()  # the worker must find the row before the message arrives
    try:
        queue.enqueue_training(settings, job.id)
        jobs.mark_enqueued(session, job_id=job.id)
    except Exception:
        log.exception("could not enqueue job %s; the reaper will send it when the broker is back", job.id)
    return JobOut.from_row(job)


@router.get("", response_model=JobList)
def list_jobs(session: SessionDep, status_filter: str | None = None, limit: int = 100) -> JobList:
    rows = jobs.list_all(session, status=status_filter, limit=max(1, min(limit, 1000)))
    return JobList(items=[JobOut.from_row(j) for j in rows])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep) -> JobOut:
    return JobOut.from_row(get_job_or_404(session, job_id))


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep) -> JobOut:
    """A queued job is cancelled at once; a running one stops at its next step boundary
    (within seconds), keeping its checkpoints. A finished job answers 409."""
    job = get_job_or_404(session, job_id)
    if jobs.request_cancel(session, job_id=job_id) is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.status}; nothing to cancel")
    session.commit()
    session.refresh(job)
    return JobOut.from_row(job)
