"""Queued jobs for in-process worker tests, planned exactly as POST /v1/jobs plans them."""
from __future__ import annotations

from typing import Any

from api.routes.jobs import create_job
from config.settings import Settings
from plan.request import JobCreate
from store.db import session_scope


def new_job(url: str, *, dataset_id: str, model: dict[str, Any], training: dict[str, Any], name: str = "j",
            owner: str = "local", plan_changes: dict[str, Any] | None = None) -> str:
    """Plan and store a job; ``plan_changes`` overrides plan fields afterwards (to make a job
    whose plan the worker must refuse or cannot follow)."""
    with session_scope(url) as s:
        job = create_job(s, JobCreate(name=name, dataset_id=dataset_id, model=model, training=training),
                         Settings(database_url=url), owner)
        if plan_changes:
            job.plan = {**job.plan, **plan_changes}
        return job.id
