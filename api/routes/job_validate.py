"""POST /v1/jobs/validate: a job body checked exactly as POST /v1/jobs would check it (schema,
dataset, model spec, limits, init weights), without creating the job. The dashboard's form
calls it as the user types, so the 422 it shows at a field is the one submitting would give."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.routes.jobs import create_job, estimate_for
from api.schemas.jobs import PlanOut
from plan import TrainingPlan
from plan.request import JobCreate

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobValidation(BaseModel):
    valid: bool = True
    plan: PlanOut  # what the planner would resolve
    estimate: dict[str, Any] | None = None  # as in the submit answer


@router.post("/validate", response_model=JobValidation,
             responses={422: {"description": "the field that would make POST /v1/jobs fail, with its message"}})
def validate_job(body: JobCreate, session: SessionDep, settings: SettingsDep, owner: OwnerDep) -> JobValidation:
    """Plan the job as submitting would, then roll back: nothing is stored or enqueued."""
    try:
        job = create_job(session, body, settings, owner)
        plan = TrainingPlan.model_validate(job.plan)
        return JobValidation(plan=PlanOut.model_validate(job.plan), estimate=estimate_for(session, plan))
    finally:
        session.rollback()  # the job row (and a fine-tune's weights snapshot) are not kept
