"""/v1/jobs/{id}/metrics and /v1/jobs/{id}/checkpoints: what a job produced."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from api.auth import OwnerDep
from api.deps import SessionDep, SettingsDep
from api.errors import FieldError
from api.routes.jobs import get_job_or_404
from api.schemas.jobs import CheckpointList, CheckpointOut, EpochMetric, JobMetrics, MetricSeries, StepMetric
from store.db import session_scope
from store.repositories import checkpoints, metrics

router = APIRouter(prefix="/jobs/{job_id}", tags=["results"])


class MetricsQuery(BaseModel):
    """What GET /v1/jobs/{id}/metrics takes; any other query parameter is a 422."""

    model_config = ConfigDict(extra="forbid")

    after_step: int | None = Field(None, ge=0, le=metrics.MAX_STEP,
                                   description="only rows with step > after_step (poll with last_step)")
    names: str | None = Field(None, description="comma-separated metric names (default: all the job has)")
    max_points: int | None = Field(None, ge=2, le=100_000,
                                   description="per series: the first and last point and each bucket's min and max")


@router.get("/metrics", response_model=JobMetrics)
def job_metrics(job_id: str, session: SessionDep, owner: OwnerDep,
                query: Annotated[MetricsQuery, Query()]) -> Response:
    """The job's metric history, whole or past ``after_step``, optionally downsampled."""
    get_job_or_404(session, job_id, owner)
    chosen = _chosen(_series_keys(metrics.series_names(session, job_id=job_id)), query.names)
    after = query.after_step
    loaded = dict(zip(chosen, metrics.history(session, job_id=job_id, series=chosen.values(), after_step=after,
                                              max_points=query.max_points)))
    seen = [s.last_step for s in loaded.values() if s.last_step is not None]
    last_step = max(seen) if seen else None  # read in one snapshot: polling from it misses nothing
    steps: list[StepMetric] = []
    by_epoch: dict[int, dict] = {}
    # ``epochs`` has every epoch row (one per epoch) in range, downsampled series or not
    whole = [k for k, s in loaded.items() if s.kind == "epoch" and s.downsampled]
    epoch_rows = dict(zip(whole, metrics.history(session, job_id=job_id, series=[chosen[k] for k in whole],
                                                 after_step=after, until_step=last_step)))
    for key, s in loaded.items():
        if (s.kind, s.name) == ("step", "loss"):
            steps = [StepMetric(step=st, epoch=e, loss=v) for st, e, v in zip(s.step, s.epoch, s.value)]
        elif s.kind == "epoch":
            rows = epoch_rows.get(key, s)
            for e, v in zip(rows.epoch, rows.value):
                by_epoch.setdefault(e, {"epoch": e})[s.name] = v
    body = JobMetrics(
        job_id=job_id, last_step=last_step if last_step is not None else after or 0, steps=steps,
        epochs=[EpochMetric(**by_epoch[e]) for e in sorted(by_epoch)],
        series={k: MetricSeries(kind=s.kind, step=s.step, epoch=s.epoch, value=s.value) for k, s in loaded.items()},
    )
    # serialized once here (a returned model would be dumped, validated and serialized again)
    return Response(body.model_dump_json(), media_type="application/json")


def _series_keys(names: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """Response keys of the job's series: the name, or ``<kind>:<name>`` where both kinds use it."""
    both = {n for k, n in names if k == "step"} & {n for k, n in names if k == "epoch"}
    return {f"{k}:{n}" if n in both else n: (k, n) for k, n in names}


def _chosen(keys: dict[str, tuple[str, str]], names: str | None) -> dict[str, tuple[str, str]]:
    """The series ``names`` asks for (all of them without it); unknown names are a 422."""
    if names is None:
        return keys
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = ", ".join(keys) or "none yet"
    if not wanted:
        raise FieldError(["query", "names"], f"names lists no metric name; this job has: {known}")
    chosen: dict[str, tuple[str, str]] = {}
    unknown = []
    for n in wanted:
        hits = {n: keys[n]} if n in keys else {k: v for k, v in keys.items() if v[1] == n}
        if not hits:
            unknown.append(n)
        chosen.update(hits)
    if unknown:
        raise FieldError(["query", "names"], f"unknown metric name{'s' if len(unknown) > 1 else ''} "
                         f"{', '.join(map(repr, unknown))}; this job has: {known}")
    return {k: v for k, v in keys.items() if k in chosen}  # in the job's order


@router.get("/checkpoints", response_model=CheckpointList)
def list_checkpoints(job_id: str, session: SessionDep, owner: OwnerDep) -> CheckpointList:
    """The job's kept checkpoints, oldest first; ``latest`` and ``best`` (by the retention
    metric, ``metric_value``) are marked."""
    job = get_job_or_404(session, job_id, owner)
    latest, best = checkpoints.marks(session, job_id=job_id, mode=checkpoints.retention_mode(job.plan))
    items = [
        CheckpointOut(
            id=c.id, epoch=c.epoch, step=c.step, size_bytes=c.size_bytes, created_at=c.created_at,
            download_url=f"/v1/jobs/{job_id}/checkpoints/{c.id}/download", metric_value=c.metric_value,
            latest=c.id == latest, best=c.id == best,
        )
        for c in checkpoints.for_job(session, job_id=job_id)
    ]
    return CheckpointList(items=items)


@router.get(
    "/checkpoints/{checkpoint_id}/download",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def download_checkpoint(job_id: str, checkpoint_id: str, session: SessionDep, settings: SettingsDep,
                        owner: OwnerDep) -> StreamingResponse:
    """The checkpoint as a .safetensors file, streamed a blob chunk at a time (never whole in
    the API's memory); ``latest`` names the newest one, ``best`` the one with the best
    retention metric."""
    job = get_job_or_404(session, job_id, owner)
    ckpt = checkpoints.find(session, job_id=job_id, which=checkpoint_id, mode=checkpoints.retention_mode(job.plan))
    if ckpt is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "checkpoint not found")
    filename = f"job-{job_id}-epoch-{ckpt.epoch}.safetensors"
    url = settings.resolved_database_url

    def chunks():
        with session_scope(url) as reading:  # the request's session is closed by the time this runs
            yield from checkpoints.stream(reading, ckpt)

    return StreamingResponse(chunks(), media_type="application/octet-stream",
                             headers={"Content-Disposition": f'attachment; filename="{filename}"',
                                      "Content-Length": str(ckpt.size_bytes)})
