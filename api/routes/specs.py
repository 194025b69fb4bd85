"""POST /v1/specs/validate: check a model spec against data without submitting a job."""
from __future__ import annotations

import math

from fastapi import APIRouter

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.routes.jobs import dataset_facts
from api.schemas.specs import NodeRow, SpecReport, SpecValidateBody
from engine import spec
from plan.estimate import DEFAULT_FLOPS_PER_S, epoch_flops, estimate
from plan.memory import training_bytes
from plan.planner import check_model_limits
from store.repositories import throughput

router = APIRouter(prefix="/specs", tags=["specs"])


@router.post("/validate", response_model=SpecReport)
def validate_spec(body: SpecValidateBody, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> SpecReport:
    """The per-node table (name, type, output shape with None for the batch, parameters,
    FLOPs) and totals, or a 422 naming the node."""
    shape, classes = body.input_shape, body.num_classes
    if body.dataset_id is not None:
        facts = dataset_facts(session, body.dataset_id, ["body", "dataset_id"], owner)
        shape = shape or facts.input_shape
        classes = classes or facts.num_outputs
    if isinstance(shape, list) and (len(shape) > 8 or any(d < 1 or d > 2**31 for d in shape)):
        raise FieldError(["body", "input_shape"], "must be 1 to 8 sizes, each at least 1")
    report = spec.validate(body.model, shape, num_classes=classes)
    # the planner's own estimate (Adam, the default optimizer), so this page and submit agree
    sample = math.prod(shape) if isinstance(shape, list) else 0
    if shape is not None:
        memory = check_model_limits(report, settings, body.batch_size, model=body.model, sample_elements=sample)
    else:
        memory = training_bytes(report, body.batch_size, model=body.model)
    per_epoch = None
    if body.dataset_id is not None:  # one epoch over the whole dataset
        rates = throughput.recent_medians(session, devices=DEFAULT_FLOPS_PER_S)
        per_epoch = estimate(epoch_flops(report.flops_per_sample, facts.num_samples, 0), rates)
    return SpecReport(
        nodes=[NodeRow(**row) for row in report.rows],
        outputs={k: [None if d == spec.SYMBOLIC_BATCH else d for d in v] for k, v in report.outputs.items()},
        totals={**report.totals(), "training_memory_bytes": memory},
        expanded=report.expanded,
        estimate_per_epoch=per_epoch,
    )
