"""/v1/sweeps: hyperparameter sweeps in W&B's configuration (grid or random search over dotted
paths of a base job, optional hyperband-style early termination). Every point of the space
is planned at submit time exactly as ``POST /v1/jobs`` plans a job, so a sweep is accepted
only if all its trials are; each trial then runs as an ordinary job of the owner, at most
``max_concurrent`` at a time (the rest wait, without a job, until a slot frees)."""
from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from sqlalchemy.orm import Session

from api import queue
from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.idempotency import IdempotencyDep
from api.routes.jobs import create_job
from api.schemas.sweeps import SweepList, SweepOut, SweepSummary, summary, trials_of
from config.settings import Settings
from engine.spec import SpecError
from plan import PlanError, TrainingPlan
from plan import sweep as sweep_plan
from plan.request import JobCreate
from store import storage
from store.models import JobStatus, Sweep
from store.repositories import jobs, sweeps, workers

router = APIRouter(prefix="/sweeps", tags=["sweeps"])
log = logging.getLogger(__name__)
MAX_TRIAL_ERRORS = 20  # a refused sweep reports this many invalid trials at most


def get_sweep_or_404(session: Session, sweep_id: str, owner: str) -> Sweep:
    sweep = sweeps.get(session, sweep_id=sweep_id, owner=owner)
    if sweep is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"sweep {sweep_id} not found")
    return sweep


def _trial_error(index: int, values: dict[str, Any], loc: list[Any], msg: str, type_: str = "value_error") -> dict:
    where = ["body", "trials", index, *(loc[1:] if loc and loc[0] == "body" else loc)]
    return {"loc": where, "msg": f"trial {index} ({sweep_plan.describe(values)}): {msg}", "type": type_}


def _job_kwargs(job) -> dict[str, Any]:
    """What ``store.repositories.jobs.create`` needs to create this planned job again."""
    return {"name": job.name, "dataset_id": job.dataset_id, "model_spec": job.model_spec, "training": job.training,
            "plan": job.plan, "total_steps": job.total_steps, "max_restarts": job.max_restarts,
            "time_limit_s": job.time_limit_s}


def plan_trials(session: Session, base: dict[str, Any], space: sweep_plan.Space, settings: Settings,
                owner: str) -> list[dict[str, Any]]:
    """Plan every trial as POST /v1/jobs would (``create_job``, inside a savepoint that is
    rolled back: nothing is written); the jobs' creation arguments, or a 422 naming each
    invalid trial (``["body", "trials", i, <field>...]``) and its parameter values."""
    errors: list[dict] = []
    planned: list[dict[str, Any]] = []
    savepoint = session.begin_nested()
    try:
        for i, values in enumerate(space.trials):
            if len(errors) >= MAX_TRIAL_ERRORS:
                break
            body = sweep_plan.apply(base, values, space.params)
            if isinstance(body.get("name"), str):
                body["name"] = f"{body['name'][:190]} [{i}]"
            try:
                job = create_job(session, JobCreate.model_validate(body), settings, owner)
            except ValidationError as exc:
                errors += [_trial_error(i, values, ["body", *e["loc"]], e["msg"], e["type"]) for e in exc.errors()]
            except PlanError as exc:
                errors.append(_trial_error(i, values, exc.loc, exc.message))
            except SpecError as exc:
                errors.append(_trial_error(i, values, ["body", "model", *exc.path], exc.message))
            except FieldError as exc:
                errors.append(_trial_error(i, values, exc.loc, exc.msg))
            else:
                planned.append(_job_kwargs(job))
    finally:
        savepoint.rollback()
    if errors:
        raise RequestValidationError(errors)
    return planned


def _check_metric(metric: sweep_plan.SweepMetric | None, planned: list[dict[str, Any]]) -> None:
    if metric is None:
        return
    for i, job in enumerate(planned):
        names = sweep_plan.epoch_metric_names(TrainingPlan.model_validate(job["plan"]))
        if metric.name not in names:
            raise FieldError(["body", "metric", "name"],
                             f"trial {i} records no epoch metric {metric.name!r}; "
                             f"it records {', '.join(sorted(names))}")


def sweep_out(session: Session, sweep: Sweep) -> SweepOut:
    rows = sweeps.trial_rows(session, sweep_ids=[sweep.id])
    running = [r.job_id for r in rows if r.job_id and r.status not in JobStatus.TERMINAL]
    latest = sweeps.latest_epoch_values(session, job_ids=running, name=sweep.metric_name) if sweep.metric_name else {}
    trials = trials_of(sweep, rows, latest)
    return SweepOut(**summary(sweep, trials), early_terminate=sweep.config.get("early_terminate"),
                    config=sweep.config, trials=trials)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=SweepOut)
def create_sweep(body: sweep_plan.SweepCreate, session: SessionDep, settings: SettingsDep,
                 owner: OwnerDep, idempotent: IdempotencyDep) -> SweepOut:
    """Check the space and plan every trial (a 422 naming the field or the trial, with nothing
    written), store the sweep, and launch its first ``max_concurrent`` trials."""
    idempotent.replay(session)
    space = sweep_plan.build(body, settings)
    planned = plan_trials(session, body.base, space, settings, owner)
    _check_metric(body.metric, planned)
    sweep = sweeps.create(
        session, owner=owner, name=body.name, config=body.model_dump(mode="json", exclude_unset=True),
        method=body.method, metric_name=body.metric.name if body.metric else None,
        goal=body.metric.goal if body.metric else None, max_concurrent=space.max_concurrent,
        trials=list(zip(space.trials, planned)),
    )
    launched = sweeps.advance(session, sweep_id=sweep.id)
    out = sweep_out(session, sweep)
    idempotent.remember(session, status.HTTP_201_CREATED, out)
    session.commit()  # the worker must find the rows before the messages arrive
    for job_id in launched:
        try:
            queue.enqueue_training(settings, job_id, workers.device_kind_of_job(session, job_id=job_id))
            jobs.mark_enqueued(session, job_id=job_id)
        except Exception:
            log.exception("could not enqueue trial job %s; the reaper will send it when the broker is back", job_id)
    return out


@router.get("", response_model=SweepList)
def list_sweeps(session: SessionDep, owner: OwnerDep,
                status: Annotated[Literal["running", "finished", "cancelled"] | None,
                                  Query(description="only sweeps in this status")] = None,
                limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> SweepList:
    """The owner's sweeps, newest first (without their trials: GET /v1/sweeps/{id})."""
    rows = sweeps.list_all(session, owner=owner, status=status, limit=limit)
    by_sweep: dict[str, list] = {}
    for r in sweeps.trial_rows(session, sweep_ids=[s.id for s in rows]) if rows else []:
        by_sweep.setdefault(r.sweep_id, []).append(r)
    return SweepList(items=[SweepSummary(**summary(s, trials_of(s, by_sweep.get(s.id, []), {}))) for s in rows])


@router.get("/{sweep_id}", response_model=SweepOut)
def get_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep) -> SweepOut:
    return sweep_out(session, get_sweep_or_404(session, sweep_id, owner))


@router.post("/{sweep_id}/cancel", response_model=SweepOut)
def cancel_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep) -> SweepOut:
    """Cancel the sweep: its queued trials at once, running ones at their next step (their
    checkpoints kept), waiting ones are never launched. 409 if it is over."""
    sweep = get_sweep_or_404(session, sweep_id, owner)
    if not sweeps.cancel(session, sweep_id=sweep_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"sweep {sweep_id} already {sweep.status}; nothing to cancel")
    session.commit()
    session.refresh(sweep)
    return sweep_out(session, sweep)


@router.delete("/{sweep_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_sweep(sweep_id: str, session: SessionDep, owner: OwnerDep) -> Response:
    """Cancel the sweep, then delete it with its trial jobs (their metrics, logs, checkpoints)."""
    get_sweep_or_404(session, sweep_id, owner)
    sweeps.delete(session, sweep_id=sweep_id)
    session.commit()
    storage.reclaim(session)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
