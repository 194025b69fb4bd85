"""/v1/jobs/{id}/evaluate and /v1/jobs/{id}/evaluations: a trained job's loss and metrics
over a dataset. The request is checked here (the caller's dataset, its fit to the job's
model, a checkpoint to evaluate); the computation is a queued worker task, sent by name
after the evaluation row is committed."""
from __future__ import annotations

import logging
import math

from fastapi import APIRouter, HTTPException, status
from pydantic import ValidationError

from api import queue
from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.routes.jobs import get_job_or_404
from api.schemas.evaluate import EvaluateRequest, EvaluationList, EvaluationOut
from engine import spec
from plan import TrainingPlan
from store.models import Dataset, Job
from store.repositories import checkpoints, datasets, evaluations

router = APIRouter(prefix="/jobs/{job_id}", tags=["evaluations"])
log = logging.getLogger(__name__)


@router.post("/evaluate", status_code=status.HTTP_202_ACCEPTED, response_model=EvaluationOut)
def evaluate_job(job_id: str, body: EvaluateRequest, session: SessionDep, settings: SettingsDep,
                 owner: OwnerDep) -> EvaluationOut:
    """Queue an evaluation of one of the job's checkpoints on one of your datasets: its loss
    (per head and the weighted total) and every metric of each head over the whole dataset.
    A dataset that does not exist or does not fit the job's model is a 422 naming
    ``dataset_id``; a job without a (matching) checkpoint is a 409."""
    job = get_job_or_404(session, job_id, owner)
    try:
        plan = TrainingPlan.model_validate(job.plan)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} has no valid training plan") from exc
    ds = datasets.get(session, dataset_id=body.dataset_id, owner=owner)
    if ds is None:
        raise FieldError(["body", "dataset_id"], f"dataset {body.dataset_id} does not exist")
    _check_fit(ds, job, plan)
    checkpoint_id = _resolve_checkpoint(session, job, plan, body.checkpoint)
    ev = evaluations.create(session, job_id=job_id, dataset_id=ds.id, checkpoint=body.checkpoint,
                            checkpoint_id=checkpoint_id)
    session.commit()  # the worker must find the row before the message arrives
    try:
        queue.enqueue_evaluation(settings, ev.id)
    except Exception as exc:
        # no reaper sends evaluations later: take the row back and let the caller retry
        log.exception("could not enqueue evaluation %s", ev.id)
        evaluations.delete(session, evaluation_id=ev.id)
        session.commit()
        raise HTTPException(status.HTTP_503_SERVICE_UNAVAILABLE,
                            "the task queue is unreachable; nothing was queued, try again") from exc
    return EvaluationOut.from_row(ev)


@router.get("/evaluations", response_model=EvaluationList)
def list_evaluations(job_id: str, session: SessionDep, owner: OwnerDep) -> EvaluationList:
    """The job's evaluations, newest first."""
    get_job_or_404(session, job_id, owner)
    return EvaluationList(items=[EvaluationOut.from_row(e) for e in evaluations.for_job(session, job_id=job_id)])


@router.get("/evaluations/{evaluation_id}", response_model=EvaluationOut)
def get_evaluation(job_id: str, evaluation_id: str, session: SessionDep, owner: OwnerDep) -> EvaluationOut:
    get_job_or_404(session, job_id, owner)
    ev = evaluations.get(session, evaluation_id=evaluation_id, job_id=job_id)
    if ev is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"evaluation {evaluation_id} not found")
    return EvaluationOut.from_row(ev)


def _check_fit(ds: Dataset, job: Job, plan: TrainingPlan) -> None:
    """The dataset's sample shape and target heads must be what the job's model was trained on."""
    loc = ["body", "dataset_id"]
    if list(ds.input_shape) != list(plan.input_shape):
        raise FieldError(loc, f"dataset {ds.id} has inputs of shape {list(ds.input_shape)} per sample but job "
                              f"{job.id}'s model takes {list(plan.input_shape)}")
    info = datasets.targets_info(ds)
    pairs = evaluations.target_heads({h: hp.target for h, hp in plan.heads.items()}, info)
    outputs = spec.validate(job.model_spec, plan.input_shape, num_classes=plan.num_outputs).outputs
    for h, hp in plan.heads.items():
        target = pairs[h]
        if target is None:
            raise FieldError(loc, f"dataset {ds.id} has no target head {hp.target!r} (job {job.id}'s head {h!r}); "
                                  f"it has {', '.join(map(repr, info))}")
        head = info[target]
        if head["task"] != hp.task:
            raise FieldError(loc, f"dataset {ds.id}'s head {target!r} is {head['task']} but job {job.id}'s head "
                                  f"{h!r} is {hp.task}")
        shape = list(outputs[h][1:])
        if hp.task == "classification":
            classes = head["num_classes"] or 0
            if len(shape) != 1 or classes > shape[0]:
                raise FieldError(loc, f"dataset {ds.id}'s head {target!r} has {classes} classes but job {job.id}'s "
                                      f"head {h!r} scores {shape[0] if len(shape) == 1 else shape}")
        elif math.prod(shape) != max(1, math.prod(head["shape"])):
            raise FieldError(loc, f"dataset {ds.id}'s head {target!r} has targets of shape {head['shape'] or [1]} "
                                  f"but job {job.id}'s head {h!r} outputs {shape} per sample")


def _resolve_checkpoint(session, job: Job, plan: TrainingPlan, asked: str) -> str:
    """The id of the checkpoint ``asked`` names (latest, best or an id), as the download does."""
    kept = checkpoints.for_job(session, job_id=job.id)
    if not kept:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} has no checkpoint yet ({job.status})")
    if asked == "latest":
        latest, _ = checkpoints.marks(session, job_id=job.id, mode=plan.retention.mode)
        return latest
    if asked == "best":
        best = checkpoints.best_id(session, job_id=job.id, mode=plan.retention.mode)
        if best is None:
            raise HTTPException(status.HTTP_409_CONFLICT, f"job {job.id} has no checkpoint scored by its retention "
                                                          f"metric {plan.retention.metric!r} yet")
        return best
    if asked not in {c.id for c in kept}:
        raise FieldError(["body", "checkpoint"], f"job {job.id} has no checkpoint {asked!r}; give 'latest', "
                                                 f"'best' or one of {', '.join(c.id for c in kept)}")
    return asked
