"""/v1/jobs: submit (plan against the dataset and the limits, commit, then enqueue), list,
read and cancel jobs. The resolution itself is ``plan.planner``'s."""
from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from sqlalchemy.orm import Session

from api import cursors, initweights, queue
from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.idempotency import IdempotencyDep
from api.routes.workers import route as route_to_queue
from api.schemas.jobs import JobList, JobOut, JobPatch, JobQuery
from config.settings import Settings
from ingest import DatasetFacts
from plan import TrainingPlan
from plan.estimate import DEFAULT_FLOPS_PER_S, estimate
from plan.planner import check_precision, plan_job
from plan.request import JobCreate
from store import storage
from store.models import Job
from store.repositories import datasets, jobs, throughput

router = APIRouter(prefix="/jobs", tags=["jobs"])
log = logging.getLogger(__name__)


def get_job_or_404(session: SessionDep, job_id: str, owner: str) -> Job:
    job = jobs.get(session, job_id=job_id, owner=owner)
    if job is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} not found")
    return job


def dataset_facts(session, dataset_id: str, loc: list, owner: str) -> DatasetFacts:
    """The facts of the owner's dataset ``dataset_id``; a 422 at ``loc`` if there is none."""
    ds = datasets.get(session, dataset_id=dataset_id, owner=owner)
    if ds is None:
        raise FieldError(loc, f"dataset {dataset_id} does not exist")
    return datasets.facts(ds)


def create_job(session: Session, body: JobCreate, settings: Settings, owner: str) -> Job:
    """Plan ``body`` against its datasets and add the queued job (not yet committed). An owner
    with ``max_queued_per_owner`` jobs queued already gets a 429."""
    cap = settings.max_queued_per_owner
    if cap and (queued := jobs.count_queued(session, owner=owner)) >= cap:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS,
                            f"{queued} of your jobs are queued, the limit max_queued_per_owner ({cap}); "
                            "submit more once some have started, or cancel some", headers={"Retry-After": "60"})
    val_id = body.training.validation_dataset_id
    data = dataset_facts(session, body.dataset_id, ["body", "dataset_id"], owner)
    val = dataset_facts(session, val_id, ["body", "training", "validation_dataset_id"], owner) if val_id else None
    plan = plan_job(body, data, settings, validation=val)
    plan = plan.model_copy(update={"device_kind": route_to_queue(session, body.training, settings)})
    check_precision(body.training, plan.device_kind)  # mixed precision needs a GPU job
    if body.training.init is not None:
        plan = plan.model_copy(update={"init": initweights.resolve(session, body.training.init, plan, owner)})
    return jobs.create(
        session, owner=owner, name=body.name, dataset_id=body.dataset_id, model_spec=body.model,
        training=body.training.model_dump(mode="json", exclude_unset=True), plan=plan.model_dump(mode="json"),
        total_steps=plan.total_steps, max_restarts=plan.max_restarts, time_limit_s=plan.time_limit_s,
    )


@router.post("", status_code=status.HTTP_202_ACCEPTED, response_model=JobOut)
def submit_job(body: JobCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep,
               idempotent: IdempotencyDep) -> JobOut:
    idempotent.replay(session)  # a retry with the same Idempotency-Key gets the first answer
    job = create_job(session, body, settings, owner)
    session.flush()
    out = JobOut.from_row(job)
    out.estimate = estimate_for(session, TrainingPlan.model_validate(job.plan))
    idempotent.remember(session, status.HTTP_202_ACCEPTED, out)
    session.commit()  # the worker must find the row before the message arrives
    try:
        queue.enqueue_training(settings, job.id, job.plan["device_kind"])
        jobs.mark_enqueued(session, job_id=job.id)
    except Exception:
        log.exception("could not enqueue job %s; the reaper will send it when the broker is back", job.id)
    return out


def estimate_for(session: Session, plan: TrainingPlan) -> dict:
    """The plan's training time on a CPU and on a GPU worker, from the workers' measured speed."""
    rates = throughput.recent_medians(session, devices=DEFAULT_FLOPS_PER_S)
    return estimate(plan.training_flops, rates, devices=plan.training.devices)


@router.get("", response_model=JobList)
def list_jobs(session: SessionDep, owner: OwnerDep, query: Annotated[JobQuery, Query()]) -> JobList:
    """The owner's jobs, filtered and sorted (newest first by default), a page at a time:
    pass the answer's ``next_cursor`` as ``cursor`` for the next page."""
    after = cursors.decode(query.cursor, query.sort) if query.cursor else None
    filters = jobs.Filters(status=query.status, tags=tuple(query.tag), dataset_id=query.dataset_id,
                           sweep_id=query.sweep_id, name_contains=query.q, created_after=query.created_after,
                           created_before=query.created_before)
    rows = jobs.search(session, owner=owner, filters=filters, sort=query.sort, limit=query.limit + 1, after=after)
    page, more = rows[:query.limit], len(rows) > query.limit
    next_cursor = cursors.encode(query.sort, jobs.sort_value(page[-1], query.sort), page[-1].id) if more else None
    return JobList(items=[JobOut.from_row(j) for j in page], next_cursor=next_cursor)


@router.get("/{job_id}", response_model=JobOut)
def get_job(job_id: str, session: SessionDep, owner: OwnerDep) -> JobOut:
    """The job, with the estimate of its training time (compare it with its timestamps)."""
    job = get_job_or_404(session, job_id, owner)
    out = JobOut.from_row(job)
    if job.plan:
        out.estimate = estimate_for(session, TrainingPlan.model_validate(job.plan))
    return out


@router.patch("/{job_id}", response_model=JobOut)
def edit_job(job_id: str, body: JobPatch, session: SessionDep, owner: OwnerDep) -> JobOut:
    """Set a job's ``tags`` and/or ``notes``; everything else about a job is read-only."""
    job = get_job_or_404(session, job_id, owner)
    jobs.set_labels(session, job, tags=body.tags, notes=body.notes,
                    clear_notes="notes" in body.model_fields_set and body.notes is None)
    return JobOut.from_row(job)


@router.delete("/{job_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_job(job_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Delete a job with its metrics, logs and checkpoints; a running job is cancelled first
    (its worker stops at its next step)."""
    get_job_or_404(session, job_id, owner)
    jobs.delete(session, job_id=job_id)
    session.commit()
    storage.reclaim(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{job_id}/cancel", response_model=JobOut)
def cancel_job(job_id: str, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> JobOut:
    """A queued job is cancelled at once, and so is a running one whose worker is dead; a
    running one stops at its next step boundary (within seconds), keeping its checkpoints. A
    finished job answers 409."""
    job = get_job_or_404(session, job_id, owner)
    if jobs.request_cancel(session, job_id=job_id, lease_s=settings.lease_s) is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.status}; nothing to cancel")
    session.commit()
    session.refresh(job)
    return JobOut.from_row(job)
