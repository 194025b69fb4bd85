"""/v1/jobs: submit (validate, commit, then enqueue), list and read jobs."""
from __future__ import annotations

import logging

from fastapi import APIRouter, HTTPException, status

from api import queue
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.schemas.jobs import JobCreate, JobList, JobOut
from engine import spec
from store.db import session_scope
from store.models import Job, JobStatus
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
    job = jobs.create(
        session,
        name=body.name,
        dataset_id=body.dataset_id,
        model_spec=body.model,
        training=body.training.model_dump(mode="json"),
    )
    session.commit()  # the worker must find the row before the message arrives
    try:
        queue.enqueue_training(settings, job.id)
    except Exception as exc:
        log.exception("could not enqueue job %s", job.id)
        with session_scope(settings.resolved_database_url) as s:
            jobs.finish(s, job_id=job.id, status=JobStatus.FAILED, error=f"broker unavailable: {exc}")
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE, "the job queue is unavailable; the job was marked failed") from exc
    return JobOut.from_row(job)


@router.get("", response_model=JobList)
def list_jobs(session: SessionDep, status_filter: str | None = None, limit: int = 100) -> JobList:
    rows = jobs.list_all(session, status=status_filter, limit=max(1, min(limit, 1000)))
    return JobList(items=[JobOut.from_row(j) for j in rows])


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep) -> JobOut:
    return JobOut.from_row(get_job_or_404(session, job_id))
