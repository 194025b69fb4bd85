"""Resolving ``training.init`` at submit time: the weights a job will start from must exist,
be the caller's, and fit the model (names and shapes, with every mismatch listed). A job
checkpoint named as the source is copied into a weights row (blob to blob, a piece at a time),
so the job still finds it after its source job's retention deleted that checkpoint."""
from __future__ import annotations

from fastapi import HTTPException, status
from sqlalchemy.orm import Session

from api.errors import FieldError, field_error
from ingest import IngestError
from ingest.weights import check_safetensors, read_head
from plan import TrainingPlan
from plan.model import InitPlan
from plan.planner import match_weights
from plan.request import InitConfig
from store.repositories import checkpoints, jobs, weights

LOC = ["body", "training", "init"]


def resolve(session: Session, init: InitConfig, plan: TrainingPlan, owner: str) -> InitPlan:
    if init.weights_id is not None:
        row = weights.get(session, weights_id=init.weights_id, owner=owner)
        if row is None:
            raise FieldError(LOC + ["weights_id"], f"weights {init.weights_id} do not exist")
        weights_id, given = row.id, {k: v["shape"] for k, v in row.tensors.items()}
    else:
        weights_id, given = _snapshot(session, init, owner)
    expected = _model_shapes(plan)
    problems = match_weights(expected, given, strict=init.strict, freeze=init.freeze)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_ENTITY,
                            [field_error(LOC, f"the weights do not fit the model: {p}") for p in problems])
    return InitPlan(weights_id=weights_id, strict=init.strict, freeze=init.freeze)


def _snapshot(session: Session, init: InitConfig, owner: str) -> tuple[str, dict[str, list[int]]]:
    source = jobs.get(session, job_id=init.job_id, owner=owner)
    if source is None:
        raise FieldError(LOC + ["job_id"], f"job {init.job_id} does not exist")
    ckpt = checkpoints.find(session, job_id=source.id, which=init.checkpoint,
                            mode=checkpoints.retention_mode(source.plan))
    if ckpt is None:
        raise FieldError(LOC + ["checkpoint"], f"job {source.id} has no {init.checkpoint} checkpoint")
    try:  # the header alone, and then the file copied piece by piece: never whole in the API's memory
        tensors = check_safetensors(read_head(checkpoints.open_model(session, ckpt)), size=ckpt.size_bytes,
                                    max_elements=2**62)
    except IngestError as exc:  # our own files: only a damaged row gets here
        raise FieldError(LOC + ["checkpoint"], str(exc)) from exc
    row = weights.create(session, owner=owner, data=checkpoints.stream(session, ckpt), tensors=tensors,
                         name=f"job {source.id} checkpoint {ckpt.id} (epoch {ckpt.epoch}, step {ckpt.step})")
    return row.id, {k: v["shape"] for k, v in tensors.items()}


def _model_shapes(plan: TrainingPlan) -> dict[str, list[int]]:
    from engine import spec

    model = spec.build_model(plan.model, plan.input_shape, num_classes=plan.num_outputs)
    return {name: list(t.shape) for name, t in model.state_dict().items()}
